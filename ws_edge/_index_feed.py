"""Feeding the recent-jobs index from the compacted ``job-state`` topic.

Each edge pod reads every partition of ``job-state`` itself (no consumer group: nothing is
shared between pods, nothing committed), starting at the records written in the last
``EDGE_INDEX_WINDOW_S`` (``offsets_for_times``), so every pod converges on the same index and a
restarted pod rebuilds it from the topic in one pass. ``job-state`` carries small state records
(no bodies), written at most once per job per materializer checkpoint.

Started on first use (the first list or counters request), not with the edge: a pod nobody opens
the dashboard on reads nothing. The first requests wait until the read reached the end offsets
seen at start, so the first answer is already complete.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

import ledger
from scrapeledger import topics
from scrapeledger.clients import IDLE_FETCH_WAIT_MS, fetch_config
from scrapeledger.errors import BrokerError, MalformedEventError
from scrapeledger.settings import Settings

from ._index import RecentJobs

log = logging.getLogger(__name__)


class IndexFeed:
    """One background reader of ``job-state`` into a :class:`RecentJobs`."""

    def __init__(self, settings: Settings, index: RecentJobs | None = None) -> None:
        self.settings = settings
        self.index = index if index is not None else RecentJobs(settings.edge_index_jobs)
        self._stop = threading.Event()
        self._caught_up = threading.Event()
        self._failed: Exception | None = None
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()

    def start(self) -> None:
        with self._start_lock:
            if self._thread is None and not self._stop.is_set():
                self._thread = threading.Thread(target=self._run, name="edge-index", daemon=True)
                self._thread.start()

    async def ready(self, timeout: float) -> RecentJobs:
        """Start the reader if needed; return the index once it has read what was there."""
        self.start()
        if not self._caught_up.is_set():
            loop = asyncio.get_running_loop()
            if not await loop.run_in_executor(None, self._caught_up.wait, timeout):
                raise BrokerError("the recent-jobs index is still being read; retry")
        if self._failed is not None:
            raise BrokerError(f"the recent-jobs index cannot be read: {self._failed}")
        return self.index

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        topic = self.settings.topic(topics.JOB_STATE)
        consumer = Consumer(
            {
                "bootstrap.servers": self.settings.bootstrap_servers,
                "group.id": self.settings.group(f"edge-index-{uuid.uuid4().hex}"),  # never joins
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "fetch.wait.max.ms": IDLE_FETCH_WAIT_MS,
                **fetch_config(self.settings),
                "log_level": 3,
            }
        )
        try:
            ends = self._assign(consumer, topic)
            log.info("recent-jobs index: reading %s (%d records to catch up)", topic,
                     sum(end - start for start, end in ends.values()))
            waiting = {p for p, (start, end) in ends.items() if end > start}
            if not waiting:
                self._caught_up.set()
            while not self._stop.is_set():
                self._read_once(consumer, topic, ends, waiting)
                if not waiting and not self._caught_up.is_set():
                    log.info("recent-jobs index: caught up, %d jobs", len(self.index))
                    self._caught_up.set()
        except Exception as exc:
            log.exception("recent-jobs index reader failed")
            self._failed = exc
            self._caught_up.set()
        finally:
            consumer.close()

    def _read_once(
        self, consumer: Consumer, topic: str, ends: dict[int, tuple[int, int]], waiting: set[int]
    ) -> None:
        """One batch of job states into the index; partitions read up to the end they had at
        start-up leave ``waiting`` (the set of partitions still catching up)."""
        batch = consumer.consume(num_messages=1000, timeout=0.5)
        states: list[ledger.JobState | tuple[str, None]] = []
        for msg in batch:
            item = _state(msg)
            if item is not None:
                states.append(item)
            if waiting and msg.error() is None and msg.offset() >= ends[msg.partition()][1] - 1:
                waiting.discard(msg.partition())
        if states:
            self.index.apply(states)
        if waiting and not batch:  # compaction gaps can hide the last offset
            for tp in consumer.position([TopicPartition(topic, p) for p in waiting]):
                if tp.offset >= ends[tp.partition][1]:
                    waiting.discard(tp.partition)

    def _assign(self, consumer: Consumer, topic: str) -> dict[int, tuple[int, int]]:
        """Assign every partition at the first record of the window; ``{p: (start, end)}``."""
        deadline = time.monotonic() + self.settings.broker_wait_s
        while True:
            try:
                meta = consumer.list_topics(topic, timeout=10).topics[topic]
                if meta.error is not None:
                    raise KafkaException(meta.error)
                since_ms = int((time.time() - self.settings.edge_index_window_s) * 1000)
                wanted = [TopicPartition(topic, p, since_ms) for p in sorted(meta.partitions)]
                found = consumer.offsets_for_times(wanted, timeout=10)
                ends: dict[int, tuple[int, int]] = {}
                for tp in found:
                    _, high = consumer.get_watermark_offsets(TopicPartition(topic, tp.partition), timeout=10)
                    start = high if tp.offset < 0 else tp.offset  # -1: nothing that recent
                    ends[tp.partition] = (start, high)
                consumer.assign([TopicPartition(topic, p, start) for p, (start, _) in ends.items()])
                return ends
            except KafkaException as exc:
                if time.monotonic() > deadline or self._stop.is_set():
                    raise
                log.warning("job-state not readable yet (%s); retrying", exc)
                time.sleep(0.5)  # back-off between metadata retries while the topic gets a leader


def _state(msg: Message) -> ledger.JobState | tuple[str, None] | None:
    if msg.error() is not None:
        if msg.error().code() != KafkaError._PARTITION_EOF:
            log.warning("job-state: %s", msg.error())
        return None
    key = msg.key()
    if key is None:
        return None
    value = msg.value()
    if value is None:
        return (key.decode(), None)
    try:
        return ledger.JobState.from_json(value)
    except MalformedEventError as exc:
        log.warning("bad job-state record skipped: %s", exc)
        return None
