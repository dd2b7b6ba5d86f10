"""The edge's budgets (ws_edge/_limits.py): pure rules with an injected clock, no sockets."""

from __future__ import annotations

import logging

import pytest

import ledger
from ws_edge._limits import (
    Admission,
    AttachWindow,
    ConnectionBudget,
    SendBudget,
    Throttled,
    TokenBucket,
)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_connections_are_capped_per_address_and_in_all_with_a_reserve_for_newcomers() -> None:
    budget = ConnectionBudget(total=3, per_address=2, reserve=1)
    assert [budget.admit("a"), budget.admit("a"), budget.admit("a")] == [
        Admission.NORMAL, Admission.NORMAL, None]
    assert budget.admit("b") is Admission.NORMAL  # the total (3) is reached
    assert budget.admit("b") is None  # b holds one already: no reserve place for it
    assert budget.admit("c") is Admission.RESERVE  # c holds none: the probe reserve
    assert budget.admit("d") is None  # the reserve is used up
    budget.release("c", Admission.RESERVE)
    budget.release("a", Admission.NORMAL)
    assert budget.admit("d") is Admission.NORMAL
    assert budget.held_by("a") == 1 and budget.held_by("c") == 0


def test_no_per_address_cap_when_it_is_zero() -> None:
    budget = ConnectionBudget(total=100, per_address=0)
    assert all(budget.admit("proxy") is Admission.NORMAL for _ in range(100))
    assert budget.admit("proxy") is None


def test_the_token_bucket_refuses_past_the_burst_and_says_when_to_retry() -> None:
    clock = Clock()
    bucket = TokenBucket(rate=2.0, burst=3, clock=clock)
    assert [bucket.take() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.take() == pytest.approx(0.5)
    clock.now += 0.5
    assert bucket.take() == 0.0
    clock.now += 10  # refills to the burst, no more
    assert [bucket.take() for _ in range(4)][-1] > 0


def test_the_send_budget_lets_one_big_frame_through_but_not_a_queue_of_them() -> None:
    budget = SendBudget(cap=100)
    assert budget.take(500)  # nothing queued: one frame of any size
    assert not budget.take(1)
    budget.done(500)
    assert budget.take(60) and budget.take(40) and not budget.take(1)


def test_the_attach_window_records_once_and_keeps_the_last_answer_until_it_expires() -> None:
    clock = Clock()
    window = AttachWindow(10.0, most=2, clock=clock)
    job = ledger.new_job_id()
    assert window.attach(job) and not window.attach(job)
    assert window.answer(job) is None
    state = ledger.JobState(job_id=job)
    window.answered(state)
    assert window.answer(job) is state
    assert window.delivered(job) and not window.delivered(job)
    clock.now += 10.0
    assert job not in window and window.attach(job)  # a new window: one more record
    others = [ledger.new_job_id() for _ in range(3)]
    for other in others:
        window.attach(other)
    assert len(window) == 2 and others[0] not in window  # the oldest went first


def test_a_throttled_log_writes_once_per_interval_and_counts_the_rest(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    throttled = Throttled(logging.getLogger("test.throttled"), 1.0, clock=clock)
    with caplog.at_level(logging.WARNING, "test.throttled"):
        for _ in range(1000):
            throttled.warning("accept failed: %s", "Too many open files")
            clock.now += 0.01  # ten seconds in all
    assert len(caplog.records) == 10
    assert "(99 more like this since the last line)" in caplog.records[-1].getMessage()
