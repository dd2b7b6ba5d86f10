"""Parsing client frames: every bad frame is a typed error with a code for the client."""

from __future__ import annotations

import orjson
import pytest

import ledger
from scrapeledger.errors import ProtocolError
from ws_edge import JobRequest, ResumeRequest, parse_frame, result_frame


def parse(frame: object) -> JobRequest | ResumeRequest:
    return parse_frame(orjson.dumps(frame), max_bytes=65536)


def test_the_old_clients_frame() -> None:
    assert parse({"event": "job", "message": "https://example.org/"}) == JobRequest(
        url="https://example.org/"
    )


def test_the_object_form_with_ref() -> None:
    req = parse({"event": "job", "ref": 7, "message": {
        "url": "https://a.example/", "headers": {"x": "y"}, "timeout_s": 3, "proxy": "http://p:1"}})
    assert req == JobRequest(url="https://a.example/", headers={"x": "y"}, timeout_s=3.0,
                             proxy="http://p:1", ref=7)


def test_resume() -> None:
    job = ledger.new_job_id()
    assert parse({"event": "resume", "job_id": job}) == ResumeRequest(job_id=job)


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        (b"not json", "bad_json"),
        (b"[1,2]", "bad_frame"),
        (b'{"event":"dance"}', "unknown_event"),
        (b'{"event":"job"}', "bad_frame"),
        (b'{"event":"job","message":""}', "bad_frame"),
        (b'{"event":"job","message":{"url":"http://x","headers":{"a":1}}}', "bad_frame"),
        (b'{"event":"job","message":{"url":"http://x","timeout_s":"3"}}', "bad_frame"),
        (b'{"event":"job","message":{"url":"http://x","extra":1}}', "bad_frame"),
        (b'{"event":"job","message":"http://x","ref":{"a":1}}', "bad_frame"),
        (b'{"event":"resume","job_id":"../etc"}', "invalid_job_id"),
        (b'{"event":"job","message":"http://x/' + b"a" * 70000 + b'"}', "frame_too_large"),
    ],
)
def test_bad_frames(raw: bytes, code: str) -> None:
    with pytest.raises(ProtocolError) as info:
        parse_frame(raw, max_bytes=65536)
    assert info.value.code == code


def test_result_frames() -> None:
    ok = ledger.JobState(job_id="j" * 22, status="succeeded", url="http://x/", attempts=1,
                    result=ledger.JobResult(final_url="http://x/y", http_status=200, headers={"a": "b"},
                                       elapsed_ms=3.0, body_bytes=4, truncated=False,
                                       body_partition=0, body_offset=1, body=None))
    frame = orjson.loads(result_frame(ok, "<p>", ref="r"))
    assert frame == {"event": "result", "job_id": "j" * 22, "status": "succeeded", "url": "http://x/",
                     "attempts": 1, "ref": "r", "final_url": "http://x/y", "http_status": 200,
                     "headers": {"a": "b"}, "html": "<p>", "elapsed_ms": 3.0, "truncated": False}
    bad = ledger.JobState(job_id="j" * 22, status="rejected", error=ledger.JobError(code="c", message="m"))
    assert orjson.loads(result_frame(bad, None))["error"] == {"code": "c", "message": "m"}


@pytest.mark.parametrize(
    "frame",
    [
        {"event": "job", "message": "", "ref": "c1"},
        {"event": "job", "message": {"url": "x", "bogus": 1}, "ref": "c1"},
        {"event": "resume", "job_id": "doesnotexist123", "ref": "c1"},
        {"event": "dance", "ref": "c1"},
    ],
)
def test_an_error_for_a_frame_with_a_ref_carries_the_ref(frame: dict[str, object]) -> None:
    # the client matches replies by ref: an error without it left `submit ""` waiting forever
    with pytest.raises(ProtocolError) as info:
        parse(frame)
    assert info.value.ref == "c1"


def test_formats_travel_as_asked_and_default_to_html() -> None:
    req = parse({"event": "job", "message": {"url": "https://a.example/", "formats": ["markdown", "nope"]}})
    assert isinstance(req, JobRequest) and req.formats == ("markdown", "nope")  # the validator judges
    one = parse({"event": "job", "message": {"url": "https://a.example/", "formats": "links"}})
    assert isinstance(one, JobRequest) and one.formats == ("links",)
    plain = parse({"event": "job", "message": "https://a.example/"})
    assert isinstance(plain, JobRequest) and plain.formats == ("html",)


@pytest.mark.parametrize("formats", [{"a": 1}, [1, 2], ["html", None], 3, ["x"] * 17])
def test_formats_of_the_wrong_shape_are_a_bad_frame(formats: object) -> None:
    with pytest.raises(ProtocolError) as info:
        parse({"event": "job", "message": {"url": "https://a.example/", "formats": formats}})
    assert info.value.code == "bad_frame"


def test_a_result_with_formats_has_a_field_each_and_no_html_unless_asked() -> None:
    result = ledger.JobResult(final_url="http://x/y", http_status=200, headers={}, elapsed_ms=3.0,
                         body_bytes=4, truncated=False, body_partition=0, body_offset=1, body=None,
                         formats=("markdown", "links", "metadata"))
    ok = ledger.JobState(job_id="j" * 22, status="succeeded", url="http://x/", attempts=1, result=result)
    doc = {"markdown": "# T", "links": ["http://x/a"], "metadata": {"title": "T", "status": 200}}
    frame = orjson.loads(result_frame(ok, orjson.dumps(doc).decode()))
    assert "html" not in frame
    assert {k: frame[k] for k in doc} == doc
    assert frame["status"] == "succeeded" and frame["final_url"] == "http://x/y"
    # a body that left the replay window: every asked field is there, empty
    gone = orjson.loads(result_frame(ok, None))
    assert (gone["markdown"], gone["links"], gone["metadata"]) == ("", [], {})
