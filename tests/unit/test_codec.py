"""The strict decoder: malformed, unknown and future events become typed errors, never crashes."""

from __future__ import annotations

import contextlib
import dataclasses

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

import ledger
from scrapeledger.errors import (
    EventError,
    MalformedEventError,
    ScrapeledgerError,
    UnknownEventTypeError,
    UnsupportedVersionError,
)

from .strategies import events_of


@given(events_of())
def test_every_event_round_trips(event: ledger.Event) -> None:
    assert ledger.decode_event(ledger.encode_event(event)) == event


@given(st.binary(max_size=200))
def test_arbitrary_bytes_never_crash_the_decoder(raw: bytes) -> None:
    with contextlib.suppress(EventError):
        ledger.decode_event(raw)


@given(events_of(), st.data())
def test_a_field_of_the_wrong_type_is_a_malformed_event(event: ledger.Event, data: st.DataObject) -> None:
    wire = ledger.event_to_dict(event)
    where = data.draw(st.sampled_from(["envelope", "payload"]))
    if where == "envelope" or not wire["payload"]:
        key = data.draw(st.sampled_from(["job_id", "event_id", "at", "source", "attempt"]))
        wire[key] = [1, 2]
    else:
        key = data.draw(st.sampled_from(sorted(wire["payload"])))
        wire["payload"][key] = [1, 2]
    with pytest.raises(MalformedEventError):
        ledger.decode_event(orjson.dumps(wire))


@given(events_of(), st.integers(min_value=1, max_value=1000) | st.integers(min_value=-1000, max_value=0))
def test_an_unknown_version_is_refused(event: ledger.Event, version: int) -> None:
    wire = ledger.event_to_dict(event)
    wire["v"] = event.VERSION + version if version > 0 else version
    with pytest.raises(UnsupportedVersionError):
        ledger.decode_event(orjson.dumps(wire))


def test_an_unknown_type_is_refused() -> None:
    wire = {"type": "JobTeleported", "v": 1, "payload": {}}
    with pytest.raises(UnknownEventTypeError):
        ledger.decode_event(orjson.dumps(wire))


@pytest.mark.parametrize(
    "raw",
    [b"", b"null", b"[]", b"{}", b'{"type": 3}', b'{"type":"JobSubmitted"}',
     b'{"type":"JobSubmitted","v":1,"payload":{}}', b"\xff\xfe", None],
)
def test_malformed_records_are_typed_errors(raw: bytes | None) -> None:
    with pytest.raises(MalformedEventError):
        ledger.decode_event(raw)


def test_event_errors_belong_to_the_one_hierarchy() -> None:
    assert issubclass(EventError, ScrapeledgerError)


def test_an_upcaster_reads_an_old_version(monkeypatch: pytest.MonkeyPatch) -> None:
    """The first schema change bumps VERSION and registers an upcaster; old records stay readable."""
    monkeypatch.setattr(ledger.JobRejected, "VERSION", 2)
    monkeypatch.setitem(
        ledger.UPCASTERS, ("JobRejected", 1), lambda p: {**p, "message": p["message"].upper()}
    )
    old = {"type": "JobRejected", "v": 1, "event_id": "e", "job_id": "j", "at": 1, "source": "s",
           "payload": {"code": "invalid_url", "message": "bad"}}
    assert ledger.decode_event(orjson.dumps(old)).message == "BAD"  # type: ignore[attr-defined]


def test_a_v1_submit_reads_as_an_unkeyed_submit() -> None:
    v1 = {"type": "JobSubmitted", "v": 1, "event_id": "j/submitted", "job_id": "j", "at": 1,
          "source": "edge-0", "payload": {"url": "http://x/", "headers": {}, "timeout_s": None,
                                           "proxy": None}}
    event = ledger.decode_event(orjson.dumps(v1))
    assert isinstance(event, ledger.JobSubmitted)
    assert (event.owner, event.idempotency_digest, event.url) == (None, None, "http://x/")
    assert ledger.event_to_dict(event)["v"] == 2
    assert "owner" not in ledger.event_to_dict(event)["payload"]  # an ADDED field at its default


@given(events_of())
def test_the_type_prefilter_never_hides_an_event_of_a_wanted_type(event: ledger.Event) -> None:
    raw = ledger.encode_event(event)
    for cls in ledger.EVENT_TYPES.values():
        assert ledger.may_be(raw, (cls,)) == isinstance(event, cls)
    # a non-canonical encoding (spaces) cannot be pre-filtered and must reach the full decode
    spaced = raw.replace(b'"type":"', b'"type": "')
    assert all(ledger.may_be(spaced, (cls,)) for cls in ledger.EVENT_TYPES.values())


# Records as the code before output formats wrote them (no "formats" field), byte for byte.
_OLD_SUBMITTED = (b'{"event_id":"j/submitted","job_id":"j","type":"JobSubmitted","v":1,"at":1.5,'
                  b'"source":"edge-0","attempt":0,"payload":{"url":"https://a.example/","headers":{},'
                  b'"timeout_s":null,"proxy":null}}')
_V2_SUBMITTED = (b'{"event_id":"j/submitted","job_id":"j","type":"JobSubmitted","v":2,"at":1.5,'
                 b'"source":"edge-0","attempt":0,"payload":{"url":"https://a.example/","headers":{},'
                 b'"timeout_s":null,"proxy":null,"sealed":null}}')
"""The same as the code just before output formats writes it (v2 added ``sealed``)."""
_OLD_SUCCEEDED = (b'{"event_id":"j/a1/outcome","job_id":"j","type":"ScrapeSucceeded","v":1,"at":2.0,'
                  b'"source":"scraper-0","attempt":1,"payload":{"url":"https://a.example/",'
                  b'"final_url":"https://a.example/","http_status":200,"headers":{},"elapsed_ms":3.0,'
                  b'"body_bytes":9,"truncated":false,"body_partition":2,"body_offset":7,"body":null}}')


def test_records_from_before_formats_decode_to_the_html_default() -> None:
    submitted = ledger.decode_event(_OLD_SUBMITTED)
    succeeded = ledger.decode_event(_OLD_SUCCEEDED)
    assert isinstance(submitted, ledger.JobSubmitted) and submitted.formats == ("html",)
    v2 = ledger.decode_event(_V2_SUBMITTED)
    assert isinstance(v2, ledger.JobSubmitted) and v2.formats == ("html",)
    assert isinstance(succeeded, ledger.ScrapeSucceeded) and succeeded.formats == ("html",)


def test_an_event_that_uses_no_formats_is_written_exactly_as_before() -> None:
    # processors not yet upgraded refuse unknown fields: the default must not appear on the wire
    assert ledger.encode_event(ledger.decode_event(_V2_SUBMITTED)) == _V2_SUBMITTED
    assert ledger.encode_event(ledger.decode_event(_OLD_SUCCEEDED)) == _OLD_SUCCEEDED


def test_formats_round_trip_as_a_tuple_and_must_be_strings() -> None:
    event = dataclasses.replace(ledger.decode_event(_OLD_SUBMITTED), formats=("markdown", "links"))
    wire = ledger.event_to_dict(event)
    assert wire["payload"]["formats"] == ("markdown", "links")
    assert ledger.decode_event(ledger.encode_event(event)) == event
    wire["payload"]["formats"] = ["html", 3]
    with pytest.raises(MalformedEventError):
        ledger.decode_event(orjson.dumps(wire))
    wire["payload"]["formats"] = "html"
    with pytest.raises(MalformedEventError):
        ledger.decode_event(orjson.dumps(wire))


def test_job_state_records_from_before_formats_still_load() -> None:
    old = {"job_id": "j", "status": "succeeded", "url": "u", "result": {
        "final_url": "u", "http_status": 200, "headers": {}, "elapsed_ms": 1.0, "body_bytes": 1,
        "truncated": False, "body_partition": 0, "body_offset": 1, "body": None}, "v": 1}
    state = ledger.JobState.from_json(orjson.dumps(old))
    assert state.formats == ("html",) and state.result is not None and state.result.formats == ("html",)
    assert "formats" not in state.to_dict() and "formats" not in state.to_dict()["result"]
    asked = dataclasses.replace(state, formats=("text",),
                                result=dataclasses.replace(state.result, formats=("text",)))
    assert ledger.JobState.from_json(asked.to_json()) == asked
