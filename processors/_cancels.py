"""The scraper's ear for cancels: a second, group-less reader of the ledger that sees
``JobCancelled`` while the Quix Streams pipeline is busy.

The pipeline cannot hear a cancel in time by itself: a checkpoint waits in ``FetchSink.flush()``
until every fetch it started has its outcome in Kafka (that is what makes the commit safe), and
while it waits no record is consumed - the cancel of the very fetch it waits for would be read
only after that fetch ended. So this thread reads the ledger on its own consumer, skips every
record that is not a cancel with the cheap type test (``ledger.may_be``), and hands each cancel
to the sink, which abandons the job's attempt in flight. It starts where the pipeline will (the
group's committed offsets), so no cancel of an attempt this process may run is missed.

Cost: the scraper fetches the ledger twice (~6 small records per job, each but a cancel skipped
by the type test without decoding; docs/api.md, "Cancellation"). A topic of cancels only would
avoid it and is a topology change left for later.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from confluent_kafka import TopicPartition

import ledger
from scrapeledger import topics
from scrapeledger.clients import IDLE_FETCH_WAIT_MS
from scrapeledger.errors import EventError
from scrapeledger.reader import committed_offsets, consumer, partitions_of
from scrapeledger.settings import Settings

log = logging.getLogger(__name__)


class CancelWatch:
    """Calls ``on_cancel`` (from its own thread) for every ``JobCancelled`` written to the
    ledger from the scraper group's committed offsets on, until :meth:`close`."""

    def __init__(self, settings: Settings, group: str, on_cancel: Callable[[ledger.JobCancelled],
                                                                           None]) -> None:
        self.settings = settings
        self.group = group
        self.on_cancel = on_cancel
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="scraper-cancels", daemon=True)
        self.seen = 0

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        topic = self.settings.topic(topics.LEDGER)
        c = consumer(self.settings, **{"fetch.wait.max.ms": IDLE_FETCH_WAIT_MS})
        try:
            start = committed_offsets(self.settings, self.group, topic)
            assignment = []
            for p in partitions_of(c, topic):
                low, _ = c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
                assignment.append(TopicPartition(topic, p, max(low, start.get(p, low))))
            c.assign(assignment)
            while not self._stop.is_set():
                msg = c.poll(0.5)
                if msg is None or msg.error() is not None:
                    continue
                raw = msg.value()
                if not ledger.may_be(raw, (ledger.JobCancelled,)):
                    continue
                try:
                    event = ledger.decode_event(raw)
                except EventError:
                    continue
                if isinstance(event, ledger.JobCancelled):
                    self.seen += 1
                    self.on_cancel(event)
        except Exception:
            if not self._stop.is_set():
                log.exception("the cancel reader failed; cancels now wait for the pipeline")
        finally:
            c.close()
