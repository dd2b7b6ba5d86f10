"""The start-up ledger read retries what a broker that has just come up answers for a moment.

A restarted broker serves metadata before it leads its partitions: the crash-log read every
processor does at start-up then met ``NOT_LEADER_FOR_PARTITION`` (or a partition without a
leader) and the process exited. This test puts that answer in front of the real read.
"""

from __future__ import annotations

from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException

import ledger
from processors._crashes import read_crash_log
from scrapeledger import reader, topics
from scrapeledger.clients import make_producer
from scrapeledger.settings import Settings


class JustStarted:
    """A real consumer whose first answers are those of a broker that has just started."""

    def __init__(self, inner: Consumer, *, not_leader: int) -> None:
        self._inner = inner
        self.not_leader = not_leader

    def get_watermark_offsets(self, tp: Any, *args: Any, **kwargs: Any) -> Any:
        if self.not_leader:
            self.not_leader -= 1
            raise KafkaException(KafkaError(KafkaError.NOT_LEADER_FOR_PARTITION))
        return self._inner.get_watermark_offsets(tp, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def test_the_crash_log_read_retries_a_broker_that_has_just_started(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    topics.ensure_topics(settings)
    producer = make_producer(settings)
    job = ledger.new_job_id()
    started = ledger.AttemptStarted(job_id=job, event_id=ledger.new_event_id(), at=1.0, source="t", attempt=1)
    producer.produce(settings.topic(topics.LEDGER), key=job, value=ledger.encode_event(started))
    assert producer.flush(30) == 0

    real = reader.consumer
    readers: list[JustStarted] = []

    def just_started(s: Settings, **extra: object) -> Any:
        readers.append(JustStarted(real(s, **extra), not_leader=2))
        return readers[-1]

    monkeypatch.setattr(reader, "consumer", just_started)
    crashes = read_crash_log(settings, "scraper")
    assert crashes.starts[(job, 1)] == 1
    assert any(r.not_leader == 0 for r in readers)  # the broker's answers were met
