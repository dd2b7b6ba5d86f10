"""The WebSocket wire protocol: parsing client frames and building edge frames.

Contract (ARCHITECTURE.md): client -> edge ``{"event":"job","message":"<url>"}`` (the original
clients' form) or ``"message": {"url":..., "headers":{...}, "timeout_s":..., "proxy":...,
"formats": [...], "idempotency_key":...}`` with an optional ``"ref"`` echoed back,
``{"event":"resume","job_id":"<id>"}`` and ``{"event":"cancel","job_id":"<id>"}``. The HTTP API
parses its job objects with the same :func:`parse_job`. Every problem with a frame becomes a
:class:`ProtocolError` whose code and message go back to the client in an ``error`` frame; the
connection stays open.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import orjson

import ledger
from scrapeledger.errors import ProtocolError

MAX_URL_CHARS = 8192
MAX_FORMATS = 16
MAX_IDEMPOTENCY_KEY_CHARS = 255
_KEY_CHARS = re.compile(r"[\x21-\x7e]+")


@dataclass(frozen=True, slots=True)
class JobRequest:
    url: str
    headers: dict[str, str] = field(default_factory=dict)
    timeout_s: float | None = None
    proxy: str | None = None
    ref: Any = None
    formats: tuple[str, ...] = ledger.DEFAULT_FORMATS
    idempotency_key: str | None = None


@dataclass(frozen=True, slots=True)
class ResumeRequest:
    job_id: str
    ref: Any = None


@dataclass(frozen=True, slots=True)
class CancelRequest:
    job_id: str
    ref: Any = None


Request = JobRequest | ResumeRequest | CancelRequest


def parse_frame(raw: str | bytes, *, max_bytes: int) -> Request:
    """Parse one client frame or raise :class:`ProtocolError`."""
    if len(raw) > max_bytes:
        raise ProtocolError("frame_too_large", f"frames are limited to {max_bytes} bytes")
    try:
        frame = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise ProtocolError("bad_json", "a frame is one JSON object") from None
    if not isinstance(frame, dict):
        raise ProtocolError("bad_frame", "a frame is one JSON object")
    ref = frame.get("ref")
    if ref is not None and not isinstance(ref, str | int | float):
        raise ProtocolError("bad_frame", "'ref' must be a string or a number")
    try:
        return _request(frame, ref)
    except ProtocolError as exc:
        exc.ref = ref
        raise


def _request(frame: dict[str, Any], ref: str | float | None) -> Request:
    event = frame.get("event")
    if event == "job":
        return parse_job(frame.get("message"), ref)
    if event in ("resume", "cancel"):
        job_id = frame.get("job_id")
        if not ledger.is_valid_job_id(job_id):
            raise ProtocolError("invalid_job_id", "'job_id' is not a job id")
        assert isinstance(job_id, str)
        if event == "cancel":
            return CancelRequest(job_id=job_id, ref=ref)
        return ResumeRequest(job_id=job_id, ref=ref)
    raise ProtocolError("unknown_event", "'event' must be 'job', 'resume' or 'cancel'")


JOB_FIELDS = frozenset({"url", "headers", "timeout_s", "proxy", "formats", "idempotency_key"})


def check_idempotency_key(value: Any) -> str:
    """A client's idempotency key: 1-255 visible ASCII characters (it is also an HTTP header)."""
    if (
        not isinstance(value, str)
        or not 0 < len(value) <= MAX_IDEMPOTENCY_KEY_CHARS
        or not _KEY_CHARS.fullmatch(value)
    ):
        raise ProtocolError(
            "invalid_idempotency_key",
            f"an idempotency key is 1-{MAX_IDEMPOTENCY_KEY_CHARS} visible ASCII characters",
        )
    return value


def parse_job(message: Any, ref: Any = None, *, extra: frozenset[str] = frozenset()) -> JobRequest:
    """A job request from a URL string or a job object; ``extra`` names more fields the caller
    reads itself (the HTTP API's ``ref``). Raises :class:`ProtocolError` (``bad_frame``, ...)."""
    if isinstance(message, str):
        return JobRequest(url=_url(message), ref=ref)
    if not isinstance(message, dict):
        raise ProtocolError("bad_frame", "'message' must be a URL or an object with a 'url'")
    unknown = set(message) - JOB_FIELDS - extra
    if unknown:
        raise ProtocolError("bad_frame", f"unknown 'message' fields: {', '.join(sorted(unknown))}")
    headers = message.get("headers")
    if headers is None:
        headers = {}
    if not isinstance(headers, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
    ):
        raise ProtocolError("bad_frame", "'headers' must map strings to strings")
    timeout_s = message.get("timeout_s")
    if timeout_s is not None and (
        isinstance(timeout_s, bool) or not isinstance(timeout_s, int | float)
    ):
        raise ProtocolError("bad_frame", "'timeout_s' must be a number")
    proxy = message.get("proxy")
    if proxy is not None and not isinstance(proxy, str):
        raise ProtocolError("bad_frame", "'proxy' must be a URL string")
    key = message.get("idempotency_key")
    return JobRequest(
        url=_url(message.get("url")),
        headers=headers,
        timeout_s=float(timeout_s) if timeout_s is not None else None,
        proxy=proxy,
        ref=ref,
        formats=_formats(message.get("formats")),
        idempotency_key=None if key is None else check_idempotency_key(key),
    )


def _formats(value: Any) -> tuple[str, ...]:
    """The shape only; which names exist is the validator's call (``invalid_options``), so the
    ledger records what was asked and why it was refused."""
    if value is None:
        return ledger.DEFAULT_FORMATS
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(f, str) for f in value):
        raise ProtocolError("bad_frame", "'formats' must be a list of format names")
    if len(value) > MAX_FORMATS:
        raise ProtocolError("bad_frame", f"'formats' names at most {MAX_FORMATS} formats")
    return tuple(value)


_VISIBLE = re.compile(r"[!-~]")


def _url(value: Any) -> str:
    if not isinstance(value, str) or not _VISIBLE.search(value):
        raise ProtocolError("bad_frame", "'url' must be a non-empty string")
    if len(value) > MAX_URL_CHARS:
        raise ProtocolError("bad_frame", f"'url' is longer than {MAX_URL_CHARS} characters")
    return value.strip()


# --- edge -> client ----------------------------------------------------------------------------


def accepted_frame(job_id: str, ref: Any) -> bytes:
    return orjson.dumps({"event": "accepted", "job_id": job_id, "ref": ref})


def error_frame(code: str, message: str, ref: Any = None, *, retry_after: float | None = None) -> bytes:
    """An ``error`` frame; ``retry_after`` (seconds) tells a rate-limited client when to retry."""
    frame: dict[str, Any] = {"event": "error", "code": code, "message": message}
    if ref is not None:
        frame["ref"] = ref
    if retry_after is not None:
        frame["retry_after"] = round(retry_after, 3)
    return orjson.dumps(frame)


def cancelled_frame(job_id: str, ref: Any = None) -> bytes:
    return orjson.dumps({"event": "cancelled", "job_id": job_id, "ref": ref})


def unknown_job_frame(job_id: str, ref: Any = None) -> bytes:
    return orjson.dumps({"event": "unknown_job", "job_id": job_id, "ref": ref})


def result_fields(state: ledger.JobState, body: str | None) -> dict[str, Any]:
    """A terminal job's result as a JSON object: what the ``result`` frame carries (less
    ``event`` and ``ref``), for every front end that returns results.

    ``body`` is the job's stored body, already fetched by reference; for a job that asked for
    formats it is the outputs document, spread here into one field per format (``html``,
    ``markdown``, ``text``, ``links``, ``metadata``). A job whose formats leave out ``html``
    gets no ``html`` field."""
    fields: dict[str, Any] = {
        "job_id": state.job_id,
        "status": state.status,
        "url": state.url,
        "attempts": state.attempts,
    }
    result = state.result
    if state.status == "succeeded" and result is not None:
        fields.update(
            final_url=result.final_url,
            http_status=result.http_status,
            headers=result.headers,
            elapsed_ms=result.elapsed_ms,
            truncated=result.truncated,
        )
        fields.update(ledger.decode_outputs(result.formats, body))
    else:
        error = state.error
        fields["error"] = (
            {"code": error.code, "message": error.message}
            if error is not None
            else {"code": state.status, "message": f"job {state.status}"}
        )
    return fields


def result_frame(state: ledger.JobState, body: str | None, ref: Any = None) -> bytes:
    """The ``result`` frame for a terminal job state (``body`` already fetched by reference)."""
    frame: dict[str, Any] = {"event": "result"}
    if ref is not None:
        frame["ref"] = ref
    frame.update(result_fields(state, body))
    return orjson.dumps(frame)
