"""Kafka client configs Scrapeledger's producers and consumers share; the asyncio producer bridge."""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from .errors import BrokerError
from .partitioner import KAFKA_PARTITIONER
from .settings import Settings
from .topics import MiB

log = logging.getLogger(__name__)
KAFKA_LOG = logging.getLogger("scrapeledger.kafka")
"""librdkafka's log lines, served by each client's poll()."""


def producer_config(settings: Settings) -> dict[str, Any]:
    """Durable, ordered produces: the ledger never loses an acknowledged event."""
    return {
        "bootstrap.servers": settings.bootstrap_servers,
        # Kafka's Java partitioner, as Quix Streams uses: one job's events land in one partition
        # whichever process writes them, and a pod's delivery notices in the partition it reads
        "partitioner": KAFKA_PARTITIONER,
        "acks": "all",
        "enable.idempotence": True,
        "linger.ms": settings.linger_ms,
        # every record, page bodies included: the bodies topic keeps what the producer sent
        # (``compression.type=producer`` in scrapeledger.topics)
        "compression.type": "lz4",
        "message.max.bytes": settings.scraper_max_body_bytes + 2 * MiB,
        # a record waits for a lost broker as long as the process does (librdkafka's default,
        # 5 min, would fail acknowledged-later writes in the middle of a tolerated outage)
        "message.timeout.ms": int(settings.broker_outage_s * 1000),
        # librdkafka's own messages through Python logging (rate-limited there, see
        # scrapeledger.outage.KafkaChatterFilter) instead of straight to stderr
        "logger": KAFKA_LOG,
    }


IDLE_FETCH_WAIT_MS = 2000
"""``fetch.wait.max.ms`` of the long-lived consumers (processors, the edge's deliveries reader).

The broker answers a fetch as soon as a record arrives (``fetch.min.bytes`` 1), so this costs
no latency; it is how often an idle consumer asks again. Not for readers that stop at the end of
a partition: a fetch at the end waits this long before it says so."""


def fetch_config(settings: Settings) -> dict[str, Any]:
    """Consumer fetch sizes: a record as large as the biggest body must always fit one fetch."""
    return {
        "fetch.max.bytes": 64 * MiB,
        "max.partition.fetch.bytes": settings.scraper_max_body_bytes + 2 * MiB,
    }


def make_producer(settings: Settings, **overrides: Any) -> Producer:
    return Producer({**producer_config(settings), **overrides})


class AsyncProducer:
    """A durable producer for asyncio code: ``await produce(...)`` returns once Kafka acknowledged.

    The one bridge between librdkafka's delivery reports and an event loop (the edge and the
    scraper both use it; each had its own). A daemon thread polls the producer; the reports of
    one poll are handed to the loop in **one** ``call_soon_threadsafe`` instead of one per record
    (each wake-up of a loop is a self-pipe write and read). The poll threads were 12-20 % of the
    scraper's and the edge's CPU in py-spy; the batching itself measured within noise.
    """

    def __init__(self, settings: Settings, *, name: str = "producer", **overrides: Any) -> None:
        self._settings = settings
        self._overrides = overrides
        self._producer = make_producer(settings, **overrides)
        self._generation = 0
        """Counts replacements of a producer that went fatal (see :meth:`produce`)."""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._reports: list[tuple[asyncio.Future[Any], Any, Any]] = []
        self._lock = threading.Lock()  # flush() in close() serves reports on another thread
        self._stop = threading.Event()
        self._poller = threading.Thread(target=self._poll, name=name, daemon=True)
        self._poller.start()

    def _poll(self) -> None:
        while not self._stop.is_set():
            self._producer.poll(0.5)  # returns as soon as a report is served: no latency cost
            self._hand_over()

    def _hand_over(self) -> None:
        with self._lock:
            reports, self._reports = self._reports, []
        loop = self._loop
        if reports and loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(_settle_all, reports)

    def _replace(self, generation: int) -> None:
        """Swap in a new librdkafka producer for one that went fatal (once per generation).

        An idempotent producer turns fatal when the broker it wrote to lost its producer state
        (a broker killed and restarted): every later produce fails with "Local: Fatal error",
        so it is replaced rather than used again. The old one's undelivered records failed with
        it; their callers write them again (every record we write is safe to repeat)."""
        with self._lock:
            if generation != self._generation:
                return  # another caller replaced it already
            self._generation += 1
            old, self._producer = self._producer, make_producer(self._settings, **self._overrides)
        log.warning("the Kafka producer went fatal; replaced it")
        old.purge()
        old.poll(0)  # serve the purged records' reports: their callers write them again

    async def produce(self, topic: str, key: str, value: bytes | None) -> Message:
        """Write one record; return its delivered ``Message`` (partition and offset known).

        A producer that went fatal is replaced and the record written again. Raises
        :class:`BrokerError` when Kafka refuses or times the record out.
        """
        while True:
            generation = self._generation
            try:
                return await self._produce_once(topic, key, value)
            except _Fatal:
                self._replace(generation)

    async def _produce_once(self, topic: str, key: str, value: bytes | None) -> Message:
        loop = asyncio.get_running_loop()
        self._loop = loop
        done: asyncio.Future[Message] = loop.create_future()

        def on_delivery(err: Any, msg: Message) -> None:
            with self._lock:  # runs inside poll() or flush()
                self._reports.append((done, err, msg))

        while True:
            try:
                self._producer.produce(topic, value=value, key=key, on_delivery=on_delivery)
                break
            except BufferError:
                await asyncio.sleep(0.005)  # local queue full: wait for deliveries to drain it
            except KafkaException as exc:
                if _is_fatal(exc.args[0] if exc.args else None):
                    raise _Fatal(str(exc)) from exc
                raise BrokerError(f"produce failed: {exc}") from exc
        return await done

    def produce_nowait(self, topic: str, key: str, value: bytes | None) -> bool:
        """Fire-and-forget write, for records whose loss only costs a duplicate later."""
        try:
            self._producer.produce(topic, value=value, key=key)
        except BufferError:
            return False
        return True

    def close(self, timeout: float = 10.0) -> int:
        """Flush (up to ``timeout``), stop the poll thread; returns the records left unsent."""
        left = int(self._producer.flush(timeout))
        self._stop.set()
        self._poller.join(timeout=5)
        self._hand_over()
        return left


class _Fatal(BrokerError):
    """The producer is fatally broken (not this record): replace it and write again."""


_REPLACED = (KafkaError._FATAL, KafkaError._PURGE_QUEUE, KafkaError._PURGE_INFLIGHT)
"""A fatal producer, or a record purged from the fatal producer that was replaced."""


def _is_fatal(err: Any) -> bool:
    return isinstance(err, KafkaError) and (err.fatal() or err.code() in _REPLACED)


def _settle_all(reports: list[tuple[asyncio.Future[Any], Any, Any]]) -> None:
    for fut, err, msg in reports:
        if fut.done():
            continue
        if err is None:
            fut.set_result(msg)
        elif _is_fatal(err):
            fut.set_exception(_Fatal(f"produce failed: {err}"))
        else:
            fut.set_exception(BrokerError(f"produce failed: {err}"))
