"""Concrete job histories and what the fold makes of them."""

from __future__ import annotations

from functools import reduce

import ledger as L

JOB = "Zm9vYmFyYmF6cXV4cXV1eA"


def ev(cls: type[L.Event], event_id: str, attempt: int = 0, source: str = "edge-0", **kw: object) -> L.Event:
    return cls(job_id=JOB, event_id=event_id, at=float(len(event_id)), source=source, attempt=attempt, **kw)


SUBMITTED = ev(L.JobSubmitted, "s", url="http://x/")
VALIDATED = ev(L.JobValidated, f"{JOB}/validated", attempt=1, url="http://x/")


def success(attempt: int) -> L.Event:
    return ev(L.ScrapeSucceeded, L.outcome_id(JOB, attempt), attempt=attempt, url="http://x/",
              final_url="http://x/", http_status=200, headers={}, elapsed_ms=1.0, body_bytes=3)


def failure(attempt: int) -> L.Event:
    return ev(L.AttemptFailed, L.outcome_id(JOB, attempt), attempt=attempt, code="timeout",
              message="slow", retryable=True)


def run(*events: L.Event) -> L.JobState:
    state = reduce(L.fold, events, None)
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
    retry = ev(L.RetryScheduled, L.retry_id(JOB, 2), attempt=2, url="http://x/", not_before=9.0)
    dead = ev(L.JobDeadLettered, f"{JOB}/a2/dead", attempt=2, code="timeout", message="slow")
    state = run(SUBMITTED, VALIDATED, failure(1), retry, failure(2), dead)
    assert state.status == "dead_lettered"
    assert state.attempts == 2
    assert state.error == L.JobError(code="timeout", message="slow")


def test_redrive_reopens_a_dead_letter_and_keeps_counting() -> None:
    dead = ev(L.JobDeadLettered, f"{JOB}/a1/dead", attempt=1, code="timeout", message="slow")
    redrive = ev(L.JobRedriven, "r1", attempt=2, url="http://x/", base=1)
    state = run(SUBMITTED, VALIDATED, failure(1), dead, redrive)
    assert (state.status, state.attempt_base, state.redrives) == ("redriven", 1, 1)
    assert run(SUBMITTED, VALIDATED, failure(1), dead, redrive, success(2)).status == "succeeded"
    # a succeeded job is not redrivable
    assert run(SUBMITTED, VALIDATED, success(1), redrive).status == "succeeded"


def test_deliveries_reach_every_attached_pod_in_either_order() -> None:
    attach = ev(L.ClientAttached, "att", pod="edge-1", source="edge-1")
    # attach before finish: the finish delivers to both pods
    before = run(SUBMITTED, VALIDATED, attach)
    after = L.fold(before, success(1))
    assert L.deliveries_due(before, after, success(1)) == ("edge-0", "edge-1")
    # attach after finish: the attach delivers to the new pod only
    done = run(SUBMITTED, VALIDATED, success(1))
    attached = L.fold(done, attach)
    assert L.deliveries_due(done, attached, attach) == ("edge-1",)
    # a duplicate changes nothing and delivers nothing
    assert L.deliveries_due(attached, L.fold(attached, attach), attach) == ()


def test_an_expiry_is_delivered_to_the_pods_that_may_remember_the_result() -> None:
    attach = ev(L.ClientAttached, "att", pod="edge-1", source="edge-1")
    done = run(SUBMITTED, VALIDATED, success(1), attach)
    expiry = ev(L.JobExpired, "exp")
    expired = L.fold(done, expiry)
    assert L.deliveries_due(done, expired, expiry) == ("edge-0", "edge-1")
    again = ev(L.JobExpired, "exp2")
    assert L.deliveries_due(expired, L.fold(expired, again), again) == ()


def test_rejected_is_terminal() -> None:
    rejected = ev(L.JobRejected, f"{JOB}/validated", code="invalid_url", message="ftp")
    state = run(SUBMITTED, rejected, success(1))
    assert state.status == "rejected"
    assert state.error is not None and state.error.code == "invalid_url"


def test_job_ids_are_url_safe_and_unguessable() -> None:
    ids = {L.new_job_id() for _ in range(1000)}
    assert len(ids) == 1000
    for job_id in ids:
        assert L.is_valid_job_id(job_id)
        assert len(job_id) == 22  # 16 random bytes = 128 bits, base64url without padding
    assert not L.is_valid_job_id("../../etc/passwd")
    assert not L.is_valid_job_id(42)
