"""Properties of the fold that the materializer and ``replay rebuild`` rely on."""

from __future__ import annotations

import dataclasses
from functools import reduce

from hypothesis import given
from hypothesis import strategies as st

import ledger
from scrapeledger.errors import InvalidTransitionError

from .strategies import JOB_IDS, events_of, history


def fold_seq(events: list[ledger.Event], start: ledger.JobState | None = None) -> ledger.JobState | None:
    return reduce(ledger.fold, events, start)


@given(history())
def test_fold_is_deterministic_across_the_wire(events: list[ledger.Event]) -> None:
    decoded = [ledger.decode_event(ledger.encode_event(e)) for e in events]
    assert fold_seq(decoded) == fold_seq(events)


@given(history(), st.data())
def test_applying_an_event_twice_equals_applying_it_once(events: list[ledger.Event],
                                                         data: st.DataObject) -> None:
    if not events:
        return
    i = data.draw(st.integers(0, len(events) - 1), label="duplicated")
    j = data.draw(st.integers(i + 1, len(events)), label="inserted at")
    with_dup = [*events[:j], events[i], *events[j:]]
    assert fold_seq(with_dup) == fold_seq(events)


@given(history())
def test_replaying_the_history_onto_its_own_state_changes_nothing(events: list[ledger.Event]) -> None:
    state = fold_seq(events)
    assert fold_seq(events, state) == state


@given(history(), st.data())
def test_state_from_a_snapshot_plus_the_rest_equals_the_full_fold(
    events: list[ledger.Event], data: st.DataObject
) -> None:
    cut = data.draw(st.integers(0, len(events)), label="snapshot after")
    snapshot = fold_seq(events[:cut])
    if snapshot is not None:
        # the snapshot travels through the compacted topic's wire format
        snapshot = ledger.JobState.from_json(snapshot.to_json())
    assert fold_seq(events[cut:], snapshot) == fold_seq(events)


@given(st.lists(st.sampled_from(JOB_IDS), max_size=60), st.data())
def test_interleaving_jobs_does_not_change_any_jobs_state(order: list[str], data: st.DataObject) -> None:
    per_job = {j: data.draw(history(j), label=j) for j in JOB_IDS}
    cursors = dict.fromkeys(JOB_IDS, 0)
    interleaved: list[ledger.Event] = []
    for job in order:  # an arbitrary interleaving that keeps each job's own order
        if cursors[job] < len(per_job[job]):
            interleaved.append(per_job[job][cursors[job]])
            cursors[job] += 1
    for job in JOB_IDS:
        interleaved.extend(per_job[job][cursors[job]:])
    together = ledger.fold_all(interleaved)
    for job in JOB_IDS:
        assert together.get(job) == fold_seq(per_job[job])


@given(history())
def test_terminal_status_is_sticky_except_for_redrive_and_expiry(events: list[ledger.Event]) -> None:
    state: ledger.JobState | None = None
    for event in events:
        after = ledger.fold(state, event)
        if state is not None and state.terminal and after.status != state.status:
            assert isinstance(event, ledger.JobRedriven | ledger.JobExpired)
        state = after


@given(history())
def test_every_event_id_applies_at_most_once(events: list[ledger.Event]) -> None:
    state = fold_seq(events)
    if state is not None:
        assert len(state.seen) == len(set(state.seen)) == state.events


@given(events_of())
def test_an_event_of_another_job_is_refused(event: ledger.Event) -> None:
    other = ledger.JobState(job_id="someone-else-entirely-xx")
    try:
        ledger.fold(other, event)
    except InvalidTransitionError:
        return
    raise AssertionError("fold accepted another job's event")


@given(history(), events_of(JOB_IDS[0]))
def test_a_cancel_of_a_finished_or_never_submitted_job_changes_nothing(
    events: list[ledger.Event], cancel: ledger.Event
) -> None:
    state = fold_seq(events) or ledger.JobState(job_id=JOB_IDS[0])
    if not state.terminal and state.submitted_at is not None:
        return  # (never submitted: nothing to cancel either)
    cancelled = ledger.JobCancelled(
        job_id=state.job_id, event_id="a-new-cancel", at=cancel.at, source=cancel.source
    )
    after = ledger.fold(state, cancelled)
    bookkeeping = {"seen", "events"}
    assert all(getattr(after, f.name) == getattr(state, f.name)
               for f in dataclasses.fields(state) if f.name not in bookkeeping)


@given(history())
def test_a_cancel_of_a_running_job_ends_it_cancelled_for_good(events: list[ledger.Event]) -> None:
    state = fold_seq(events)
    if state is None or state.terminal or state.submitted_at is None:
        return
    cancel = ledger.JobCancelled(job_id=state.job_id, event_id="the-cancel", at=1.0, source="edge-0")
    after = ledger.fold(state, cancel)
    assert after.status == "cancelled" and after.terminal
    assert after.error is not None and after.error.code == "cancelled"
    for event in events:  # the job's own events again, now arriving late: a retry, an outcome...
        fresh = ledger.fold(after, dataclasses.replace(event, event_id=event.event_id + "/late"))
        assert fresh.status in ("cancelled", "expired")


@given(history(), st.data())
def test_a_repeated_submit_only_attaches_its_pod(events: list[ledger.Event], data: st.DataObject) -> None:
    state = fold_seq(events)
    if state is None or state.submitted_at is None:
        return
    again = ledger.JobSubmitted(
        job_id=state.job_id, event_id="a-resubmit", at=data.draw(st.floats(0, 2e9)),
        source=data.draw(st.sampled_from(["edge-0", "edge-9"])), url=data.draw(st.text(max_size=5)),
        headers={"x": "y"},
    )
    after = ledger.fold(state, again)
    assert after.pods == (*state.pods, again.source) if again.source not in state.pods else state.pods
    same = ("status", "url", "submitted_url", "headers", "proxy", "timeout_s", "origin_pod", "submitted_at")
    assert all(getattr(after, f) == getattr(state, f) for f in same)
