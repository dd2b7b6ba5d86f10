"""The edge's Kafka side: durable submits, this pod's deliveries, and bodies by reference.

* Submits go through an idempotent producer with ``acks=all``; the caller awaits the broker's
  acknowledgement before it tells the client ``accepted``.
* Deliveries (results, and the materializer's replies to keyed submits and cancels): the
  materializer keys delivery notices by pod id, so Kafka's murmur2 partitioner (every
  producer's, :data:`scrapeledger.partitioner.KAFKA_PARTITIONER`) puts all of this pod's notices
  in one partition. The edge computes that partition
  (:func:`scrapeledger.delivery.pod_partition`) and reads only it, from the end offset it saw
  at start-up, filtering the rare notice of another pod whose id hashes to the same partition.
  The route end to end, and the pieces shared with the materializer: :mod:`scrapeledger.delivery`.
* Bodies: a succeeded job's notice carries (partition, offset) in the bodies topic; a batch of
  notices is resolved with one sequential read per partition run instead of a seek per body.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Callable

import orjson
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

import ledger
from scrapeledger import delivery, topics
from scrapeledger.clients import IDLE_FETCH_WAIT_MS, KAFKA_LOG, AsyncProducer, fetch_config
from scrapeledger.errors import BrokerError, MalformedEventError
from scrapeledger.outage import Outage
from scrapeledger.redact import job_ref
from scrapeledger.settings import Settings

log = logging.getLogger(__name__)

Delivery = tuple[ledger.JobState, str | None]
"""A terminal (or unknown) job state and its page body, if it has one."""

Reply = tuple[str, ledger.JobState, str | None]
"""The materializer's answer to one request event (``reply_to``): the state after it, and the
page body when that state is a finished job's."""

_RUN_GAP = 500
"""Body offsets closer than this are read in one sequential pass rather than separate seeks."""

BODY_ROUND_S = 10.0
"""How long one round of :func:`read_bodies` reads before it gives up on the bodies it has not
met. A round ends as soon as every partition it reads has reached its run's last offset; without
a bound, a round that can never get there - the broker away, or a start offset the partition no
longer holds (past retention, the consumer jumps to the partition's end) - would hold every
other result of the batch. What a round missed is the caller's to read again
(:meth:`EdgeKafka._read_bodies` does while the broker is away)."""

BodyKey = tuple[int, int]
"""A body's place in the bodies topic: (partition, offset)."""

Run = tuple[int, list[int]]
"""A partition and a sorted run of nearby offsets in it, read in one sequential pass."""


class EdgeKafka:
    """Producer and delivery reader for one edge pod. Threads are internal; the API is asyncio."""

    def __init__(
        self,
        settings: Settings,
        on_deliveries: Callable[[list[Delivery]], None],
        on_replies: Callable[[list[Reply]], None] | None = None,
        on_failure: Callable[[], None] | None = None,
    ) -> None:
        """``on_failure`` is called (on the reader's thread) if the deliveries reader stops."""
        self.settings = settings
        self._on_failure = on_failure
        self._on_deliveries = on_deliveries
        self._on_replies = on_replies
        self._loop: asyncio.AbstractEventLoop | None = None
        self._producer = AsyncProducer(settings, name="edge-producer")
        # records nobody waits for (ResultDelivered) share requests: a long linger batches them
        self._background = AsyncProducer(settings, name="edge-background", **{"linger.ms": 100})
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._failed: Exception | None = None
        self._threads: list[threading.Thread] = []
        self.partition = delivery.pod_partition(settings.pod_name, settings.delivery_partitions)
        self._replays: queue.SimpleQueue[ledger.JobState] = queue.SimpleQueue()
        self._outage = Outage(settings, f"edge {settings.pod_name} deliveries")
        self.foreign_notices = 0
        """Notices read from this pod's partition that belonged to another pod."""
        self.notices = 0

    @property
    def failure(self) -> Exception | None:
        """Why the deliveries reader stopped, if it did (the edge then exits)."""
        return self._failed

    @property
    def ready(self) -> bool:
        return self._ready.is_set() and self._failed is None and not self._stop.is_set()

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        thread = threading.Thread(target=self._read, name="edge-deliveries", daemon=True)
        thread.start()
        self._threads.append(thread)

    async def wait_ready(self, timeout: float) -> None:
        loop = asyncio.get_running_loop()
        if not await loop.run_in_executor(None, self._ready.wait, timeout):
            raise BrokerError("the deliveries reader did not start in time")
        if self._failed is not None:
            raise BrokerError(f"the deliveries reader failed: {self._failed}")

    def close(self, timeout: float = 10.0) -> None:
        remaining = self._producer.close(timeout) + self._background.close(timeout)
        if remaining:
            log.warning("%d ledger events were not acknowledged at shutdown", remaining)
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=5)

    # --- producing -------------------------------------------------------------------------

    async def append(self, event: ledger.Event) -> None:
        """Write one event to the ledger; return once the broker acknowledged it (acks=all)."""
        await self._producer.produce(self.settings.topic(topics.LEDGER), event.job_id,
                                     ledger.encode_event(event))

    def append_nowait(self, event: ledger.Event) -> None:
        """Fire-and-forget ledger write, for records whose loss only costs a duplicate later."""
        if not self._background.produce_nowait(self.settings.topic(topics.LEDGER), event.job_id,
                                               ledger.encode_event(event)):
            log.warning("producer queue full; dropped %s for job %s", event.TYPE, job_ref(event.job_id))

    # --- deliveries ------------------------------------------------------------------------

    def replay(self, state: ledger.JobState) -> None:
        """Deliver a state again (a repeated resume), its body read by reference like a notice's."""
        self._replays.put(state)

    def _consumer(self, suffix: str, wait_ms: int = IDLE_FETCH_WAIT_MS) -> Consumer:
        return Consumer(
            {
                "bootstrap.servers": self.settings.bootstrap_servers,
                "group.id": self.settings.group(f"edge-{self.settings.pod_name}-{suffix}"),
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                # a short wait made the idle edge ask 50 times a second (see IDLE_FETCH_WAIT_MS)
                "fetch.wait.max.ms": wait_ms,
                **fetch_config(self.settings),
                "log_level": 3,
                "logger": KAFKA_LOG,
                # a lost broker is counted (and logged once per back-off step) by the outage
                # clock; an exception raised here surfaces from poll() on the reader's thread
                "error_cb": self._on_kafka_error,
            }
        )

    def _on_kafka_error(self, err: KafkaError) -> None:
        if err.code() in (KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN, KafkaError._RESOLVE):
            self._outage.failed(KafkaException(err))
        elif err.fatal():
            raise KafkaException(err)

    def _read(self) -> None:
        settings = self.settings
        topic = settings.topic(topics.DELIVERIES)
        deliveries = self._consumer("deliveries")
        bodies = self._consumer("bodies", 5)
        try:
            high = self._end_offset(deliveries, topic)
            deliveries.assign([TopicPartition(topic, self.partition, high)])
            self._ready.set()
            log.info("reading deliveries for pod %s from %s[%d]@%d",
                     settings.pod_name, topic, self.partition, high)
            while not self._stop.is_set():
                if self._outage.began is not None:
                    self._probe(deliveries, topic)
                self._read_once(deliveries, bodies)
        except Exception as exc:
            log.exception("deliveries reader failed")
            self._failed = exc
            self._ready.set()  # wake wait_ready, which reports the failure
            if self._on_failure is not None:
                self._on_failure()
            raise
        finally:
            deliveries.close()
            bodies.close()

    def _probe(self, deliveries: Consumer, topic: str) -> None:
        """In an outage: is the broker back? (An idle reader sees no record that would say so.)"""
        try:
            deliveries.list_topics(topic, timeout=2)
            self._outage.recovered()
        except KafkaException:
            pass  # still away: error_cb counts it

    def _read_once(self, deliveries: Consumer, bodies: Consumer) -> None:
        """One batch of this pod's notices (and repeated resumes), with their bodies, handed to
        the loop: replies to their waiting requests, results to the sockets."""
        # returns at the first record; a replay waiting shortens the wait
        batch = _drain(deliveries, wait=0.5 if self._replays.empty() else 0.0)
        notices = [n for n in map(self._notice, batch) if n is not None]
        while not self._replays.empty():
            notices.append((self._replays.get_nowait(), None))
        if not notices:
            return
        with_bodies = self._with_bodies(bodies, [state for state, _ in notices])
        self._dispatch(
            [d for d, (_, to) in zip(with_bodies, notices, strict=True) if to is None],
            [(to, *d) for d, (_, to) in zip(with_bodies, notices, strict=True) if to is not None],
        )

    def _end_offset(self, consumer: Consumer, topic: str) -> int:
        """The deliveries partition's end, retried through a new topic's leader election."""
        deadline = time.monotonic() + self.settings.broker_wait_s
        while True:
            try:
                _, high = consumer.get_watermark_offsets(TopicPartition(topic, self.partition), timeout=10)
                return int(high)
            except KafkaException as exc:
                if time.monotonic() > deadline or self._stop.is_set():
                    raise
                log.warning("deliveries partition not readable yet (%s); retrying", exc)
                time.sleep(0.5)

    def _notice(self, msg: Message) -> tuple[ledger.JobState, str | None] | None:
        if msg.error() is not None:
            if msg.error().code() != KafkaError._PARTITION_EOF:
                # a lost broker: logged once per back-off step, and past the outage limit the
                # reader fails, which stops the edge (serve())
                self._outage.failed(KafkaException(msg.error()))
            return None
        self._outage.recovered()
        if not delivery.is_for_pod(msg.key(), self.settings.pod_name):
            self.foreign_notices += 1
            return None
        self.notices += 1
        try:
            return delivery.decode_notice(msg.value())
        except (MalformedEventError, orjson.JSONDecodeError) as exc:
            log.warning("bad delivery notice skipped: %s", exc)
            return None

    def _read_bodies(self, bodies: Consumer, wanted: dict[int, set[int]]) -> dict[BodyKey, bytes]:
        """The wanted bodies; those the broker could not serve (it is away) are read again
        until it is back, so a result never goes out without its page. Only a body below the
        partition's low watermark (past the replay window) is given up as expired."""
        topic = self.settings.topic(topics.BODIES)
        found = read_bodies(bodies, topic, wanted, self._stop)
        outage = Outage(self.settings, f"edge {self.settings.pod_name} bodies")
        while not self._stop.is_set():
            missing = {p: {o for o in offs if (p, o) not in found} for p, offs in wanted.items()}
            missing = {p: offs for p, offs in missing.items() if offs}
            if not missing:
                break
            try:
                lows = {p: bodies.get_watermark_offsets(TopicPartition(topic, p), timeout=5)[0]
                        for p in missing}
            except KafkaException as exc:
                self._stop.wait(outage.failed(exc))
                continue
            missing = {p: {o for o in offs if o >= lows[p]} for p, offs in missing.items()}
            missing = {p: offs for p, offs in missing.items() if offs}
            if not missing:
                break  # expired: the result goes out without its body, as before
            more = read_bodies(bodies, topic, missing, self._stop)
            if not more:
                self._stop.wait(outage.failed(BrokerError(f"{topic} did not serve the bodies")))
            found.update(more)
        outage.recovered()
        return found

    def _dispatch(self, deliveries: list[Delivery], replies: list[Reply]) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        if replies and self._on_replies is not None:  # answers first: a result may follow one
            loop.call_soon_threadsafe(self._on_replies, replies)
        if deliveries:
            loop.call_soon_threadsafe(self._on_deliveries, deliveries)

    def _with_bodies(self, bodies: Consumer, states: list[ledger.JobState]) -> list[Delivery]:
        wanted: dict[int, set[int]] = {}
        for s in states:
            r = s.result
            if r is not None and r.body is None and r.body_partition is not None:
                assert r.body_offset is not None
                wanted.setdefault(r.body_partition, set()).add(r.body_offset)
        found = self._read_bodies(bodies, wanted)
        out: list[Delivery] = []
        for s in states:
            r = s.result
            if r is None:
                out.append((s, None))
            elif r.body is not None:
                out.append((s, r.body))
            else:
                body = found.get((r.body_partition or 0, r.body_offset or 0))
                out.append((s, None if body is None else body.decode("utf-8", "replace")))
        return out


def body_of(settings: Settings, state: ledger.JobState, stop: threading.Event) -> str | None:
    """A finished job's page body, read on its own (one request's read: the HTTP API's)."""
    r = state.result
    if r is None:
        return None
    if r.body is not None:
        return r.body
    if r.body_partition is None or r.body_offset is None:
        return None
    consumer = Consumer(
        {
            "bootstrap.servers": settings.bootstrap_servers,
            "group.id": settings.group(f"edge-{settings.pod_name}-reads"),
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "fetch.wait.max.ms": 5,
            **fetch_config(settings),
            "log_level": 3,
        }
    )
    try:
        found = read_bodies(consumer, settings.topic(topics.BODIES), {r.body_partition: {r.body_offset}},
                            stop)
    finally:
        consumer.close()
    body = found.get((r.body_partition, r.body_offset))
    return None if body is None else body.decode("utf-8", "replace")


def _drain(consumer: Consumer, wait: float = 0.1, most: int = 2000) -> list[Message]:
    """Wait up to ``wait`` for a first record, then take whatever else is already there.

    ``consume(n, timeout)`` alone waits the full timeout unless ``n`` records arrive, which puts
    a floor under every delivery's latency.
    """
    first = consumer.poll(wait)
    if first is None:
        return []
    return [first, *consumer.consume(num_messages=most, timeout=0)]


def read_bodies(
    consumer: Consumer, topic: str, wanted: dict[int, set[int]], stop: threading.Event,
    round_s: float = BODY_ROUND_S,
) -> dict[BodyKey, bytes]:
    """Fetch the records at the given offsets: every partition's run of nearby offsets is read
    sequentially, all partitions at once, instead of one seek per body. Each round reads one
    run per partition for at most ``round_s``; bodies it did not meet are left out."""
    runs = [(partition, run) for partition, offsets in wanted.items() for run in _runs_of(offsets)]
    found: dict[BodyKey, bytes] = {}
    while runs and not stop.is_set():
        # one run per partition per round (gaps between runs are rare: a busy bodies topic)
        batch, runs = _one_run_per_partition(runs)
        found.update(_read_round(consumer, topic, batch, stop, round_s))
    consumer.unassign()  # an assigned partition would be fetched (and answered) until the next batch
    return found


def _runs_of(offsets: set[int]) -> list[list[int]]:
    """``offsets`` sorted and cut where two neighbours are more than ``_RUN_GAP`` apart."""
    ordered = sorted(offsets)
    runs = [[ordered[0]]]
    for off in ordered[1:]:
        if off - runs[-1][-1] <= _RUN_GAP:
            runs[-1].append(off)
        else:
            runs.append([off])
    return runs


def _one_run_per_partition(runs: list[Run]) -> tuple[dict[int, list[int]], list[Run]]:
    """The first run of each partition (this round's), and the runs left for later rounds."""
    batch: dict[int, list[int]] = {}
    later: list[Run] = []
    for partition, run in runs:
        if partition in batch:
            later.append((partition, run))
        else:
            batch[partition] = run
    return batch, later


def _read_round(
    consumer: Consumer, topic: str, batch: dict[int, list[int]], stop: threading.Event, round_s: float
) -> dict[BodyKey, bytes]:
    """Read each partition of ``batch`` from its run's first offset to its last, keeping the
    records the runs name; ends when every partition got there, on ``stop``, or after ``round_s``."""
    consumer.assign([TopicPartition(topic, p, run[0]) for p, run in batch.items()])
    need = {(p, off) for p, run in batch.items() for off in run}
    ends = {p: run[-1] for p, run in batch.items()}  # partitions still read: the offset ending each
    found: dict[BodyKey, bytes] = {}
    deadline = time.monotonic() + round_s
    while ends and not stop.is_set() and time.monotonic() < deadline:
        for msg in _drain(consumer, wait=0.5):
            if msg.error() is not None:
                continue
            partition, offset = msg.partition(), msg.offset()
            if (partition, offset) in need:
                need.discard((partition, offset))
                found[(partition, offset)] = msg.value() or b""
            end = ends.get(partition)  # None: this partition is done (a record fetched past it)
            if end is not None and offset >= end:
                del ends[partition]
    if need:
        log.warning("%d bodies not found in %s (expired?)", len(need), topic)
    return found
