"""Expiry: finished jobs older than the replay window leave ``job-state``.

The materializer runs :class:`ExpiryLoop` next to its pipeline, and an operator can run one
sweep by hand (``replay`` re-exports :func:`expire`). :func:`expire` finds terminal jobs whose
``finished_at`` is older than ``SCRAPELEDGER_REPLAY_WINDOW_S`` in the compacted topic and
appends a ``JobExpired`` event for each. The materializer folds it, tombstones the job's
``job-state`` record and keeps only a small stub, so a later resume is answered "expired" rather
than "unknown". The event id is fixed per job: running the sweep twice (or on two
materializers) records one expiry.
"""

from __future__ import annotations

import logging
import threading

import ledger
from scrapeledger import topics
from scrapeledger.clients import make_producer
from scrapeledger.errors import BrokerError
from scrapeledger.reader import latest_states
from scrapeledger.settings import Settings

log = logging.getLogger(__name__)


def expire(settings: Settings, *, now: float | None = None) -> list[str]:
    """Append ``JobExpired`` for every finished job past the replay window; return their ids."""
    cutoff = (ledger.now() if now is None else now) - settings.replay_window_s
    latest = latest_states(settings)
    due = [
        s for s in latest.values()
        if s is not None and s.terminal and s.status != "expired"
        and s.finished_at is not None and s.finished_at < cutoff
    ]
    if not due:
        return []
    producer = make_producer(settings)
    for s in due:
        event = ledger.JobExpired(job_id=s.job_id, event_id=f"{s.job_id}/expired", at=ledger.now(),
                             source=f"expiry@{settings.pod_name}")
        producer.produce(settings.topic(topics.LEDGER), key=s.job_id, value=ledger.encode_event(event))
    if producer.flush(60):
        raise BrokerError("expiry events were not all acknowledged")
    log.info("expired %d jobs finished before the replay window", len(due))
    return [s.job_id for s in due]


class ExpiryLoop:
    """Run :func:`expire` every ``interval`` seconds in a daemon thread (in the materializer),
    from :meth:`start` until :meth:`close`."""

    def __init__(self, settings: Settings, interval: float | None = None) -> None:
        self.settings = settings
        self.interval = interval or min(300.0, max(1.0, settings.replay_window_s / 4))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="expiry", daemon=True)

    def start(self) -> ExpiryLoop:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                expire(self.settings)
            except Exception as exc:
                log.warning("expiry sweep failed: %r", exc)

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)
