"""``replay.LedgerTail``: which records a tail yields, and when it stops (no broker needed)."""

from __future__ import annotations

from dataclasses import dataclass

import ledger
from replay import LedgerTail, PoisonRecord
from scrapeledger.settings import Settings

JOB, OTHER = ledger.new_job_id(), ledger.new_job_id()


@dataclass
class Record:
    """What the tail reads of a confluent_kafka Message."""

    raw: bytes
    where: int

    def error(self) -> None:
        return None

    def value(self) -> bytes:
        return self.raw

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return self.where


class Consumer:
    """Hands out the given records one poll at a time, then nothing."""

    def __init__(self, raws: list[bytes]) -> None:
        self.records = [Record(raw, i) for i, raw in enumerate(raws)]
        self.polls = 0

    def poll(self, timeout: float) -> Record | None:
        self.polls += 1
        return self.records.pop(0) if self.records else None


def validated(job_id: str) -> bytes:
    return ledger.encode_event(ledger.JobValidated(
        job_id=job_id, event_id=f"{job_id}/validated", at=1, source="v", attempt=1, url="u"))


def rejected(job_id: str) -> bytes:
    return ledger.encode_event(ledger.JobRejected(
        job_id=job_id, event_id=f"{job_id}/rejected", at=1, source="v", attempt=1,
        code="bad_url", message="no"))


def tail_over(
    raws: list[bytes], *, types: frozenset[str] = frozenset(), job_id: str | None = None
) -> tuple[LedgerTail, Consumer]:
    tail = LedgerTail(Settings(), types=types, job_id=job_id)
    fake = Consumer(raws)
    tail._consumer = fake  # what start() assigns, without a broker
    return tail, fake


def test_a_tail_yields_wanted_events_and_poison_and_stops_after_the_limit() -> None:
    raws = [validated(OTHER), b"not an event", rejected(JOB), validated(JOB), validated(JOB)]
    tail, fake = tail_over(raws, types=frozenset({"JobValidated"}), job_id=JOB)
    items = list(tail.records(lambda: False, limit=1))
    assert isinstance(items[0], PoisonRecord)
    assert (items[0].topic, items[0].partition, items[0].offset) == (tail.topic, 0, 1)
    assert [type(i) for i in items[1:]] == [ledger.JobValidated]  # poison does not count
    assert fake.polls == 4  # the limit was reached: no poll after the first wanted event


def test_a_tail_stops_when_asked_and_reads_nothing_with_a_limit_of_zero() -> None:
    tail, fake = tail_over([validated(JOB)])
    assert list(tail.records(lambda: True)) == []
    assert list(tail.records(lambda: False, limit=0)) == []
    assert fake.polls == 0
    polls = iter(range(3))
    assert len(list(tail.records(lambda: next(polls) >= 2))) == 1  # two polls, one event
