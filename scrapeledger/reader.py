"""Reading the ledger back: the one place Scrapeledger reads Kafka history.

Everything that needs what the topics already hold reads it through here, with a group-less
consumer (manual assignment, nothing committed):

* :func:`read_to_end` - a topic (or some partitions) from the beginning, or from given offsets,
  up to the high watermark seen when the read started; :func:`committed_offsets` says where a
  consumer group stands. The processors' start-up crash-log read (``processors._crashes``) and
  the scraper's cancel reader (``processors._cancels``) are built on these.
* :func:`history`, :func:`current_state`, :func:`latest_states` - one job's events, its latest
  ``job-state`` record, every job's: what the edge's HTTP API answers and what ``replay`` prints.
* :func:`follow` - one job's events as they are written: the edge's SSE stream.

A broker that has just started (or lost a node) answers "no leader" or NOT_LEADER_FOR_PARTITION
for a moment; the reads retry that for :data:`TRANSIENT_S` before they fail with
:class:`~scrapeledger.errors.BrokerUnavailableError`.

This module sits in the shared package, below the processors, the edge and the operator's
``replay`` package, which all use it (``replay`` re-exports its names).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import TypeVar

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

import ledger

from . import topics
from .clients import IDLE_FETCH_WAIT_MS, KAFKA_LOG, fetch_config
from .errors import BrokerUnavailableError, EventError, UnknownJobError
from .partitioner import partition_for
from .settings import Settings

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
            "logger": KAFKA_LOG,
            **extra,
        }
    )


TRANSIENT_S = 30.0
"""How long a read retries what a broker that has just started (or lost a node) answers for a
moment - no leader yet, NOT_LEADER_FOR_PARTITION, a request timeout - before it fails."""

_T = TypeVar("_T")


def _transient(exc: KafkaException) -> bool:
    err = exc.args[0] if exc.args else None
    return isinstance(err, KafkaError) and (
        err.retriable()
        or err.code() in (
            KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE,
            KafkaError._TRANSPORT, KafkaError._TIMED_OUT, KafkaError._ALL_BROKERS_DOWN,
            KafkaError.NOT_COORDINATOR, KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
        )
    )


def _retrying(call: Callable[[], _T], what: str, timeout: float = TRANSIENT_S) -> _T:
    """``call()``, retried with back-off while it fails transiently, for up to ``timeout`` s."""
    deadline = time.monotonic() + timeout
    delay = 0.1
    while True:
        try:
            return call()
        except KafkaException as exc:
            if not _transient(exc) or time.monotonic() > deadline:
                raise BrokerUnavailableError(f"{what}: {exc}") from None
            log.debug("%s: %s; retrying", what, exc)
            time.sleep(delay)  # back-off between retries of a failed broker call
            delay = min(delay * 2, 2.0)


def partitions_of(c: Consumer, topic: str, timeout: float = 10.0) -> list[int]:
    """The topic's partitions, once each has a leader (retried for a moment, see TRANSIENT_S)."""

    def look() -> list[int]:
        meta = c.list_topics(topic, timeout=timeout)
        info = meta.topics.get(topic)
        if info is None or info.error is not None:
            err = info.error if info is not None else None
            if isinstance(err, KafkaError) and err.code() != KafkaError.UNKNOWN_TOPIC_OR_PART:
                raise KafkaException(err)
            raise BrokerUnavailableError(f"topic {topic} does not exist (is this the right prefix?)")
        leaderless = [p for p in info.partitions.values() if p.leader < 0 or p.error is not None]
        if leaderless:
            raise KafkaException(KafkaError(KafkaError.LEADER_NOT_AVAILABLE,
                                            f"{topic} has partitions without a leader"))
        return sorted(info.partitions)

    return _retrying(look, f"cannot read topic {topic}")


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
            low, high = _retrying(
                lambda p=p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=10),  # type: ignore[misc]
                f"cannot read {topic}[{p}]",
            )
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


# --- one job's history and state ----------------------------------------------------------


def history(settings: Settings, job_id: str) -> list[ledger.Event]:
    """Every ledger event of ``job_id``, in ledger order. Raises :class:`UnknownJobError`."""
    topic = settings.topic(topics.LEDGER)
    partition = job_partition(settings, topic, job_id)
    key = job_id.encode()
    events: list[ledger.Event] = []
    for msg in read_to_end(settings, topic, partitions=[partition]):
        if msg.key() != key:
            continue
        try:
            events.append(ledger.decode_event(msg.value()))
        except EventError:
            continue  # poison records are in the DLQ; a history shows the job's events
    if not events:
        raise UnknownJobError(f"no events for job {job_id} in {topic}")
    return events


def latest_states(settings: Settings) -> dict[str, ledger.JobState | None]:
    """Every job's latest record in ``job-state`` (None where the last one is a tombstone)."""
    latest: dict[str, ledger.JobState | None] = {}
    for msg in read_to_end(settings, settings.topic(topics.JOB_STATE)):
        value = msg.value()
        latest[msg.key().decode()] = None if value is None else ledger.JobState.from_json(value)
    return latest


def current_state(settings: Settings, job_id: str) -> ledger.JobState | None:
    """The job's latest state in the compacted ``job-state`` topic (None if absent or removed)."""
    topic = settings.topic(topics.JOB_STATE)
    partition = job_partition(settings, topic, job_id)
    key = job_id.encode()
    latest: ledger.JobState | None = None
    for msg in read_to_end(settings, topic, partitions=[partition]):
        if msg.key() == key:
            value = msg.value()
            latest = None if value is None else ledger.JobState.from_json(value)
    return latest


# --- following one job as it is written ---------------------------------------------------

# Any pod can follow any job, because the ledger is the only state it needs: a stream that dies
# with its pod is resumed on another from the last Kafka offset the client saw (SSE's
# ``Last-Event-ID``). The read starts at the beginning of the job's partition (the fold needs the
# whole history to know when the job is finished) and filters by key, like :func:`history`.

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
