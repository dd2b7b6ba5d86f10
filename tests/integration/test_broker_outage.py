"""The broker goes away and comes back: no component exits, no job goes unanswered.

Each test runs its own broker (not the session one), because it kills it. The components are
the production entry points as processes (``tests/support/stack.py``); "survived" means the very
same process (same PID, never restarted by anyone) is still running and answers jobs afterwards.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import pytest

from scrapeledger import topics
from scrapeledger.broker import LocalBroker
from scrapeledger.settings import Settings
from tests.support.load import assert_pages, assert_same_processes, pids, scrape_through_a_fault
from tests.support.stack import READY, Stack, start_pages
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


@pytest.mark.timeout(420)
def test_every_component_survives_a_broker_sigkill_under_load(tmp_path: Path) -> None:
    with LocalBroker(port=0, data_dir=tmp_path / "kafka") as broker, start_pages() as pages:
        settings = _settings(broker.bootstrap, tmp_path)
        stack = Stack(settings, tmp_path)
        try:
            stack.processors()
            url = stack.edge("edge-a")
            before = pids(stack)
            jobs = 240

            def outage() -> None:
                broker.kill()
                time.sleep(OUTAGE_S)  # the outage itself, not a readiness guess
                broker.start()

            results = scrape_through_a_fault(url, pages, jobs, outage)
            assert_same_processes(stack, before)
            assert_pages(results)
            # and they keep working after it: a new job after recovery is answered too
            async def after() -> dict[str, object]:
                async with Client([url]) as client:
                    return await asyncio.wait_for(client.scrape(f"{pages}/page/{jobs}"), 120)

            assert_pages([asyncio.run(after())], first=jobs)
            assert_same_processes(stack, before)
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
        topics.ensure_topics(settings)
        broker.kill()
    stack = Stack(settings, tmp_path)
    with start_pages() as pages:
        try:
            stack.processors()
            edge = stack.start("edge", name="edge-a", POD_NAME="edge-a")
            for proc in stack.procs.values():
                proc.wait_for(rf"waiting for Kafka at 127\.0\.0\.1:{broker.port}", timeout=60)
            before = pids(stack)
            broker.start()
            listening = edge.wait_for(READY.pattern, timeout=120).group(2)

            async def go() -> list[dict[str, object]]:
                async with Client([f"ws://127.0.0.1:{listening}/"]) as client:
                    return list(await asyncio.wait_for(asyncio.gather(
                        *(client.scrape(f"{pages}/page/{i}") for i in range(20))), 180))

            results = asyncio.run(go())
            assert_same_processes(stack, before)
            assert_pages(results)
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


@pytest.mark.timeout(300)
def test_a_sigterm_while_the_broker_is_dead_stops_every_processor(tmp_path: Path) -> None:
    """``scrapeledger up`` SIGKILLed with its broker: each child gets SIGTERM (its parent-death
    signal) with the broker gone. The final commit of that stop fails on the lost broker, and that
    failure must not be taken for an outage to ride out: the processor stops, and exits 0 (what
    it did not commit is processed again by the next one, as after any crash)."""
    with LocalBroker(port=0, data_dir=tmp_path / "kafka") as broker, start_pages() as pages:
        settings = _settings(broker.bootstrap, tmp_path)
        # a long commit interval: at the SIGTERM every processor holds offsets it has not committed
        stack = Stack(settings, tmp_path, env={"SCRAPELEDGER_COMMIT_INTERVAL_S": "600"})
        try:
            stack.processors()
            url = stack.edge("edge-a")

            async def some_jobs() -> list[dict[str, object]]:
                async with Client([url]) as client:
                    return list(await asyncio.wait_for(asyncio.gather(
                        *(client.scrape(f"{pages}/page/{i}") for i in range(10))), 120))

            assert_pages(asyncio.run(some_jobs()))
            broker.kill()
            for name in ("state", "validator", "scraper"):
                code = stack.terminate(name, timeout=60)
                assert code == 0, f"{name} exit {code}:\n{stack.procs[name].output()[-3000:]}"
        finally:
            stack.stop_all()
