"""Kafka client configs every Scrapeledger producer shares, and the asyncio producer bridge."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from confluent_kafka import Message, Producer

from .errors import BrokerError
from .settings import Settings
from .topics import MiB


def producer_config(settings: Settings) -> dict[str, Any]:
    """Durable, ordered produces: the ledger never loses an acknowledged event."""
    return {
        "bootstrap.servers": settings.bootstrap_servers,
        # Kafka's Java partitioner, as Quix Streams uses: one job's events land in one partition
        # whichever process writes them (librdkafka's own default, CRC32, would scatter them)
        "partitioner": "murmur2",
        "acks": "all",
        "enable.idempotence": True,
        "linger.ms": settings.linger_ms,
        "compression.type": "lz4",
        "message.max.bytes": settings.scraper_max_body_bytes + 2 * MiB,
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
        self._producer = make_producer(settings, **overrides)
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

    async def produce(self, topic: str, key: str, value: bytes | None) -> Message:
        """Write one record; return its delivered ``Message`` (partition and offset known).

        Raises :class:`BrokerError` when Kafka refuses or times the record out.
        """
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


def _settle_all(reports: list[tuple[asyncio.Future[Any], Any, Any]]) -> None:
    for fut, err, msg in reports:
        if fut.done():
            continue
        if err is None:
            fut.set_result(msg)
        else:
            fut.set_exception(BrokerError(f"produce failed: {err}"))
