"""The strict decoder: malformed, unknown and future events become typed errors, never crashes."""

from __future__ import annotations

import contextlib

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

import ledger as L
from scrapeledger.errors import (
    EventError,
    MalformedEventError,
    ScrapeledgerError,
    UnknownEventTypeError,
    UnsupportedVersionError,
)

from .strategies import events_of


@given(events_of())
def test_every_event_round_trips(event: L.Event) -> None:
    assert L.decode_event(L.encode_event(event)) == event


@given(st.binary(max_size=200))
def test_arbitrary_bytes_never_crash_the_decoder(raw: bytes) -> None:
    with contextlib.suppress(EventError):
        L.decode_event(raw)


@given(events_of(), st.data())
def test_a_field_of_the_wrong_type_is_a_malformed_event(event: L.Event, data: st.DataObject) -> None:
    wire = L.event_to_dict(event)
    where = data.draw(st.sampled_from(["envelope", "payload"]))
    if where == "envelope" or not wire["payload"]:
        key = data.draw(st.sampled_from(["job_id", "event_id", "at", "source", "attempt"]))
        wire[key] = [1, 2]
    else:
        key = data.draw(st.sampled_from(sorted(wire["payload"])))
        wire["payload"][key] = [1, 2]
    with pytest.raises(MalformedEventError):
        L.decode_event(orjson.dumps(wire))


@given(events_of(), st.integers(min_value=1, max_value=1000) | st.integers(min_value=-1000, max_value=0))
def test_an_unknown_version_is_refused(event: L.Event, version: int) -> None:
    wire = L.event_to_dict(event)
    wire["v"] = event.VERSION + version if version > 0 else version
    with pytest.raises(UnsupportedVersionError):
        L.decode_event(orjson.dumps(wire))


def test_an_unknown_type_is_refused() -> None:
    wire = {"type": "JobTeleported", "v": 1, "payload": {}}
    with pytest.raises(UnknownEventTypeError):
        L.decode_event(orjson.dumps(wire))


@pytest.mark.parametrize(
    "raw",
    [b"", b"null", b"[]", b"{}", b'{"type": 3}', b'{"type":"JobSubmitted"}',
     b'{"type":"JobSubmitted","v":1,"payload":{}}', b"\xff\xfe", None],
)
def test_malformed_records_are_typed_errors(raw: bytes | None) -> None:
    with pytest.raises(MalformedEventError):
        L.decode_event(raw)


def test_event_errors_belong_to_the_one_hierarchy() -> None:
    assert issubclass(EventError, ScrapeledgerError)


def test_an_upcaster_reads_an_old_version(monkeypatch: pytest.MonkeyPatch) -> None:
    """The first schema change bumps VERSION and registers an upcaster; old records stay readable."""
    monkeypatch.setattr(L.JobRejected, "VERSION", 2)
    monkeypatch.setitem(
        L.UPCASTERS, ("JobRejected", 1), lambda p: {**p, "message": p["message"].upper()}
    )
    old = {"type": "JobRejected", "v": 1, "event_id": "e", "job_id": "j", "at": 1, "source": "s",
           "payload": {"code": "invalid_url", "message": "bad"}}
    assert L.decode_event(orjson.dumps(old)).message == "BAD"  # type: ignore[attr-defined]


@given(events_of())
def test_the_type_prefilter_never_hides_an_event_of_a_wanted_type(event: L.Event) -> None:
    raw = L.encode_event(event)
    for cls in L.EVENT_TYPES.values():
        assert L.may_be(raw, (cls,)) == isinstance(event, cls)
    # a non-canonical encoding (spaces) cannot be pre-filtered and must reach the full decode
    spaced = raw.replace(b'"type":"', b'"type": "')
    assert all(L.may_be(spaced, (cls,)) for cls in L.EVENT_TYPES.values())
