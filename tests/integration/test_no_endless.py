"""Nothing forever: records and fetches that crash a process end dead-lettered after bounded tries.

Each test makes a real process fail on purpose (``SCRAPELEDGER_FAULTS``) and plays the role of
the supervisor (Kubernetes, ``scrapeledger up``): whenever the process exits, it is started
again. The tries are counted by the ledger, never by the test or the process.
"""

from __future__ import annotations

import asyncio
import subprocess
import threading
from collections.abc import Callable
from typing import Any

import ledger
from replay import history, read_to_end
from scrapeledger import topics
from tests.support.stack import Stack

from .wsclient import Raw


class Supervisor(threading.Thread):
    """Restart a component each time it exits, until told to stop; count the restarts."""

    def __init__(self, stack: Stack, component: str, **env: str) -> None:
        super().__init__(daemon=True)
        self.stack, self.component, self.env = stack, component, env
        self.restarts = 0
        self.done = threading.Event()
        stack.start(component, **env)

    def run(self) -> None:
        while not self.done.is_set():
            proc = self.stack.procs[self.component]
            try:
                proc.popen.wait(timeout=0.5)
            except subprocess.TimeoutExpired:
                continue
            proc.close()
            if self.done.is_set():
                return
            self.restarts += 1
            self.stack.start(self.component, **self.env)

    def stop(self) -> None:
        self.done.set()
        self.join(10)


def submit_all(url: str, messages: dict[str, Any], timeout: float = 180) -> dict[str, dict[str, Any]]:
    """Send every job on one connection; return each ref's result frame."""

    async def go() -> dict[str, dict[str, Any]]:
        ws = await Raw.connect(url)
        for ref, message in messages.items():
            await ws.send({"event": "job", "message": message, "ref": ref})
        refs: dict[str, str] = {}
        out: dict[str, dict[str, Any]] = {}
        while len(out) < len(messages):
            frame = await ws.recv(timeout=timeout)
            if frame["event"] == "accepted":
                refs[frame["job_id"]] = frame["ref"]
            else:
                assert frame["event"] == "result", frame
                out[refs[frame["job_id"]]] = frame
        await ws.close()
        return out

    return asyncio.run(go())


def events_of(stack: Stack, job_id: str, kind: type[ledger.Event]) -> list[Any]:
    return [e for e in history(stack.settings, job_id) if isinstance(e, kind)]


def dead_letters(stack: Stack) -> dict[str, str]:
    dlq = (ledger.decode_event(m.value()) for m in read_to_end(stack.settings,
                                                               stack.settings.topic(topics.DLQ)))
    return {e.job_id: e.code for e in dlq if isinstance(e, ledger.JobDeadLettered)}


def supervised(stack: Stack, component: str, env: dict[str, str], work: Callable[[], Any]) -> tuple[Any, int]:
    sup = Supervisor(stack, component, **env)
    sup.start()
    try:
        return work(), sup.restarts
    finally:
        sup.stop()


def test_a_fetch_that_kills_the_scraper_every_time_is_dead_lettered_after_bounded_deaths(
    stack: Stack, pages: str
) -> None:
    stack.start("state")
    stack.start("validator")
    url = stack.edge()
    jobs: dict[str, Any] = {"killer": f"{pages}/page/1?x=die"}
    jobs.update({f"innocent-{i}": f"{pages}/page/{i}" for i in range(2, 12)})

    results, deaths = supervised(
        stack, "scraper", {"SCRAPELEDGER_FAULTS": "scraper:kill:die"}, lambda: submit_all(url, jobs)
    )

    killer = results.pop("killer")
    assert killer["status"] == "dead_lettered", killer
    assert killer["error"]["code"] == "scraper_crashed"
    assert {r["status"] for r in results.values()} == {"succeeded"}  # neighbours are not blamed
    # two deaths with others in flight, then two running alone: the counts are in the ledger
    starts = events_of(stack, killer["job_id"], ledger.AttemptStarted)
    assert [(s.attempt, s.solo) for s in starts] == [(1, False), (1, False), (1, True), (1, True)]
    assert deaths == 4
    assert dead_letters(stack)[killer["job_id"]] == "scraper_crashed"


def test_a_record_that_crashes_the_validator_is_dead_lettered_after_bounded_failures(
    stack: Stack, pages: str
) -> None:
    stack.start("state")
    stack.start("scraper")
    url = stack.edge()
    jobs = {"boom": f"{pages}/page/1?x=boom", "after": f"{pages}/page/2"}

    results, restarts = supervised(
        stack, "validator", {"SCRAPELEDGER_FAULTS": "validator:raise:boom"}, lambda: submit_all(url, jobs)
    )

    boom = results["boom"]
    assert boom["status"] == "dead_lettered", boom
    assert boom["error"]["code"] == "processing_error"
    assert results["after"]["status"] == "succeeded"  # the pipeline moved on past the bad record
    failed = events_of(stack, boom["job_id"], ledger.ProcessingFailed)
    assert [(f.processor, f.failures) for f in failed] == [("validator", n) for n in (1, 2, 3)]
    assert len({(f.partition, f.offset) for f in failed}) == 1
    assert restarts == 2  # crashed after failures 1 and 2; the third gave up instead
    assert dead_letters(stack)[boom["job_id"]] == "processing_error"


def test_a_record_that_crashes_the_materializer_still_reaches_its_client(stack: Stack, pages: str) -> None:
    # no scraper: the job can only end by the materializer giving up on its JobSubmitted
    stack.start("validator")
    url = stack.edge()

    results, restarts = supervised(
        stack, "state", {"SCRAPELEDGER_FAULTS": "state:raise:boom"},
        lambda: submit_all(url, {"boom": f"{pages}/page/1?x=boom"}),
    )

    boom = results["boom"]
    assert boom["status"] == "dead_lettered", boom
    assert boom["error"]["code"] == "processing_error"
    assert restarts == 2
    failed = events_of(stack, boom["job_id"], ledger.ProcessingFailed)
    assert [(f.processor, f.failures) for f in failed] == [("state", 1), ("state", 2), ("state", 3)]
    # the skipped JobSubmitted named the client's pod; a salvaged ClientAttached kept the route
    attached = events_of(stack, boom["job_id"], ledger.ClientAttached)
    assert [a.pod for a in attached] == ["edge-a"]
