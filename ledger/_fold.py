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
from typing import Any, TypedDict, assert_never

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
    state = _state_for(state, event)
    if event.event_id in state.seen:
        return state
    changes = _changes(state, event)
    return dataclasses.replace(state, **_bookkeeping(state, event, changes), **changes)


class _Changes(TypedDict, total=False):
    """The fields of :class:`JobState` one event sets, apart from the bookkeeping every new event
    gets (:class:`_Bookkeeping`). Typed, so mypy checks each transition's keys and values against
    ``JobState`` where they go into ``dataclasses.replace``."""

    status: Status
    url: str
    submitted_url: str
    owner: str | None
    headers: dict[str, str]
    timeout_s: float | None
    proxy: str | None
    sealed: str | None
    formats: tuple[str, ...]
    origin_pod: str
    submitted_at: float | None
    finished_at: float | None
    attempts: int
    attempt_base: int
    error: JobError | None
    result: JobResult | None
    pods: tuple[str, ...]
    delivered_to: tuple[str, ...]
    redrives: int


class _Bookkeeping(TypedDict, total=False):
    """What :func:`fold` sets for every event it has not seen (``updated_at`` not always)."""

    seen: tuple[str, ...]
    events: int
    updated_at: float


AnyTime = ClientAttached | ResultDelivered | JobSubmitted | JobExpired | JobRedriven
"""Events that apply whatever the job's status: attaches, deliveries, (re)submits, expiry, redrives."""

Progress = (
    JobCancelled | JobValidated | JobRejected | AttemptFailed | RetryScheduled | ScrapeSucceeded
    | JobFailed | JobDeadLettered
)
"""Events that move a job along its way; a terminal job takes none of them (terminal is sticky).
Any other event (``AttemptStarted``, ``ProcessingFailed``) is only recorded as seen."""


def _state_for(state: JobState | None, event: Event) -> JobState:
    """The state ``event`` applies to: a new job's, or ``state`` when it is this event's job."""
    if state is None:
        return JobState(job_id=event.job_id)
    if state.job_id != event.job_id:
        raise InvalidTransitionError(
            f"event {event.event_id} of job {event.job_id} applied to job {state.job_id}"
        )
    return state


def _bookkeeping(state: JobState, event: Event, changes: _Changes) -> _Bookkeeping:
    """What every new event changes: it is seen (so a redelivery changes nothing) and counted,
    and it moves ``updated_at``, except a cancel that changed nothing (it did not update the
    job either)."""
    done: _Bookkeeping = {"seen": (*state.seen, event.event_id), "events": state.events + 1}
    if changes or not isinstance(event, JobCancelled):
        done["updated_at"] = event.at if state.updated_at is None else max(state.updated_at, event.at)
    return done


def _changes(state: JobState, event: Event) -> _Changes:
    """The fields ``event`` sets; none when it changes nothing but being seen."""
    if isinstance(event, AnyTime):
        return _any_time(state, event)
    if state.terminal:
        return {}  # terminal is sticky: a finished job takes no progress
    if isinstance(event, Progress):
        return _progress(state, event)
    return {}  # AttemptStarted, ProcessingFailed: only recorded as seen


def _any_time(state: JobState, event: AnyTime) -> _Changes:
    """An event that applies whatever the status, terminal or not (each decides for itself)."""
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
            return _first_submit(state, event)
        case JobExpired():
            if state.status == "expired":
                return {}
            gone = JobError(code="expired", message="the result left the replay window")
            return {**_ended(event, "expired", gone), "result": None, "headers": {}, "sealed": None}
        case JobRedriven():
            if state.status not in REDRIVABLE:
                return {}
            return {"status": "redriven", "attempt_base": event.base, "redrives": state.redrives + 1,
                    "error": None, "finished_at": None}
        case _:
            assert_never(event)


def _first_submit(state: JobState, event: JobSubmitted) -> _Changes:
    """The job's request, as the first submit asked for it; its pod first among the waiting."""
    changes: _Changes = {
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


def _progress(state: JobState, event: Progress) -> _Changes:
    """A step of a job not finished yet (the caller has checked that it is not)."""
    attempts = max(state.attempts, event.attempt)
    match event:
        case JobCancelled() if state.submitted_at is None:
            # an id nobody submitted yet (a keyed job's id is known before its submit)
            return {}
        case JobCancelled(reason=reason):
            message = f"cancelled: {reason}" if reason else "cancelled by the client"
            return _ended(event, "cancelled", JobError(code="cancelled", message=message))
        case JobValidated():
            if state.status in ("unknown", "submitted"):
                return {"status": "validated", "url": event.url, "formats": event.formats}
            return {}
        case JobRejected(code=code, message=message):
            return _ended(event, "rejected", JobError(code=code, message=message))
        case AttemptFailed(code=code, message=message):
            return {"attempts": attempts, "error": JobError(code=code, message=message)}
        case RetryScheduled():
            return {"status": "retrying", "attempt_base": event.base}
        case ScrapeSucceeded():
            return {**_ended(event, "succeeded", None), "attempts": attempts, "result": _result_of(event)}
        case JobFailed(code=code, message=message):
            return {**_ended(event, "failed", JobError(code=code, message=message)), "attempts": attempts}
        case JobDeadLettered(code=code, message=message):
            error = JobError(code=code, message=message)
            return {**_ended(event, "dead_lettered", error), "attempts": attempts}
        case _:
            assert_never(event)


def _ended(event: Event, status: Status, error: JobError | None) -> _Changes:
    """The job ends here, with ``status`` and ``error``."""
    return {"status": status, "finished_at": event.at, "error": error}


def _result_of(event: ScrapeSucceeded) -> JobResult:
    return JobResult(
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
