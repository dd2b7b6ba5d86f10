"""Reading topics from the start up to "now": the primitive every replay command is built on."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterator

from confluent_kafka import Consumer, KafkaException, Message, TopicPartition

from scrapeledger.clients import fetch_config
from scrapeledger.errors import BrokerUnavailableError
from scrapeledger.partitioner import partition_for
from scrapeledger.settings import Settings

log = logging.getLogger(__name__)


def consumer(settings: Settings, **extra: object) -> Consumer:
    """A group-less reader (manual assignment, nothing committed)."""
    return Consumer(
        {
            "bootstrap.servers": settings.bootstrap_servers,
            "group.id": f"{settings.topic_prefix}replay-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            "enable.partition.eof": False,
            **fetch_config(settings),
            "log_level": 3,
            **extra,
        }
    )


def partitions_of(c: Consumer, topic: str, timeout: float = 10.0) -> list[int]:
    try:
        meta = c.list_topics(topic, timeout=timeout)
    except KafkaException as exc:
        raise BrokerUnavailableError(f"cannot read topic {topic}: {exc}") from None
    info = meta.topics.get(topic)
    if info is None or info.error is not None:
        raise BrokerUnavailableError(f"topic {topic} does not exist (is this the right prefix?)")
    return sorted(info.partitions)


def read_to_end(
    settings: Settings,
    topic: str,
    *,
    partitions: list[int] | None = None,
    on_total: Callable[[int], None] | None = None,
    start: dict[int, int] | None = None,
) -> Iterator[Message]:
    """Every record of ``topic`` (or some partitions) from the beginning - or from ``start``'s
    offset, where it names the partition - to the high watermark seen when the read started.
    Records written later belong to the next read."""
    c = consumer(settings)
    try:
        parts = partitions if partitions is not None else partitions_of(c, topic)
        ends: dict[int, int] = {}
        assignment = []
        for p in parts:
            try:
                low, high = c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            except KafkaException as exc:
                raise BrokerUnavailableError(f"cannot read {topic}[{p}]: {exc}") from None
            first = max(low, (start or {}).get(p, low))
            if high > first:
                ends[p] = high
                assignment.append(TopicPartition(topic, p, first))
        if on_total is not None:
            on_total(sum(ends[tp.partition] - tp.offset for tp in assignment))
        if not assignment:
            return
        c.assign(assignment)
        while ends:
            batch = c.consume(num_messages=1000, timeout=1.0)
            if not batch:  # gaps (compaction, markers) can hide the last offset: ask positions
                for tp in c.position([TopicPartition(topic, p) for p in list(ends)]):
                    if tp.offset >= ends[tp.partition]:
                        del ends[tp.partition]
            for msg in batch:
                if msg.error() is not None:
                    continue
                p = msg.partition()
                end = ends.get(p)
                if end is None:
                    continue
                if msg.offset() < end:
                    yield msg
                if msg.offset() >= end - 1:
                    del ends[p]
    finally:
        c.close()


def committed_offsets(
    settings: Settings, group: str, topic: str, *, timeout: float = 60.0
) -> dict[int, int]:
    """The offsets consumer group ``group`` has committed on ``topic`` (partitions it has).

    Retries while the group coordinator is not there yet (NOT_COORDINATOR, "coordinator load in
    progress" on a broker that has just started) for up to ``timeout`` seconds.
    """
    c = consumer(settings, **{"group.id": group})  # never subscribes: reads, never joins or commits
    try:
        parts = partitions_of(c, topic)
        deadline = time.monotonic() + timeout
        delay = 0.1
        while True:
            try:
                found = c.committed([TopicPartition(topic, p) for p in parts], timeout=10)
                return {tp.partition: tp.offset for tp in found if tp.offset >= 0}
            except KafkaException as exc:
                if time.monotonic() > deadline:
                    raise BrokerUnavailableError(f"cannot read {group}'s offsets: {exc}") from None
                log.info("reading %s's offsets: %s; retrying", group, exc)
                time.sleep(delay)  # back-off between retries of a failed broker call
                delay = min(delay * 2, 2.0)
    finally:
        c.close()


def job_partition(settings: Settings, topic: str, job_id: str) -> int:
    """Where the default partitioner put ``job_id``'s records in ``topic``."""
    c = consumer(settings)
    try:
        return partition_for(job_id, len(partitions_of(c, topic)))
    finally:
        c.close()
