"""Concrete job histories and what the fold makes of them."""

from __future__ import annotations

from functools import reduce

import ledger

JOB = "Zm9vYmFyYmF6cXV4cXV1eA"


def ev(cls: type[ledger.Event], event_id: str, attempt: int = 0, source: str = "edge-0",
       **kw: object) -> ledger.Event:
    return cls(job_id=JOB, event_id=event_id, at=float(len(event_id)), source=source, attempt=attempt, **kw)


SUBMITTED = ev(ledger.JobSubmitted, "s", url="http://x/")
VALIDATED = ev(ledger.JobValidated, f"{JOB}/validated", attempt=1, url="http://x/")


def success(attempt: int) -> ledger.Event:
    return ev(ledger.ScrapeSucceeded, ledger.outcome_id(JOB, attempt), attempt=attempt, url="http://x/",
              final_url="http://x/", http_status=200, headers={}, elapsed_ms=1.0, body_bytes=3)


def failure(attempt: int) -> ledger.Event:
    return ev(ledger.AttemptFailed, ledger.outcome_id(JOB, attempt), attempt=attempt, code="timeout",
              message="slow", retryable=True)


def run(*events: ledger.Event) -> ledger.JobState:
    state = reduce(ledger.fold, events, None)
    assert state is not None
    return state


def test_happy_path() -> None:
    state = run(SUBMITTED, VALIDATED, success(1))
    assert state.status == "succeeded"
    assert state.attempts == 1
    assert state.result is not None and state.result.http_status == 200
    assert state.pods == ("edge-0",)


def test_first_outcome_of_an_attempt_wins_over_a_replayed_one() -> None:
    assert run(SUBMITTED, VALIDATED, failure(1), success(1)).status == "validated"
    assert run(SUBMITTED, VALIDATED, success(1), failure(1)).status == "succeeded"


def test_retries_count_attempts_then_dead_letter() -> None:
    retry = ev(ledger.RetryScheduled, ledger.retry_id(JOB, 2), attempt=2, url="http://x/", not_before=9.0)
    dead = ev(ledger.JobDeadLettered, f"{JOB}/a2/dead", attempt=2, code="timeout", message="slow")
    state = run(SUBMITTED, VALIDATED, failure(1), retry, failure(2), dead)
    assert state.status == "dead_lettered"
    assert state.attempts == 2
    assert state.error == ledger.JobError(code="timeout", message="slow")


def test_redrive_reopens_a_dead_letter_and_keeps_counting() -> None:
    dead = ev(ledger.JobDeadLettered, f"{JOB}/a1/dead", attempt=1, code="timeout", message="slow")
    redrive = ev(ledger.JobRedriven, "r1", attempt=2, url="http://x/", base=1)
    state = run(SUBMITTED, VALIDATED, failure(1), dead, redrive)
    assert (state.status, state.attempt_base, state.redrives) == ("redriven", 1, 1)
    assert run(SUBMITTED, VALIDATED, failure(1), dead, redrive, success(2)).status == "succeeded"
    # a succeeded job is not redrivable
    assert run(SUBMITTED, VALIDATED, success(1), redrive).status == "succeeded"


def test_deliveries_reach_every_attached_pod_in_either_order() -> None:
    attach = ev(ledger.ClientAttached, "att", pod="edge-1", source="edge-1")
    # attach before finish: the finish delivers to both pods
    before = run(SUBMITTED, VALIDATED, attach)
    after = ledger.fold(before, success(1))
    assert ledger.deliveries_due(before, after, success(1)) == ("edge-0", "edge-1")
    # attach after finish: the attach delivers to the new pod only
    done = run(SUBMITTED, VALIDATED, success(1))
    attached = ledger.fold(done, attach)
    assert ledger.deliveries_due(done, attached, attach) == ("edge-1",)
    # a duplicate changes nothing and delivers nothing
    assert ledger.deliveries_due(attached, ledger.fold(attached, attach), attach) == ()


def test_an_expiry_is_delivered_to_the_pods_that_may_remember_the_result() -> None:
    attach = ev(ledger.ClientAttached, "att", pod="edge-1", source="edge-1")
    done = run(SUBMITTED, VALIDATED, success(1), attach)
    expiry = ev(ledger.JobExpired, "exp")
    expired = ledger.fold(done, expiry)
    assert ledger.deliveries_due(done, expired, expiry) == ("edge-0", "edge-1")
    again = ev(ledger.JobExpired, "exp2")
    assert ledger.deliveries_due(expired, ledger.fold(expired, again), again) == ()


def test_rejected_is_terminal() -> None:
    rejected = ev(ledger.JobRejected, f"{JOB}/validated", code="invalid_url", message="ftp")
    state = run(SUBMITTED, rejected, success(1))
    assert state.status == "rejected"
    assert state.error is not None and state.error.code == "invalid_url"


def test_job_ids_are_url_safe_and_unguessable() -> None:
    ids = {ledger.new_job_id() for _ in range(1000)}
    assert len(ids) == 1000
    for job_id in ids:
        assert ledger.is_valid_job_id(job_id)
        assert len(job_id) == 22  # 16 random bytes = 128 bits, base64url without padding
    assert not ledger.is_valid_job_id("../../etc/passwd")
    assert not ledger.is_valid_job_id(42)
