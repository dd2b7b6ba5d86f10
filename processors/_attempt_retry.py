"""Attempt retry: how one fetch attempt's result becomes the job's next step.

One of three things Scrapeledger could call "retry"; this module owns the first:

* **attempt retry** (here): a fetch that failed for a reason that may pass - a timeout, a
  refused connection, a 5xx, a 429 - is tried again later, as a new *attempt* of the job;
* **record failure** (``processors/_record_failure.py``): a processor's step raised on a
  ledger record; the record is tried again by a restarted process, and given up on after
  ``SCRAPELEDGER_MAX_PROCESSING_FAILURES``;
* **crash recovery** (``processors/_crashes.py``): the scraper process died with attempts in
  flight; the restarted process reads back which, runs a suspect alone, and dead-letters one
  that keeps killing it (``scraper_crashed``).

(Riding out a lost broker - ``scrapeledger/outage.py``, ``Processor.run`` - is about Kafka,
not about jobs, and retries no job.)

The attempt-retry story, in the order it happens:

1. **Which failures are retryable** is decided in one place, ``processors/fetch/_classify.py``
   (``classify``): every fetch outcome becomes :class:`FetchOk` or a :class:`FetchError` with a
   stable ``code`` and ``retryable`` (table in docs/scraper.md). A fetch that raises (a bug in
   the fetch path) is ``scraper_error``, permanent: replaying it would fail the same way.
2. **The outcome events** (:func:`outcome_events`): every attempt ends in exactly one outcome,
   id ``<job>/a<n>/outcome`` (so a replayed attempt's outcome is a duplicate the fold ignores):
   ``ScrapeSucceeded``; ``JobFailed`` (permanent); ``AttemptFailed`` followed by
   ``RetryScheduled`` (retryable, attempts left); ``JobDeadLettered`` (retryable, none left;
   the scraper copies it to the DLQ); or, for an attempt abandoned because its job was
   cancelled, a non-retryable ``AttemptFailed`` (``cancelled``) that only closes it.
3. **The bound**: ``SCRAPER_MAX_ATTEMPTS`` attempts per round. The attempt number travels in
   the events (``JobValidated`` is attempt 1, each ``RetryScheduled`` the next), never only in
   memory, so a restart cannot reset it; an operator's ``JobRedriven`` starts a new round with
   ``base`` = the attempts already spent, so numbering never restarts while the limit counts
   afresh.
4. **The back-off**: ``RetryScheduled.not_before`` is ``at`` plus ``backoff_delay``
   (``processors/fetch/_backoff.py``: full jitter over a capped exponential, at least a
   server's ``Retry-After``).
5. **The next attempt**: ``RetryScheduled`` is a scrape trigger like ``JobValidated``; the
   scraper reads it from the ledger, waits until ``not_before`` and fetches again
   (``FetchSink._run`` in ``processors/scraper.py``).
"""

from __future__ import annotations

from typing import Any

import ledger
from processors.fetch import FetchError, FetchOk, backoff_delay
from scrapeledger.settings import Settings

CANCELLED_CODE = "cancelled"
"""The code of an attempt abandoned because its job was cancelled (never retried)."""


def round_base(trigger: ledger.FetchSpec) -> int:
    """The attempts spent before this trigger's round (0 unless an operator redrove the job)."""
    return trigger.base if isinstance(trigger, ledger.RetryScheduled | ledger.JobRedriven) else 0


def outcome_events(
    trigger: ledger.FetchSpec,
    result: FetchOk | FetchError,
    *,
    settings: Settings,
    body_ref: tuple[int, int] | None,
    body_inline: str | None,
    cut: bool = False,
) -> list[ledger.Event]:
    """The events that record one attempt's result. Pure apart from reading the clock for ``at``.

    ``cut``: the stored outputs document had to be cut to fit the bodies topic (``truncated``).
    """
    common: dict[str, Any] = {
        "job_id": trigger.job_id,
        "event_id": ledger.outcome_id(trigger.job_id, trigger.attempt),
        "at": ledger.now(),
        "source": settings.pod_name,
        "attempt": trigger.attempt,
    }
    if isinstance(result, FetchOk):
        return [_succeeded(trigger, result, common, body_ref=body_ref, body_inline=body_inline, cut=cut)]
    return _failed(trigger, result, common, settings)


def _succeeded(
    trigger: ledger.FetchSpec,
    result: FetchOk,
    common: dict[str, Any],
    *,
    body_ref: tuple[int, int] | None,
    body_inline: str | None,
    cut: bool,
) -> ledger.ScrapeSucceeded:
    return ledger.ScrapeSucceeded(
        **common,
        url=trigger.url,
        final_url=result.final_url,
        http_status=result.http_status,
        headers=result.headers,
        elapsed_ms=result.elapsed_ms,
        body_bytes=len(result.body),
        truncated=result.truncated or cut,
        body_partition=body_ref[0] if body_ref else None,
        body_offset=body_ref[1] if body_ref else None,
        body=body_inline,
        formats=trigger.formats,
    )


def _failed(
    trigger: ledger.FetchSpec, result: FetchError, common: dict[str, Any], settings: Settings
) -> list[ledger.Event]:
    """A failed attempt's outcome: closed (cancelled), final (permanent, or out of attempts), or
    an ``AttemptFailed`` with the ``RetryScheduled`` of the next attempt."""
    if result.code == CANCELLED_CODE:
        # the job is already terminal (cancelled); this only closes the attempt in the ledger
        return [
            ledger.AttemptFailed(
                **common, code=result.code, message=result.message, retryable=False,
                http_status=result.http_status,
            )
        ]
    if not result.retryable:
        return [
            ledger.JobFailed(
                **common, code=result.code, message=result.message, http_status=result.http_status
            )
        ]
    spent = trigger.attempt - round_base(trigger)
    if spent >= settings.scraper_max_attempts:
        return [
            ledger.JobDeadLettered(
                **common, code=result.code, message=f"{result.message} (after {spent} attempts)"
            )
        ]
    failed = ledger.AttemptFailed(
        **common, code=result.code, message=result.message, retryable=True,
        http_status=result.http_status,
    )
    return [failed, _retry(trigger, result, at=common["at"], settings=settings)]


def _retry(
    trigger: ledger.FetchSpec, result: FetchError, *, at: float, settings: Settings
) -> ledger.RetryScheduled:
    """The next attempt of ``trigger``'s job: the same request, not before the back-off."""
    base = round_base(trigger)
    delay = backoff_delay(
        trigger.attempt - base,
        base_s=settings.scraper_backoff_base_s,
        cap_s=settings.scraper_backoff_max_s,
        retry_after_s=result.retry_after_s,
    )
    return ledger.RetryScheduled(
        job_id=trigger.job_id,
        event_id=ledger.retry_id(trigger.job_id, trigger.attempt + 1),
        at=at,
        source=settings.pod_name,
        attempt=trigger.attempt + 1,
        url=trigger.url,
        headers=trigger.headers,
        timeout_s=trigger.timeout_s,
        proxy=trigger.proxy,
        sealed=trigger.sealed,  # the retry carries the credentials on, still sealed
        formats=trigger.formats,
        not_before=at + delay,
        base=base,
    )
