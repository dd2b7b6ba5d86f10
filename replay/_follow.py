"""Following one job's ledger events as they are written: what the edge's SSE stream reads.

Any pod can follow any job, because the ledger is the only state it needs: a stream that dies
with its pod is resumed on another from the last Kafka offset the client saw (SSE's
``Last-Event-ID``). The read starts at the beginning of the job's partition (the fold needs the
whole history to know when the job is finished) and filters by key, like :func:`history`.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

from confluent_kafka import KafkaException, TopicPartition

import ledger
from scrapeledger import topics
from scrapeledger.clients import IDLE_FETCH_WAIT_MS
from scrapeledger.errors import BrokerUnavailableError, EventError
from scrapeledger.partitioner import partition_for
from scrapeledger.settings import Settings

from ._reader import consumer, partitions_of

CAUGHT_UP = None
"""Yielded once, when the read reached the partition's end as it was when the read started:
a job with no event by then is unknown (ids are issued only once their submit is durable)."""


def follow(
    settings: Settings, job_id: str, stop: threading.Event, *, poll_s: float = 0.5
) -> Iterator[tuple[int, ledger.Event] | None]:
    """``(offset, event)`` for each event of ``job_id``, from the first one on and then as they
    are written, until ``stop`` is set; :data:`CAUGHT_UP` once in between (see there)."""
    topic = settings.topic(topics.LEDGER)
    c = consumer(settings, **{"fetch.wait.max.ms": IDLE_FETCH_WAIT_MS})
    try:
        partition = partition_for(job_id, len(partitions_of(c, topic)))
        try:
            low, high = c.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
        except KafkaException as exc:
            raise BrokerUnavailableError(f"cannot read {topic}[{partition}]: {exc}") from None
        c.assign([TopicPartition(topic, partition, low)])
        caught_up = high <= low
        if caught_up:
            yield CAUGHT_UP
        key = job_id.encode()
        while not stop.is_set():
            msg = c.poll(poll_s)
            if msg is None or msg.error() is not None:
                if not caught_up:  # gaps (transaction markers) can hide the last offset
                    (tp,) = c.position([TopicPartition(topic, partition)])
                    if tp.offset >= high:
                        caught_up = True
                        yield CAUGHT_UP
                continue
            if msg.key() == key:
                event = _decoded(msg.value())
                if event is not None:  # poison records are in the DLQ; a stream shows events
                    yield msg.offset(), event
            if not caught_up and msg.offset() >= high - 1:
                caught_up = True
                yield CAUGHT_UP
    finally:
        c.close()


def _decoded(raw: bytes | None) -> ledger.Event | None:
    try:
        return ledger.decode_event(raw)
    except EventError:
        return None
