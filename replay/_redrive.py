"""Send failed or dead-lettered jobs back to the scraper, recorded as ``JobRedriven`` events."""

from __future__ import annotations

from collections.abc import Iterable

import ledger
from scrapeledger import topics
from scrapeledger.clients import make_producer
from scrapeledger.errors import BrokerError, CredentialsUnreadableError
from scrapeledger.settings import Settings
from scrapeledger.vault import Vault

from ._rebuild import fold_ledger


def select(
    settings: Settings,
    *,
    job_ids: Iterable[str] = (),
    since: float | None = None,
    until: float | None = None,
    codes: Iterable[str] = (),
    statuses: Iterable[str] = ("dead_lettered", "failed"),
) -> list[ledger.JobState]:
    """Jobs eligible for a redrive, from the ledger itself (not a possibly stale state copy)."""
    wanted_ids = set(job_ids)
    wanted_codes = set(codes)
    wanted_status = set(statuses) & ledger.REDRIVABLE
    states, _, _ = fold_ledger(settings)
    picked = []
    for state in states.values():
        if state.status not in wanted_status:
            continue
        if wanted_ids and state.job_id not in wanted_ids:
            continue
        if wanted_codes and (state.error is None or state.error.code not in wanted_codes):
            continue
        finished = state.finished_at or 0.0
        if since is not None and finished < since:
            continue
        if until is not None and finished > until:
            continue
        picked.append(state)
    return sorted(picked, key=lambda s: s.finished_at or 0.0)


def redrive_events(
    states: Iterable[ledger.JobState], *, source: str, reason: str, vault: Vault
) -> list[ledger.JobRedriven]:
    """One ``JobRedriven`` per job: the attempt numbering continues, the attempt budget restarts.

    The job's credentials go along sealed again under the newest key, so a job redriven after a
    rotation still runs once the old key is retired. Raises
    :class:`~scrapeledger.errors.CredentialsUnreadableError` for a job whose key is gone (check
    with :func:`unreadable` first)."""
    events = []
    for s in states:
        request = vault.reseal(s.job_id, s.headers, s.proxy, s.sealed)
        events.append(
            ledger.JobRedriven(
                job_id=s.job_id,
                event_id=ledger.new_event_id(),
                at=ledger.now(),
                source=source,
                attempt=s.attempts + 1,
                base=s.attempts,
                url=s.url,
                headers=request.headers,
                timeout_s=s.timeout_s,
                proxy=request.proxy,
                sealed=request.sealed,
                formats=s.formats,
                reason=reason,
            )
        )
    return events


def unreadable(states: Iterable[ledger.JobState], vault: Vault) -> list[ledger.JobState]:
    """Jobs whose sealed credentials no configured key opens: a redrive would only fail again."""
    bad = []
    for s in states:
        try:
            vault.open(s.job_id, s.headers, s.proxy, s.sealed)
        except CredentialsUnreadableError:
            bad.append(s)
    return bad


def redrive(settings: Settings, events: list[ledger.JobRedriven]) -> None:
    """Append the redrive events to the ledger (acks=all)."""
    producer = make_producer(settings)
    for e in events:
        producer.produce(settings.topic(topics.LEDGER), key=e.job_id, value=ledger.encode_event(e))
    if producer.flush(60):
        raise BrokerError("redrive events were not all acknowledged")
