"""Jobs under steady load while a fault is injected: the broker-loss tests' shared driver."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from tests.support.stack import Stack, eventually
from ws_edge import Client


def scrape_through_a_fault(url: str, pages: str, jobs: int, fault: Callable[[], None],
                           rate: float = 40.0) -> list[dict[str, object]]:
    """Scrape ``/page/0`` .. ``/page/jobs-1`` at ``rate`` per second through one reconnecting
    client, and run ``fault`` (blocking, on a thread) once the stack is answering and most jobs
    are still to come, so it lands under load whatever the speed of the machine; returns the
    result frames in submit order."""

    async def go() -> list[dict[str, object]]:
        async with Client([url], max_reconnect_s=300) as client:
            tasks: list[asyncio.Task[dict[str, object]]] = []

            async def submit() -> None:  # a steady load, so the fault lands mid-stream
                for i in range(jobs):
                    tasks.append(asyncio.create_task(client.scrape(f"{pages}/page/{i}")))
                    await asyncio.sleep(1 / rate)  # load shaping, not a readiness wait

            submitter = asyncio.create_task(submit())
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(None, lambda: eventually(
                lambda: len(tasks) >= jobs // 4 and any(t.done() for t in tasks), timeout=120,
                what="the first results", interval=0.05))
            await loop.run_in_executor(None, fault)
            await submitter
            return list(await asyncio.wait_for(asyncio.gather(*tasks), 300))

    return asyncio.run(go())


def pids(stack: Stack) -> dict[str, int]:
    return {name: proc.popen.pid for name, proc in stack.procs.items()}


def assert_same_processes(stack: Stack, before: dict[str, int]) -> None:
    """Every process is the very one that ran before (same PID, never restarted, still up)."""
    for name, pid in before.items():
        proc = stack.procs[name]
        assert proc.popen.pid == pid and proc.popen.poll() is None, (
            f"{name} (pid {pid}) exited with {proc.popen.poll()}:\n{proc.output()[-4000:]}"
        )


def assert_pages(results: list[dict[str, object]], first: int = 0) -> None:
    for i, frame in enumerate(results, start=first):
        assert frame["status"] == "succeeded", frame
        assert f"page {i} " in str(frame["html"]), frame
