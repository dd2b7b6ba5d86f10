"""Job state as a pure fold of ledger events.

``fold(state, event)`` has no I/O and reads no clock: the same events always give the same state.
It is what the state materializer runs per record, what ``replay rebuild`` runs over the whole
ledger, and what the Hypothesis tests pin down:

* **Idempotent.** An event whose ``event_id`` the state has already seen changes nothing, so
  at-least-once redelivery and replays are harmless.
* **First outcome wins.** Every outcome of fetch attempt *n* shares one event id
  (:func:`outcome_id`), so a replayed attempt cannot overwrite the one recorded first.
* **Terminal is sticky.** After ``succeeded`` / ``rejected`` / ``failed`` / ``dead_lettered`` /
  ``cancelled`` only attaches, deliveries, a redrive (of failed or dead-lettered jobs) or expiry
  change anything; a cancel of a finished job (or of one not submitted) is only recorded as
  seen. (Skipping it entirely would break idempotence: after a redrive the replayed cancel
  would apply.)
* **The first submit wins.** A job whose id comes from an idempotency key may be submitted again
  (a client that lost the answer, on any pod); a later ``JobSubmitted`` only attaches its pod.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from ._errors import InvalidTransitionError, MalformedEventError
from ._events import (
    DEFAULT_FORMATS,
    REDRIVABLE,
    TERMINAL,
    AttemptFailed,
    ClientAttached,
    Event,
    JobCancelled,
    JobDeadLettered,
    JobExpired,
    JobFailed,
    JobRedriven,
    JobRejected,
    JobSubmitted,
    JobValidated,
    ResultDelivered,
    RetryScheduled,
    ScrapeSucceeded,
    Status,
)

STATE_VERSION = 3  # 2: ``sealed`` (the request's credentials, sealed); 3: ``owner``, ``submitted_url``


@dataclass(frozen=True, slots=True, kw_only=True)
class JobError:
    code: str
    message: str


@dataclass(frozen=True, slots=True, kw_only=True)
class JobResult:
    """Metadata of a fetched page; the body is referenced, not held."""

    final_url: str
    http_status: int
    headers: dict[str, str]
    elapsed_ms: float
    body_bytes: int
    truncated: bool
    body_partition: int | None
    body_offset: int | None
    body: str | None
    formats: tuple[str, ...] = DEFAULT_FORMATS
    """What the stored body holds (see ``ScrapeSucceeded``); absent from old state records."""


@dataclass(frozen=True, slots=True, kw_only=True)
class JobState:
    """Everything known about one job, derived from its events only."""

    job_id: str
    status: Status = "unknown"
    url: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    timeout_s: float | None = None
    proxy: str | None = None
    sealed: str | None = None
    formats: tuple[str, ...] = DEFAULT_FORMATS
    origin_pod: str = ""
    owner: str | None = None
    submitted_url: str = ""
    """The URL as the first submit asked for it (``url`` becomes the validator's normal form):
    a resubmit with the same idempotency key and another URL is refused against this."""
    submitted_at: float | None = None
    updated_at: float | None = None
    finished_at: float | None = None
    attempts: int = 0
    attempt_base: int = 0
    error: JobError | None = None
    result: JobResult | None = None
    pods: tuple[str, ...] = ()
    delivered_to: tuple[str, ...] = ()
    redrives: int = 0
    seen: tuple[str, ...] = ()
    events: int = 0

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL

    # --- serialization for the compacted job-state topic ------------------------------------

    def to_dict(self) -> dict[str, Any]:
        # by hand: dataclasses.asdict deep-copies recursively and was the materializer's
        # single largest cost per event
        data = {name: getattr(self, name) for name in _STATE_FIELDS}
        if self.formats == DEFAULT_FORMATS:
            del data["formats"]  # as before formats existed: readers not yet upgraded read it
        if self.error is not None:
            data["error"] = {"code": self.error.code, "message": self.error.message}
        if self.result is not None:
            r = self.result
            data["result"] = result = {name: getattr(r, name) for name in _RESULT_FIELDS}
            if r.formats == DEFAULT_FORMATS:
                del result["formats"]
        data["v"] = STATE_VERSION
        return data

    def to_json(self) -> bytes:
        return orjson.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> JobState:
        try:
            data = dict(data)
            data.pop("v", None)
            err = data.get("error")
            res = data.get("result")
            data["error"] = JobError(**err) if err else None
            if res and "formats" in res:
                res = {**res, "formats": tuple(res["formats"])}
            data["result"] = JobResult(**res) if res else None
            if "formats" in data:
                data["formats"] = tuple(data["formats"])
            data["pods"] = tuple(data.get("pods", ()))
            data["delivered_to"] = tuple(data.get("delivered_to", ()))
            data["seen"] = tuple(data.get("seen", ()))
            return cls(**data)
        except (TypeError, ValueError) as exc:
            raise MalformedEventError(f"bad job state record: {exc}") from None

    @classmethod
    def from_json(cls, raw: bytes | str) -> JobState:
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise MalformedEventError(f"bad job state record: {exc}") from None
        if not isinstance(data, dict):
            raise MalformedEventError("bad job state record: not an object")
        return cls.from_dict(data)


_STATE_FIELDS = tuple(f.name for f in dataclasses.fields(JobState))
_RESULT_FIELDS = tuple(f.name for f in dataclasses.fields(JobResult))


def _add(items: tuple[str, ...], item: str) -> tuple[str, ...]:
    return items if item in items else (*items, item)


def fold(state: JobState | None, event: Event) -> JobState:
    """Apply one event to a job's state. Pure; never raises for a well-typed event of this job."""
    if state is None:
        state = JobState(job_id=event.job_id)
    elif state.job_id != event.job_id:
        raise InvalidTransitionError(
            f"event {event.event_id} of job {event.job_id} applied to job {state.job_id}"
        )
    if event.event_id in state.seen:
        return state
    common: dict[str, Any] = {
        "seen": (*state.seen, event.event_id),
        "events": state.events + 1,
        "updated_at": event.at if state.updated_at is None else max(state.updated_at, event.at),
    }
    changes = _transition(state, event)
    if not changes and isinstance(event, JobCancelled):
        del common["updated_at"]  # a cancel that changed nothing did not update the job either
    return dataclasses.replace(state, **common, **changes)


def _finish(event: Event, status: Status, **more: Any) -> dict[str, Any]:
    return {"status": status, "finished_at": event.at, **more}


def _transition(state: JobState, event: Event) -> dict[str, Any]:
    match event:
        case ClientAttached(pod=pod):
            return {"pods": _add(state.pods, pod)}
        case ResultDelivered(pod=pod):
            return {"delivered_to": _add(state.delivered_to, pod)}
        case JobSubmitted() if state.submitted_at is not None:
            # a repeated submit of a keyed job: whatever it asks, only its pod counts (the
            # client there waits for the result)
            return {"pods": _add(state.pods, event.source)}
        case JobSubmitted():
            changes: dict[str, Any] = {
                "url": event.url,
                "submitted_url": event.url,
                "owner": event.owner,
                "headers": dict(event.headers),
                "timeout_s": event.timeout_s,
                "proxy": event.proxy,
                "sealed": event.sealed,
                "formats": event.formats,
                "origin_pod": event.source,
                "submitted_at": event.at,
                "pods": (event.source, *(p for p in state.pods if p != event.source)),
            }
            if state.status == "unknown":
                changes["status"] = "submitted"
            return changes
        case JobExpired():
            if state.status == "expired":
                return {}
            return _finish(
                event, "expired", result=None, headers={}, sealed=None,
                error=JobError(code="expired", message="the result left the replay window"),
            )
        case JobRedriven():
            if state.status not in REDRIVABLE:
                return {}
            return {
                "status": "redriven",
                "attempt_base": event.base,
                "redrives": state.redrives + 1,
                "error": None,
                "finished_at": None,
            }
    if state.terminal:
        return {}
    attempts = max(state.attempts, event.attempt)
    match event:
        case JobCancelled() if state.submitted_at is None:
            # an id nobody submitted yet (a keyed job's id is known before its submit)
            return {}
        case JobCancelled(reason=reason):
            message = f"cancelled: {reason}" if reason else "cancelled by the client"
            return _finish(event, "cancelled", error=JobError(code="cancelled", message=message))
        case JobValidated():
            if state.status in ("unknown", "submitted"):
                return {"status": "validated", "url": event.url, "formats": event.formats}
            return {}
        case JobRejected(code=code, message=message):
            return _finish(event, "rejected", error=JobError(code=code, message=message))
        case AttemptFailed(code=code, message=message):
            return {"attempts": attempts, "error": JobError(code=code, message=message)}
        case RetryScheduled():
            return {"status": "retrying", "attempt_base": event.base}
        case ScrapeSucceeded():
            result = JobResult(
                final_url=event.final_url,
                http_status=event.http_status,
                headers=dict(event.headers),
                elapsed_ms=event.elapsed_ms,
                body_bytes=event.body_bytes,
                truncated=event.truncated,
                body_partition=event.body_partition,
                body_offset=event.body_offset,
                body=event.body,
                formats=event.formats,
            )
            return _finish(event, "succeeded", attempts=attempts, result=result, error=None)
        case JobFailed(code=code, message=message):
            return _finish(
                event, "failed", attempts=attempts, error=JobError(code=code, message=message)
            )
        case JobDeadLettered(code=code, message=message):
            return _finish(
                event,
                "dead_lettered",
                attempts=attempts,
                error=JobError(code=code, message=message),
            )
    return {}


def fold_all(events: Iterable[Event], states: dict[str, JobState] | None = None) -> dict[str, JobState]:
    """Fold a stream of events of many jobs into a ``job_id -> JobState`` map."""
    states = {} if states is None else states
    for event in events:
        states[event.job_id] = fold(states.get(event.job_id), event)
    return states


def deliveries_due(before: JobState | None, after: JobState, event: Event) -> tuple[str, ...]:
    """Pods that must be sent this job's result because of ``event``.

    When the job turns terminal, every pod holding a client gets it; when a client attaches to
    a job that is already terminal, that pod gets it. Together these cover both orders of
    "attach" and "finish", so no interleaving loses a result. When a finished job expires, its
    pods are told too: an edge answers repeated resumes from the last answer it was routed
    (``EDGE_ATTACH_WINDOW_S``), which must not outlive the result.
    """
    if after is before or not after.terminal:
        return ()
    was_terminal = before is not None and before.terminal
    if not was_terminal:
        return after.pods
    if isinstance(event, ClientAttached):
        return (event.pod,)
    if isinstance(event, JobExpired) and before is not None and before.status != "expired":
        return after.pods
    return ()
