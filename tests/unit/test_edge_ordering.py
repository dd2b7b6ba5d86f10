"""A client sees ``accepted`` before the job's ``result``, whichever Kafka callback comes first.

The submit's acknowledgement and the job's delivery reach the edge's loop from two threads; a
fast pipeline (or a slow acknowledgement) let the result overtake it, and a client matching the
result to its ``accepted`` frame found no job. The edge's Kafka side is replaced by a stub here so
the test can hold the acknowledgement back while the result arrives.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest

import ledger
from scrapeledger.settings import Settings
from scrapeledger.vault import Vault, new_key
from ws_edge import JobRequest
from ws_edge._server import Edge

pytestmark = pytest.mark.timeout(30)


class HeldKafka:
    """The edge's Kafka side with an acknowledgement the test releases."""

    def __init__(self) -> None:
        self.written: list[ledger.Event] = []
        self.ack = asyncio.Event()

    async def append(self, event: ledger.Event) -> None:
        self.written.append(event)
        await self.ack.wait()

    def append_nowait(self, event: ledger.Event) -> None:
        self.written.append(event)


class Sock:
    def __init__(self) -> None:
        self.jobs: set[str] = set()
        self.owner: str | None = None  # API keys off
        self.starting = 1  # JobSocket counts a submit in flight before its task registers it
        self.frames: list[dict[str, Any]] = []

    def send(self, frame: bytes) -> None:
        self.frames.append(orjson.loads(frame))


def finished(job_id: str) -> ledger.JobState:
    state = ledger.fold(None, ledger.JobSubmitted(job_id=job_id, event_id="s", at=1.0, source="p", url="http://x/"))
    return ledger.fold(state, ledger.JobRejected(job_id=job_id, event_id="r", at=2.0, source="v",
                                       code="invalid_url", message="no"))


async def _submit_with_early_result() -> list[dict[str, Any]]:
    edge = Edge(Settings(bootstrap_servers="127.0.0.1:1"), Vault([new_key()]))
    edge.kafka.close(0)  # never started: only its producer's poll thread to stop
    kafka = HeldKafka()
    edge.kafka = kafka  # type: ignore[assignment]
    sock = Sock()
    task = asyncio.ensure_future(edge.submit(sock, JobRequest(url="http://x/", ref=7)))  # type: ignore[arg-type]
    while not kafka.written:
        await asyncio.sleep(0)
    job_id = kafka.written[0].job_id
    edge._on_deliveries([(finished(job_id), None)])  # the result, before the acknowledgement
    assert sock.frames == []
    kafka.ack.set()
    await task
    return sock.frames


def test_a_result_that_overtakes_the_acknowledgement_waits_for_accepted() -> None:
    frames = asyncio.run(_submit_with_early_result())
    assert [f["event"] for f in frames] == ["accepted", "result"]
    assert frames[0]["job_id"] == frames[1]["job_id"]
    assert frames[0]["ref"] == frames[1]["ref"] == 7
