"""Domain events: every job transition as a frozen, versioned dataclass.

Events are the source of truth; job state is only ever a fold of them (see ``_fold``). Each event
carries the envelope fields the architecture names (``event_id``, ``job_id``, ``type``, ``at``,
``source``, ``v``, ``attempt``) and a small payload. Page bodies do not ride in events: a
``ScrapeSucceeded`` carries a reference into the bodies topic instead, or the body itself only when
it is at most ``SCRAPELEDGER_INLINE_BODY_BYTES`` long (default 0: only an empty body).

Event ids of events written by processors that may reprocess a record after a crash are derived
from the job and the step (``<job>/validated``, ``<job>/a2/outcome``), so a reprocessed step writes
the *same* id again and the fold drops it as a duplicate, even when the replayed step came out
differently (a fetch that failed before the crash and succeeded after it). Events caused by a
person or a connection (attach, delivery, redrive) get random ids.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, Literal

ErrorCode = str
"""A short machine-readable reason (``invalid_url``, ``timeout``, ``http_404``, ...)."""

Format = Literal["html", "markdown", "text", "links", "metadata"]
"""One output a job may ask for; the result carries a field of the same name for each."""

FORMATS: tuple[Format, ...] = ("html", "markdown", "text", "links", "metadata")
"""Every output format, in the canonical order jobs carry them in."""

DEFAULT_FORMATS: tuple[str, ...] = ("html",)
"""What a job that names no formats gets: the page as text, as before formats existed."""

ADDED: dict[str, bool] = {"added": True}
"""Field metadata for a field added to an existing event version (with a default).

The encoder leaves such a field out while it holds its default, so an event that does not use
the new field is byte for byte what the code before it wrote, and processors not yet upgraded
(whose decoder refuses unknown fields) still read it during a rolling deploy. Old records,
which lack the field, decode to the default."""


def new_job_id() -> str:
    """A URL-safe, unguessable job id: 128 random bits (22 characters, base64url)."""
    return secrets.token_urlsafe(16)


def idempotent_job_id(owner: str | None, key: str) -> str:
    """The job id of idempotency key ``key`` of ``owner`` (None until API keys exist).

    Derived, not stored: every edge pod computes the same id for the same (owner, key) with no
    shared memory, so a resubmit after a lost answer or a dead pod names the same job, and the
    ledger's per-job order decides which submit came first. 128 bits of SHA-256, in the same
    22-character shape as :func:`new_job_id`; as unguessable as the key itself is (the clients
    make random keys), and scoped by owner so one owner's key can never name another's job.
    """
    material = b"scrapeledger/idempotency/v1\0" + (owner or "").encode() + b"\0" + key.encode()
    return base64.urlsafe_b64encode(hashlib.sha256(material).digest()[:16]).rstrip(b"=").decode()


def key_digest(key: str) -> str:
    """What the ledger keeps of an idempotency key: its SHA-256 (the job id already depends on
    the key, so the key itself would let anyone who can read the ledger resubmit as its owner)."""
    return hashlib.sha256(key.encode()).hexdigest()


def new_event_id() -> str:
    """A random event id, for events that are not the replayable output of a processor step."""
    return secrets.token_urlsafe(12)


def now() -> float:
    """Wall-clock time for ``at``: seconds since the epoch. Only producers call it; folds never do."""
    return time.time()


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """The envelope shared by every ledger event."""

    TYPE: ClassVar[str] = "Event"
    VERSION: ClassVar[int] = 1

    job_id: str
    event_id: str
    at: float
    source: str
    attempt: int = 0

    @property
    def type(self) -> str:
        return self.TYPE


@dataclass(frozen=True, slots=True, kw_only=True)
class FetchSpec(Event):
    """Events that carry the whole fetch request, so the scraper needs no other state.

    Credentials never ride in clear (``scrapeledger.vault``): ``headers`` holds the ordinary
    headers, ``proxy`` the proxy without its user info, and ``sealed`` a Fernet token of the
    rest (credential headers, the proxy with its password), or None when there is none.
    Version 2 added ``sealed``; a v1 record reads as ``sealed=None`` (and, written before
    sealing existed, may hold credentials in clear).
    """

    VERSION: ClassVar[int] = 2
    url: str
    headers: dict[str, str] = field(default_factory=dict)
    timeout_s: float | None = None
    proxy: str | None = None
    sealed: str | None = None
    formats: tuple[str, ...] = field(default=DEFAULT_FORMATS, metadata=ADDED)
    """Output formats asked for (validated and put in canonical order by the validator)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class JobSubmitted(FetchSpec):
    """A client asked for a URL. ``source`` is the edge pod that holds the client.

    ``owner`` (who submitted it: None until API keys exist) and ``idempotency_digest`` (the
    SHA-256 of the client's idempotency key, when it sent one) are :data:`ADDED` fields: an
    unkeyed submit is on the wire what it was before them. A keyed job's id is derived
    from (owner, key), so the same key may submit it again: only the first ``JobSubmitted`` of a
    job counts, later ones are attaches (the fold keeps the first request; the validator
    validates only the first).
    """

    TYPE: ClassVar[str] = "JobSubmitted"
    owner: str | None = field(default=None, metadata=ADDED)
    idempotency_digest: str | None = field(default=None, metadata=ADDED)


@dataclass(frozen=True, slots=True, kw_only=True)
class JobValidated(FetchSpec):
    """The URL passed validation; the scraper may fetch it as attempt 1 (``attempt`` = 1)."""

    TYPE: ClassVar[str] = "JobValidated"


@dataclass(frozen=True, slots=True, kw_only=True)
class JobRejected(Event):
    """The URL failed validation. Terminal."""

    TYPE: ClassVar[str] = "JobRejected"
    code: ErrorCode
    message: str


@dataclass(frozen=True, slots=True, kw_only=True)
class AttemptFailed(Event):
    """Fetch attempt ``attempt`` failed. ``retryable`` says whether another attempt may help."""

    TYPE: ClassVar[str] = "AttemptFailed"
    code: ErrorCode
    message: str
    retryable: bool
    http_status: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryScheduled(FetchSpec):
    """Attempt ``attempt`` is due no earlier than ``not_before`` (back-off with jitter).

    ``base`` is the number of attempts spent before the current round (see ``JobRedriven``).
    """

    TYPE: ClassVar[str] = "RetryScheduled"
    not_before: float
    base: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class AttemptStarted(Event):
    """The scraper is about to fetch attempt ``attempt``; written and acknowledged first.

    A fetch that kills the scraper process leaves no outcome, only these. The next scraper reads
    how often an attempt started without an outcome since the group's last commit and runs it
    alone (``solo``) or dead-letters it, so a job that crashes the scraper every time ends after a
    bounded number of process deaths counted in the ledger, not in any process's memory.
    """

    TYPE: ClassVar[str] = "AttemptStarted"
    solo: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class ProcessingFailed(Event):
    """Processor ``processor`` raised on the ledger record at (``partition``, ``offset``).

    ``failures`` counts this record's failures so far; at the limit the processor dead-letters
    the job and skips the record instead of crashing again.
    """

    TYPE: ClassVar[str] = "ProcessingFailed"
    processor: str
    partition: int
    offset: int
    failures: int
    error: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ScrapeSucceeded(Event):
    """Attempt ``attempt`` fetched the page. Terminal.

    The body lives in the bodies topic at (``body_partition``, ``body_offset``), or inline in
    ``body`` when small enough; ``truncated`` marks a body cut at the size limit. ``formats``
    says what that stored body is: for the default (``html`` alone) the page text itself, as
    before formats existed; otherwise the outputs document of :mod:`ledger._outputs` (one JSON
    object with a field per format), computed once by the scraper.
    """

    TYPE: ClassVar[str] = "ScrapeSucceeded"
    url: str
    final_url: str
    http_status: int
    headers: dict[str, str]
    elapsed_ms: float
    body_bytes: int
    truncated: bool = False
    body_partition: int | None = None
    body_offset: int | None = None
    body: str | None = None
    formats: tuple[str, ...] = field(default=DEFAULT_FORMATS, metadata=ADDED)


@dataclass(frozen=True, slots=True, kw_only=True)
class JobFailed(Event):
    """A permanent failure that no retry can fix (a 404, too many redirects). Terminal."""

    TYPE: ClassVar[str] = "JobFailed"
    code: ErrorCode
    message: str
    http_status: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class JobDeadLettered(Event):
    """Out of attempts (or a poison job). Terminal; a copy goes to the DLQ topic."""

    TYPE: ClassVar[str] = "JobDeadLettered"
    code: ErrorCode
    message: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ClientAttached(Event):
    """A client on pod ``pod`` wants this job's result (a resume, possibly on another pod)."""

    TYPE: ClassVar[str] = "ClientAttached"
    pod: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ResultDelivered(Event):
    """Pod ``pod`` sent the result to a client."""

    TYPE: ClassVar[str] = "ResultDelivered"
    pod: str


@dataclass(frozen=True, slots=True, kw_only=True)
class JobRedriven(FetchSpec):
    """An operator sent a failed or dead-lettered job back to the scraper.

    ``attempt`` is the next attempt number and ``base`` the number of attempts already spent, so
    the attempt limit counts afresh from ``base`` while the numbering never restarts.
    """

    TYPE: ClassVar[str] = "JobRedriven"
    base: int
    reason: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class JobCancelled(Event):
    """A client cancelled the job. Terminal (``cancelled``) unless the job had already finished,
    in which case it changes nothing. The scraper abandons the job's fetch in flight and starts
    no attempt after it."""

    TYPE: ClassVar[str] = "JobCancelled"
    reason: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class JobExpired(Event):
    """The job left the replay window; its state is removed from ``job-state``. Terminal."""

    TYPE: ClassVar[str] = "JobExpired"


EVENT_TYPES: dict[str, type[Event]] = {
    cls.TYPE: cls
    for cls in (
        JobSubmitted,
        JobValidated,
        JobRejected,
        AttemptFailed,
        RetryScheduled,
        AttemptStarted,
        ProcessingFailed,
        ScrapeSucceeded,
        JobFailed,
        JobDeadLettered,
        ClientAttached,
        ResultDelivered,
        JobRedriven,
        JobExpired,
        JobCancelled,
    )
}

SCRAPE_TRIGGERS: tuple[type[Event], ...] = (JobValidated, RetryScheduled, JobRedriven)
"""Events that ask the scraper for a fetch attempt."""

Status = Literal[
    "unknown",
    "submitted",
    "validated",
    "retrying",
    "redriven",
    "succeeded",
    "rejected",
    "failed",
    "dead_lettered",
    "expired",
    "cancelled",
]

TERMINAL: frozenset[str] = frozenset(
    {"succeeded", "rejected", "failed", "dead_lettered", "expired", "cancelled"}
)
REDRIVABLE: frozenset[str] = frozenset({"failed", "dead_lettered"})


def outcome_id(job_id: str, attempt: int) -> str:
    """The one event id any outcome of attempt ``attempt`` gets: a replayed attempt dedupes."""
    return f"{job_id}/a{attempt}/outcome"


def retry_id(job_id: str, attempt: int) -> str:
    return f"{job_id}/a{attempt}/retry"


def is_outcome(event: Event) -> bool:
    """True for the one event that records how attempt ``event.attempt`` ended."""
    return event.attempt > 0 and event.event_id == outcome_id(event.job_id, event.attempt)


OUTCOMES: tuple[type[Event], ...] = (ScrapeSucceeded, JobFailed, AttemptFailed, JobDeadLettered)
"""Event types that may be an attempt's outcome (see :func:`is_outcome`)."""


def payload_of(event: Event) -> dict[str, Any]:
    """The event's own fields, without the envelope (an :data:`ADDED` field only when it is set)."""
    out: dict[str, Any] = {}
    for f in fields(event):
        if f.name in _ENVELOPE:
            continue
        value = getattr(event, f.name)
        if f.metadata.get("added") and value == f.default:
            continue
        out[f.name] = value
    return out


_ENVELOPE = frozenset({"job_id", "event_id", "at", "source", "attempt"})
