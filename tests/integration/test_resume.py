"""Nothing lost: a client gets its result after a disconnect, a dead pod, or on another pod."""

from __future__ import annotations

import asyncio

from replay import current_state, expire, history
from tests.support.stack import Stack, eventually
from ws_edge import Client

from .wsclient import Raw


def test_resume_on_the_same_pod_after_a_disconnect(stack: Stack, pages: str) -> None:
    stack.processors()
    url = stack.edge()

    async def go() -> tuple[str, dict[str, object]]:
        ws = await Raw.connect(url)
        await ws.send({"event": "job", "message": f"{pages}/slow?ms=1500"})
        job_id = str((await ws.recv())["job_id"])
        await ws.close()  # gone before the result exists
        ws = await Raw.connect(url)
        await ws.send({"event": "resume", "job_id": job_id})
        result = await ws.recv()
        await ws.close()
        return job_id, result

    job_id, result = asyncio.run(go())
    assert result["event"] == "result"
    assert result["job_id"] == job_id
    assert result["status"] == "succeeded"
    types = [e.TYPE for e in history(stack.settings, job_id)]
    # the submitting pod is routed the result anyway: a resume there records no attach (the
    # attach window, docs/architecture.md "Limits"); another pod's resume does (tests below)
    assert "ClientAttached" not in types


def test_resume_on_another_pod_after_the_first_pod_is_killed(stack: Stack, pages: str) -> None:
    stack.processors()
    first = stack.edge("edge-a")
    second = stack.edge("edge-b")

    async def go() -> tuple[str, dict[str, object]]:
        ws = await Raw.connect(first)
        await ws.send({"event": "job", "message": f"{pages}/slow?ms=2000"})
        job_id = str((await ws.recv())["job_id"])
        stack.kill("edge-a")  # SIGKILL with the job in flight
        await ws.close()
        ws = await Raw.connect(second)
        await ws.send({"event": "resume", "job_id": job_id})
        result = await ws.recv()
        await ws.close()
        return job_id, result

    job_id, result = asyncio.run(go())
    assert result["status"] == "succeeded"
    assert result["job_id"] == job_id


def test_the_python_client_reconnects_elsewhere_and_resumes_by_itself(stack: Stack, pages: str) -> None:
    stack.processors()
    first = stack.edge("edge-a")
    second = stack.edge("edge-b")

    async def go() -> tuple[dict[str, object], int]:
        async with Client([first, second]) as client:
            job_id = await client.submit(f"{pages}/slow?ms=2000")
            stack.kill("edge-a")
            result = await client.result(job_id)
            return result, client.reconnects

    result, reconnects = asyncio.run(go())
    assert result["status"] == "succeeded"
    assert reconnects >= 1


def test_resume_of_an_expired_job(stack: Stack, pages: str) -> None:
    stack.processors()
    url = stack.edge()

    async def submit() -> str:
        ws = await Raw.connect(url)
        result = await ws.job(f"{pages}/page/1")
        await ws.close()
        return str(result["job_id"])

    job_id = asyncio.run(submit())
    eventually(lambda: current_state(stack.settings, job_id), what="the job's state")
    short = stack.settings.model_copy(update={"replay_window_s": 0.001})
    assert job_id in expire(short)
    eventually(lambda: current_state(stack.settings, job_id) is None, what="the tombstone")

    async def resume() -> dict[str, object]:
        ws = await Raw.connect(url)
        await ws.send({"event": "resume", "job_id": job_id})
        frame = await ws.recv()
        await ws.close()
        return frame

    frame = asyncio.run(resume())
    assert frame["event"] == "result"
    assert frame["status"] == "expired"
    assert frame["error"] == {"code": "expired", "message": "the result left the replay window"}
