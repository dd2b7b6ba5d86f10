"""The materializer's step function over a dict-backed state store (no broker)."""

from __future__ import annotations

from typing import Any

import orjson

import ledger
from processors.materializer import materialize_step
from scrapeledger import topics

JOB = "bWF0ZXJpYWxpemVyam9iaWQ"


class DictState:
    def __init__(self) -> None:
        self.data: dict[str, Any] = {}

    def get(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)

    def set(self, key: str, value: Any) -> None:
        self.data[key] = orjson.loads(orjson.dumps(value))  # as the store's serializer would

    def delete(self, key: str) -> None:
        self.data.pop(key, None)


def enc(event: ledger.Event) -> bytes:
    return ledger.encode_event(event)


SUBMIT = ledger.JobSubmitted(job_id=JOB, event_id="s", at=1.0, source="edge-a", url="http://x/")
OK = ledger.ScrapeSucceeded(job_id=JOB, event_id=ledger.outcome_id(JOB, 1), at=2.0, source="s", attempt=1,
                       url="http://x/", final_url="http://x/", http_status=200, headers={},
                       elapsed_ms=1.0, body_bytes=1, body_partition=0, body_offset=0)
ATTACH = ledger.ClientAttached(job_id=JOB, event_id="att", at=3.0, source="edge-b", pod="edge-b")


def test_state_and_deliveries_are_routed_by_pod() -> None:
    state = DictState()
    outs = materialize_step(enc(SUBMIT), JOB, state, "m")
    assert [o.topic for o in outs] == [topics.JOB_STATE]
    outs = materialize_step(enc(OK), JOB, state, "m")
    assert [(o.topic, o.key) for o in outs] == [(topics.JOB_STATE, JOB), (topics.DELIVERIES, "edge-a")]
    delivered = ledger.JobState.from_json(outs[1].value or b"")
    assert delivered.status == "succeeded"
    # a late attach on another pod gets its own delivery of the finished job
    outs = materialize_step(enc(ATTACH), JOB, state, "m")
    assert [(o.topic, o.key) for o in outs] == [(topics.JOB_STATE, JOB), (topics.DELIVERIES, "edge-b")]


def test_a_redelivered_event_produces_nothing() -> None:
    state = DictState()
    materialize_step(enc(SUBMIT), JOB, state, "m")
    materialize_step(enc(OK), JOB, state, "m")
    assert materialize_step(enc(OK), JOB, state, "m") == []


def test_poison_records_go_to_the_dlq_with_their_bytes() -> None:
    state = DictState()
    outs = materialize_step(b"\x00not json", "k", state, "m")
    assert [o.topic for o in outs] == [topics.DLQ]
    record = orjson.loads(outs[0].value or b"")
    assert record["kind"] == "poison" and "not json" in record["raw"]
    assert state.data == {}
    # a valid event under the wrong key would corrupt another job's state: also poison
    outs = materialize_step(enc(SUBMIT), "another-key", state, "m")
    assert [o.topic for o in outs] == [topics.DLQ]


def test_a_resume_of_an_unknown_job_is_answered_and_leaves_no_state() -> None:
    state = DictState()
    outs = materialize_step(enc(ATTACH), JOB, state, "m")
    assert [(o.topic, o.key) for o in outs] == [(topics.DELIVERIES, "edge-b")]
    assert ledger.JobState.from_json(outs[0].value or b"").status == "unknown"
    assert state.data == {}


def _replies(outs: list[Any]) -> list[tuple[str, dict[str, Any]]]:
    found = []
    for o in outs:
        if o.topic == topics.DELIVERIES:
            data = orjson.loads(o.value)
            if "reply_to" in data:
                found.append((o.key, data))
    return found


KEYED = ledger.JobSubmitted(job_id=JOB, event_id="s/1", at=1.0, source="edge-a", url="http://x/",
                       idempotency_digest="d")


def test_a_keyed_submit_is_answered_and_its_repeat_from_another_pod_attaches_that_pod() -> None:
    state = DictState()
    first = _replies(materialize_step(enc(KEYED), JOB, state, "state"))
    assert first == [("edge-a", {**first[0][1], "reply_to": "s/1", "status": "submitted"})]
    again = ledger.JobSubmitted(job_id=JOB, event_id="s/2", at=2.0, source="edge-b", url="http://other/",
                           idempotency_digest="d")
    outs = materialize_step(enc(again), JOB, state, "state")
    (pod, reply), = _replies(outs)
    assert pod == "edge-b" and reply["reply_to"] == "s/2"
    assert reply["submitted_url"] == "http://x/"  # the first request stands; the edge sees the conflict
    assert reply["pods"] == ["edge-a", "edge-b"]
    # the same submit replayed (same event id) is answered again and changes nothing
    (_, replay), = _replies(materialize_step(enc(again), JOB, state, "state"))
    assert replay["events"] == reply["events"]


def test_an_unkeyed_submit_gets_no_reply() -> None:
    assert _replies(materialize_step(enc(SUBMIT), JOB, DictState(), "state")) == []


def test_a_cancel_is_answered_with_the_state_it_leaves() -> None:
    state = DictState()
    materialize_step(enc(SUBMIT), JOB, state, "state")
    cancel = ledger.JobCancelled(job_id=JOB, event_id="c1", at=2.0, source="edge-b")
    outs = materialize_step(enc(cancel), JOB, state, "state")
    (pod, reply), = _replies(outs)
    assert (pod, reply["status"], reply["reply_to"]) == ("edge-b", "cancelled", "c1")
    # the job turned terminal: its client's pod gets the result too
    assert any(o.topic == topics.DELIVERIES and o.key == "edge-a" for o in outs)


def test_a_cancel_of_a_finished_job_is_answered_and_changes_nothing() -> None:
    state = DictState()
    materialize_step(enc(SUBMIT), JOB, state, "state")
    materialize_step(enc(OK), JOB, state, "state")
    stored = dict(state.data["job"])
    cancel = ledger.JobCancelled(job_id=JOB, event_id="c1", at=3.0, source="edge-b")
    outs = materialize_step(enc(cancel), JOB, state, "state")
    assert [(o.topic, o.key) for o in outs if o.topic == topics.DELIVERIES] == [(topics.DELIVERIES, "edge-b")]
    assert _replies(outs)[0][1]["status"] == "succeeded"
    after = state.data["job"]
    assert {k: v for k, v in after.items() if k not in ("seen", "events")} == {
        k: v for k, v in stored.items() if k not in ("seen", "events")}  # only recorded as seen


def test_a_cancel_of_an_unknown_job_is_answered_unknown_and_leaves_no_state() -> None:
    state = DictState()
    cancel = ledger.JobCancelled(job_id=JOB, event_id="c1", at=3.0, source="edge-b")
    (pod, reply), = _replies(materialize_step(enc(cancel), JOB, state, "state"))
    assert (pod, reply["status"]) == ("edge-b", "unknown")
    assert state.data == {}
