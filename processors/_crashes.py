"""Crash recovery: what the ledger says about work a process started but may not have finished.

One of three things Scrapeledger could call "retry"; this module owns the third:

* **attempt retry** (``processors/_attempt_retry.py``): a fetch that failed for a reason that
  may pass is tried again later as a new attempt of the job (``RetryScheduled``);
* **record failure** (``processors/_record_failure.py``): a processor's step raised on a ledger
  record, counted with ``ProcessingFailed`` until the processor gives up on it;
* **crash recovery** (here): the scraper *process* died - killed, out of memory, a fetch that
  takes the interpreter down - with attempts in flight.

A process that dies restarts from its group's last committed offset and meets the same records
again. To stop "the same message was processed forever", the count of tries has to outlive the
process, so it is kept in the ledger, and this module reads it back:

1. The scraper writes ``AttemptStarted`` before each fetch and waits for Kafka's ack
   (``processors/scraper.py``), so a death leaves a start without an outcome.
2. At start-up every processor reads the ledger from its group's committed offsets to the end
   (:func:`read_crash_log`) - exactly the records it is about to see again, and the events
   written about them - into a :class:`CrashLog`. The same read gives record failure its
   counts (``failures``, from ``ProcessingFailed``), and the scraper its cancels.
3. Per trigger, :meth:`CrashLog.plan` decides: outcome already recorded -> **skip** (no
   refetch); in flight at ``SOLO_AFTER`` (2) deaths -> run **solo**, nothing else in flight, so
   the next death is charged to it and not to its neighbours; died ``SCRAPER_MAX_CRASHES``
   times running solo -> **dead**: the scraper dead-letters it (``scraper_crashed``, DLQ copy
   first) instead of dying again. A fetch that kills the scraper every time costs
   ``SOLO_AFTER`` + ``SCRAPER_MAX_CRASHES`` deaths (4 by default).

The read covers every partition, not only the ones this process will be assigned, because the
assignment is not known yet. A partition that moves to a long-running process in a rebalance is
not re-read, so that process may try a crashing record once more than the limit; each restart
reads again, so the bound is the limit plus the number of processes, never unbounded.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field, fields
from typing import Literal

import ledger
from scrapeledger import topics
from scrapeledger.errors import EventError
from scrapeledger.reader import committed_offsets, read_to_end
from scrapeledger.settings import Settings

log = logging.getLogger(__name__)

Plan = Literal["run", "solo", "skip", "dead"]

SOLO_AFTER = 2
"""Starts without an outcome after which an attempt runs alone: two process deaths with it in
flight make it a suspect, and running it alone keeps innocent neighbours out of its count."""

FINISHED_KEPT = 100_000
"""Finished attempts remembered (oldest forgotten first): replayed triggers arrive within seconds
of their outcome, and the bound keeps a long-running scraper's memory flat."""

_RELEVANT = (ledger.AttemptStarted, ledger.ProcessingFailed, ledger.RetryScheduled, ledger.JobCancelled,
             *ledger.OUTCOMES)


@dataclass
class CrashLog:
    """Counts of unfinished tries, read back from the ledger."""

    starts: Counter[tuple[str, int]] = field(default_factory=Counter)
    solo_starts: Counter[tuple[str, int]] = field(default_factory=Counter)
    finished: dict[tuple[str, int], None] = field(default_factory=dict)  # an insertion-ordered set
    failures: Counter[tuple[str, int, int]] = field(default_factory=Counter)
    """``(processor, partition, offset)`` -> times that processor raised on that record."""
    cancelled: dict[str, None] = field(default_factory=dict)
    """Jobs cancelled (an insertion-ordered set, bounded like ``finished``): no attempt of
    theirs starts any more. A trigger that follows its job's cancel in the ledger is seen after
    it, in this stream or in the start-up read, which covers every uncommitted record."""

    def is_cancelled(self, job_id: str) -> bool:
        return job_id in self.cancelled

    def add(self, event: ledger.Event) -> None:
        key = (event.job_id, event.attempt)
        if isinstance(event, ledger.JobCancelled):
            self.cancelled[event.job_id] = None
            if len(self.cancelled) > FINISHED_KEPT:
                del self.cancelled[next(iter(self.cancelled))]
        elif isinstance(event, ledger.AttemptStarted):
            self.starts[key] += 1
            if event.solo:
                self.solo_starts[key] += 1
        elif isinstance(event, ledger.ProcessingFailed):
            where = (event.processor, event.partition, event.offset)
            self.failures[where] = max(self.failures[where], event.failures)
        elif isinstance(event, ledger.RetryScheduled):
            # written after the attempt's AttemptFailed by the same idempotent producer to the
            # same partition: seeing it means attempt n-1's whole outcome is durable
            if event.event_id == ledger.retry_id(event.job_id, event.attempt):
                self._finish((event.job_id, event.attempt - 1))
        elif ledger.is_outcome(event) and not isinstance(event, ledger.AttemptFailed):
            self._finish(key)  # a terminal outcome is a single event

    def _finish(self, key: tuple[str, int]) -> None:
        self.finished[key] = None
        if len(self.finished) > FINISHED_KEPT:
            del self.finished[next(iter(self.finished))]
        self.starts.pop(key, None)
        self.solo_starts.pop(key, None)

    def plan(self, job_id: str, attempt: int, *, max_crashes: int) -> Plan:
        """What the scraper should do with attempt ``attempt`` of ``job_id`` now."""
        key = (job_id, attempt)
        if key in self.finished or job_id in self.cancelled:
            return "skip"  # its outcome is already in the ledger, or nobody wants it any more
        if self.solo_starts[key] >= max_crashes:
            return "dead"
        if self.starts[key] >= SOLO_AFTER:
            return "solo"
        return "run"

    def restore(self, read: CrashLog) -> None:
        """Take the counts of ``read`` (the start-up read, :func:`read_crash_log`) as this log's.

        A processor hands its log to its topology and sinks before it reads the ledger, so the
        read goes into a log of its own (retried from scratch if the broker fails half-way)
        and is moved into the shared one here."""
        for f in fields(self):
            setattr(self, f.name, getattr(read, f.name))

    @property
    def unfinished(self) -> int:
        return len(self.starts)


def read_crash_log(settings: Settings, processor: str) -> CrashLog:
    """Read the ledger from ``processor``'s committed offsets to the end into a :class:`CrashLog`."""
    topic = settings.topic(topics.LEDGER)
    crashes = CrashLog()
    start = committed_offsets(settings, settings.group(processor), topic)
    records = 0
    for msg in read_to_end(settings, topic, start=start):
        records += 1
        raw = msg.value()
        if not ledger.may_be(raw, _RELEVANT):
            continue
        try:
            crashes.add(ledger.decode_event(raw))
        except EventError:
            continue
    if crashes.unfinished or crashes.failures:
        log.warning(
            "%s: %d attempt(s) started without an outcome and %d record(s) that raised, in %d "
            "uncommitted ledger records",
            processor, crashes.unfinished, len(crashes.failures), records,
        )
    return crashes
