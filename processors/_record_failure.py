"""Record failure: a ledger record whose processing raises, tried again until given up on.

One of three things Scrapeledger could call "retry"; this module owns the second:

* **attempt retry** (``processors/_attempt_retry.py``): a fetch that failed for a reason that
  may pass is tried again later as a new attempt of the job (``RetryScheduled``);
* **record failure** (here): a processor's step raised on a ledger record;
* **crash recovery** (``processors/_crashes.py``): the scraper process died with attempts in
  flight (``AttemptStarted`` without an outcome), which the restarted process reads back.

The record-failure story. Step functions are total over bad input (undecodable bytes are
*poison*: the materializer sends them to the DLQ, the validator and scraper skip them, and none
of that is a failure), so a step that raises is a bug, an injected fault
(``SCRAPELEDGER_FAULTS``) or an infrastructure failure. Quix Streams hands the exception to
``on_processing_error`` (:meth:`RecordFailures.handle`, through ``Processor``):

1. A Kafka error is not the record's fault: nothing is counted, the Application stops and
   ``Processor.run`` rides out the outage (``scrapeledger/outage.py``).
2. Otherwise the failure is counted *in the ledger*: ``ProcessingFailed`` (processor,
   partition, offset, failure n), acknowledged before anything else happens. Skipping at once
   could drop a job for a passing fault, and crashing without a count loops forever ("the same
   message was processed forever").
3. The process then crashes; its supervisor restarts it, the new process reads the count back
   at start-up (the crash log's ``failures``, ``processors/_crashes.py``) and meets the same
   record again, since its offset was never committed.
4. The ``SCRAPELEDGER_MAX_PROCESSING_FAILURES``-th failure gives up instead: it writes
   ``JobDeadLettered`` (``processing_error``; the DLQ copy first) and the record is skipped
   (Quix commits past it). What the job cannot do without is salvaged first (the
   materializer keeps the client's pod of a ``JobSubmitted``, so the dead letter reaches it).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import ledger
from scrapeledger import topics
from scrapeledger.clients import make_producer
from scrapeledger.errors import ScrapeledgerError
from scrapeledger.redact import job_ref
from scrapeledger.settings import Settings

from ._crashes import CrashLog

log = logging.getLogger(__name__)

Salvage = Callable[[ledger.Event], list[ledger.Event]]
"""Turns an event a processor gave up on into events that keep what the job cannot do without."""


class RecordFailures:
    """Counts one processor's record failures in the ledger and says when to give up."""

    def __init__(self, settings: Settings, processor: str, crashes: CrashLog,
                 salvage: Salvage | None = None) -> None:
        """``crashes`` is the processor's crash log: its ``failures`` hold the counts read back
        at start-up, and are kept up to date here."""
        self.settings = settings
        self.processor = processor
        self.crashes = crashes
        self.salvage = salvage

    def handle(self, exc: Exception, row: Any) -> bool:
        """Record one failure of ``row`` (a Quix ``Row``); True to skip the record (given up),
        False to crash (the failure is counted, or it is not a ledger record of a job)."""
        key = row.key if isinstance(row.key, str) else None
        if row.topic != self.settings.topic(topics.LEDGER) or not key:
            log.error("%s failed processing a record of %s: %r", self.processor, row.topic, exc)
            return False
        where = (self.processor, row.partition, row.offset)
        failures = self.crashes.failures[where] + 1
        self.crashes.failures[where] = failures
        limit = self.settings.max_processing_failures
        log.error(
            "%s failed on ledger record %d/%d of job %s (failure %d of %d): %r",
            self.processor, row.partition, row.offset, job_ref(key), failures, limit, exc,
        )
        give_up = failures >= limit
        events = self._events(exc, row, key, failures, give_up=give_up)
        try:
            self._write_now(events)
        except ScrapeledgerError as write_error:
            log.error("%s could not record the failure (%s); crashing", self.processor, write_error)
            return False
        return give_up

    def _events(
        self, exc: Exception, row: Any, key: str, failures: int, *, give_up: bool
    ) -> list[ledger.Event]:
        """``ProcessingFailed``; when giving up, also what is salvaged and ``JobDeadLettered``."""
        marker = f"{key}/{self.processor}/p{row.partition}o{row.offset}"
        common: dict[str, Any] = {"job_id": key, "at": ledger.now(), "source": self.settings.pod_name}
        events: list[ledger.Event] = [
            ledger.ProcessingFailed(
                **common, event_id=f"{marker}/f{failures}", processor=self.processor,
                partition=row.partition, offset=row.offset, failures=failures, error=repr(exc)[:500],
            )
        ]
        if not give_up:
            return events
        if self.salvage is not None:
            try:
                events.extend(self.salvage(ledger.decode_event(row.value)))
            except Exception as salvage_error:  # the record may be what is broken
                log.warning("nothing salvaged from the failed record: %r", salvage_error)
        events.append(
            ledger.JobDeadLettered(
                **common, event_id=f"{marker}/dead", code="processing_error",
                message=f"{self.processor} failed {failures} times on this job's ledger record "
                f"{row.partition}/{row.offset}: {exc!r}"[:1000],
            )
        )
        return events

    def _write_now(self, events: list[ledger.Event]) -> None:
        """Produce ``events`` to the ledger (dead letters to the DLQ first) and wait for acks."""
        producer = make_producer(self.settings)
        errors: list[str] = []

        def on_delivery(err: Any, msg: Any) -> None:
            if err is not None:
                errors.append(str(err))

        for event in events:
            raw = ledger.encode_event(event)
            if isinstance(event, ledger.JobDeadLettered):
                producer.produce(self.settings.topic(topics.DLQ), raw, event.job_id, on_delivery=on_delivery)
                producer.flush(30)
            producer.produce(self.settings.topic(topics.LEDGER), raw, event.job_id, on_delivery=on_delivery)
        left = producer.flush(30)
        if left or errors:
            raise ScrapeledgerError(f"{left} unsent, errors: {errors}")
