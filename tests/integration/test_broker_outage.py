"""The broker goes away and comes back: no component exits, no job goes unanswered.

Each test runs its own broker (not the session one), because it kills it. The components are
the production entry points as processes (``tests/support/stack.py``); "survived" means the very
same process (same PID, never restarted by anyone) is still running and answers jobs afterwards.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest

from scrapeledger import topics as T
from scrapeledger.broker import LocalBroker
from scrapeledger.settings import Settings
from tests.support.stack import READY, Stack, eventually, start_pages
from ws_edge import Client

COMPONENTS = ("state", "validator", "scraper", "edge-a")
OUTAGE_S = 6.0
"""How long the broker stays dead: long enough that every component notices (session and
request timeouts are shorter), short enough to keep the suite lean."""


def _settings(bootstrap: str, tmp_path: Path) -> Settings:
    return Settings(
        bootstrap_servers=bootstrap, topic_prefix=f"out{uuid.uuid4().hex[:8]}-",
        state_dir=str(tmp_path / "state"), partitions=3, delivery_partitions=4,
    )


def _pids(stack: Stack) -> dict[str, int]:
    return {name: proc.popen.pid for name, proc in stack.procs.items()}


def _assert_same_processes(stack: Stack, before: dict[str, int]) -> None:
    for name, pid in before.items():
        proc = stack.procs[name]
        assert proc.popen.pid == pid and proc.popen.poll() is None, (
            f"{name} (pid {pid}) exited with {proc.popen.poll()}:\n{proc.output()[-4000:]}"
        )


def _assert_pages(results: list[dict[str, object]], first: int = 0) -> None:
    for i, frame in enumerate(results, start=first):
        assert frame["status"] == "succeeded", frame
        assert f"page {i} " in str(frame["html"]), frame

RATE = 40.0
"""Jobs submitted per second while the broker dies."""


@pytest.mark.timeout(420)
def test_every_component_survives_a_broker_sigkill_under_load(tmp_path: Path) -> None:
    with LocalBroker(port=0, data_dir=tmp_path / "kafka") as broker, start_pages() as pages:
        settings = _settings(broker.bootstrap, tmp_path)
        stack = Stack(settings, tmp_path)
        try:
            stack.processors()
            url = stack.edge("edge-a")
            before = _pids(stack)
            jobs = 240

            async def go() -> list[dict[str, object]]:
                async with Client([url], max_reconnect_s=300) as client:
                    tasks: list[asyncio.Task[dict[str, object]]] = []

                    async def submit() -> None:  # a steady load, so the kill lands mid-stream
                        for i in range(jobs):
                            tasks.append(asyncio.create_task(client.scrape(f"{pages}/page/{i}")))
                            await asyncio.sleep(1 / RATE)  # load shaping, not a readiness wait

                    submitter = asyncio.create_task(submit())
                    loop = asyncio.get_running_loop()
                    # the stack is answering and most jobs are still to come (or in flight):
                    # the kill lands under load whatever the speed of the machine
                    await loop.run_in_executor(None, lambda: eventually(
                        lambda: len(tasks) >= jobs // 4 and any(t.done() for t in tasks), timeout=120,
                        what="the first results", interval=0.05))
                    await loop.run_in_executor(None, broker.kill)
                    await asyncio.sleep(OUTAGE_S)  # the outage itself, not a readiness guess
                    await loop.run_in_executor(None, broker.start)
                    await submitter
                    return await asyncio.wait_for(asyncio.gather(*tasks), 300)

            results = asyncio.run(go())
            _assert_same_processes(stack, before)
            _assert_pages(results)
            # and they keep working after it: a new job after recovery is answered too
            async def after() -> dict[str, object]:
                async with Client([url]) as client:
                    return await asyncio.wait_for(client.scrape(f"{pages}/page/{jobs}"), 120)

            _assert_pages([asyncio.run(after())], first=jobs)
            _assert_same_processes(stack, before)
        finally:
            stack.stop_all()


@pytest.mark.timeout(300)
@pytest.mark.parametrize("cluster", ["new", "restarted"])
def test_components_started_before_the_broker_work_once_it_comes(tmp_path: Path, cluster: str) -> None:
    """``new``: the broker has never run (the topics do not exist yet). ``restarted``: a
    deployment whose broker is down (its topics exist) is started before the broker returns;
    right after its start the broker answers metadata while partitions have no leader yet."""
    broker = LocalBroker(port=0, data_dir=tmp_path / "kafka")
    settings = _settings(broker.bootstrap, tmp_path)
    if cluster == "restarted":
        broker.start()
        T.ensure_topics(settings)
        broker.kill()
    stack = Stack(settings, tmp_path)
    with start_pages() as pages:
        try:
            stack.processors()
            edge = stack.start("edge", name="edge-a", POD_NAME="edge-a")
            for proc in stack.procs.values():
                proc.wait_for(rf"waiting for Kafka at 127\.0\.0\.1:{broker.port}", timeout=60)
            before = _pids(stack)
            broker.start()
            listening = edge.wait_for(READY.pattern, timeout=120).group(2)

            async def go() -> list[dict[str, object]]:
                async with Client([f"ws://127.0.0.1:{listening}/"]) as client:
                    return list(await asyncio.wait_for(asyncio.gather(
                        *(client.scrape(f"{pages}/page/{i}") for i in range(20))), 180))

            results = asyncio.run(go())
            _assert_same_processes(stack, before)
            _assert_pages(results)
        finally:
            stack.stop_all()
            broker.stop()


@pytest.mark.timeout(240)
def test_past_the_outage_limit_components_exit_non_zero_with_one_clear_line(tmp_path: Path) -> None:
    with LocalBroker(port=0, data_dir=tmp_path / "kafka") as broker:
        settings = _settings(broker.bootstrap, tmp_path)
        stack = Stack(settings, tmp_path, env={"SCRAPELEDGER_BROKER_OUTAGE_S": "5"})
        try:
            validator = stack.start("validator")
            stack.edge("edge-a")
            validator.wait_for("validator started")
            broker.kill()
            for name in ("validator", "edge-a"):
                proc = stack.procs[name]
                code = proc.popen.wait(120)
                assert code != 0, proc.output()[-3000:]
                last = proc.output().strip().splitlines()[-1]
                assert last.startswith("error: ") and "SCRAPELEDGER_BROKER_OUTAGE_S=5" in last, (
                    proc.output()[-3000:]
                )
        finally:
            stack.stop_all()
