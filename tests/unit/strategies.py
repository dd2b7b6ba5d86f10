"""Hypothesis strategies for ledger events."""

from __future__ import annotations

from hypothesis import strategies as st

import ledger

JOB_IDS = ["job-aaaaaaaaaaaaaaaaaaaaa", "job-bbbbbbbbbbbbbbbbbbbbb", "job-ccccccccccccccccccccc"]
_text = st.text(alphabet="abcdefghijklmnopqrstuvwxyz-./:", max_size=12)
_pods = st.sampled_from(["edge-0", "edge-1", "edge-2"])
_at = st.floats(min_value=0, max_value=2e9, allow_nan=False)
_attempt = st.integers(min_value=0, max_value=5)
_headers = st.dictionaries(_text, _text, max_size=2)
_code = st.sampled_from(["timeout", "http_404", "connect_error", "invalid_url"])
_formats = st.lists(st.sampled_from([*ledger.FORMATS, "bogus"]), max_size=3).map(tuple) | st.just(("html",))


def _ev(cls: type[ledger.Event], **payload: st.SearchStrategy[object]) -> st.SearchStrategy[ledger.Event]:
    def build(job_id: str) -> st.SearchStrategy[ledger.Event]:
        return st.builds(
            cls,
            job_id=st.just(job_id),
            # a small id pool makes distinct events collide on event_id, as replayed steps do
            event_id=st.sampled_from([f"{job_id}/e{i}" for i in range(12)]),
            at=_at,
            source=_pods,
            attempt=_attempt,
            **payload,
        )

    return st.sampled_from(JOB_IDS).flatmap(build)


def events_of(job_id: str | None = None) -> st.SearchStrategy[ledger.Event]:
    """Any ledger event, optionally of one fixed job."""
    kinds = [
        _ev(ledger.JobSubmitted, url=_text, headers=_headers, timeout_s=st.none() | _at,
            proxy=st.none() | _text,
            formats=_formats, owner=st.none() | _text, idempotency_digest=st.none() | _text),
        _ev(ledger.JobValidated, url=_text, headers=_headers, formats=_formats),
        _ev(ledger.JobRejected, code=_code, message=_text),
        _ev(ledger.AttemptFailed, code=_code, message=_text, retryable=st.booleans(),
            http_status=st.none() | st.integers(100, 599)),
        _ev(ledger.RetryScheduled, url=_text, not_before=_at, base=_attempt, timeout_s=st.none() | _at,
            formats=_formats),
        _ev(ledger.ScrapeSucceeded, url=_text, final_url=_text, http_status=st.integers(100, 599),
            headers=_headers, elapsed_ms=_at, body_bytes=st.integers(0, 10**7),
            truncated=st.booleans(), body_partition=st.none() | st.integers(0, 5),
            body_offset=st.none() | st.integers(0, 10**6), body=st.none() | _text, formats=_formats),
        _ev(ledger.JobFailed, code=_code, message=_text, http_status=st.none() | st.integers(100, 599)),
        _ev(ledger.JobDeadLettered, code=_code, message=_text),
        _ev(ledger.ClientAttached, pod=_pods),
        _ev(ledger.ResultDelivered, pod=_pods),
        _ev(ledger.JobRedriven, url=_text, base=_attempt, reason=_text, formats=_formats),
        _ev(ledger.JobExpired),
        _ev(ledger.JobCancelled, reason=_text),
        _ev(ledger.AttemptStarted, solo=st.booleans()),
        _ev(ledger.ProcessingFailed, processor=st.sampled_from(["validator", "state"]),
            partition=st.integers(0, 5), offset=st.integers(0, 10**6), failures=st.integers(1, 5),
            error=_text),
    ]
    strategy = st.one_of(kinds)
    if job_id is None:
        return strategy
    return strategy.map(lambda e: _with_job(e, job_id))


def _with_job(event: ledger.Event, job_id: str) -> ledger.Event:
    import dataclasses

    return dataclasses.replace(
        event, job_id=job_id, event_id=job_id + "/" + event.event_id.rsplit("/", 1)[1]
    )


def history(job_id: str = JOB_IDS[0]) -> st.SearchStrategy[list[ledger.Event]]:
    return st.lists(events_of(job_id), max_size=25)
