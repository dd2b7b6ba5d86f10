"""The recent-jobs index behind the dashboard: a bounded, sorted summary of the newest jobs.

Fed with job states (from the compacted ``job-state`` topic, see ``_index_feed``); answers the
list endpoint (newest first, filtered by status and a search string, paged by cursor) and the
counters (jobs submitted and finished per time bucket, by terminal status, in flight) without
touching Kafka. Memory is bounded twice: at most ``capacity`` jobs (the oldest by submit time
are dropped first) and a fixed number of counter buckets.

Counting needs no per-job memory beyond the index: a job is counted as submitted when it enters
the index and as finished when its state first turns terminal there. A state of a job older than
the oldest one ever dropped (the *horizon*) is refused, so a dropped job can never come back and
be counted twice. No I/O, clock-injected; a lock makes it safe to feed from a consumer thread
while the event loop reads.
"""

from __future__ import annotations

import bisect
import re
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import ledger
from scrapeledger.errors import ScrapeledgerError

ACTIVE = "active"
"""Pseudo-status of the list filter: every job not finished yet."""

BUCKET_S = 5
BUCKETS = 180
"""Counters cover the last 15 minutes in 5-second buckets."""

ANY_OWNER = "\0any"
"""The view of every job (API keys off); otherwise a view is one key's jobs."""


class CursorError(ScrapeledgerError):
    """A list cursor this index did not hand out."""


@dataclass(frozen=True, slots=True)
class JobSummary:
    """What the dashboard's table shows of a job: no headers, no body, no event ids."""

    job_id: str
    url: str
    host: str
    status: str
    attempts: int
    submitted_at: float
    updated_at: float | None
    finished_at: float | None
    error_code: str | None
    error_message: str | None
    http_status: int | None
    events: int
    owner: str | None

    @classmethod
    def of(cls, state: ledger.JobState) -> JobSummary:
        submitted = state.submitted_at if state.submitted_at is not None else state.updated_at or 0.0
        return cls(
            job_id=state.job_id,
            url=state.url,
            host=urlsplit(state.url).hostname or "",
            status=state.status,
            attempts=state.attempts,
            submitted_at=submitted,
            updated_at=state.updated_at,
            finished_at=state.finished_at,
            error_code=None if state.error is None else state.error.code,
            error_message=None if state.error is None else state.error.message,
            http_status=None if state.result is None else state.result.http_status,
            events=state.events,
            owner=state.owner,
        )

    @property
    def key(self) -> tuple[float, str]:
        return (self.submitted_at, self.job_id)

    @property
    def terminal(self) -> bool:
        return self.status in ledger.TERMINAL

    def to_dict(self) -> dict[str, Any]:
        duration = None if self.finished_at is None else max(0.0, self.finished_at - self.submitted_at)
        return {
            "job_id": self.job_id,
            "url": self.url,
            "host": self.host,
            "status": self.status,
            "attempts": self.attempts,
            "submitted_at": self.submitted_at,
            "updated_at": self.updated_at,
            "finished_at": self.finished_at,
            "duration_s": duration,
            "error": None if self.error_code is None
            else {"code": self.error_code, "message": self.error_message or ""},
            "http_status": self.http_status,
            "events": self.events,
        }


@dataclass
class _View:
    """Counts of one owner's jobs (or everyone's): by status now, and per time bucket."""

    by_status: dict[str, int] = field(default_factory=dict)
    submitted: dict[int, int] = field(default_factory=dict)
    finished: dict[int, dict[str, int]] = field(default_factory=dict)

    def count(self, status: str, delta: int) -> None:
        n = self.by_status.get(status, 0) + delta
        if n:
            self.by_status[status] = n
        else:
            self.by_status.pop(status, None)

    def prune(self, oldest: int) -> None:
        for buckets in (self.submitted, self.finished):
            for b in [b for b in buckets if b < oldest]:
                del buckets[b]


@dataclass(frozen=True, slots=True)
class Page:
    jobs: list[JobSummary]
    next_cursor: str | None


class RecentJobs:
    """At most ``capacity`` jobs, newest first by submit time; see the module docstring."""

    def __init__(self, capacity: int, clock: Callable[[], float] = time.time) -> None:
        self.capacity = capacity
        self.clock = clock
        self.lock = threading.Lock()
        self.jobs: dict[str, JobSummary] = {}
        self.order: list[tuple[float, str]] = []  # ascending (submitted_at, job_id)
        self.horizon: tuple[float, str] | None = None
        self.views: dict[str, _View] = {ANY_OWNER: _View()}
        self.version = 0
        """Changes applied so far (this pod's count): readers refetch when it moves."""

    def __len__(self) -> int:
        return len(self.jobs)

    # --- feeding ---------------------------------------------------------------------------------

    def apply(self, states: Iterable[ledger.JobState | tuple[str, None]]) -> None:
        """Take new states (in the topic's order per job); ``(job_id, None)`` is a tombstone."""
        with self.lock:
            for item in states:
                if isinstance(item, tuple):
                    self._remove(item[0])
                else:
                    self._put(JobSummary.of(item))
            self._prune()

    def _views_of(self, owner: str | None) -> list[_View]:
        if owner is None:
            return [self.views[ANY_OWNER]]
        view = self.views.get(owner)
        if view is None:
            view = self.views[owner] = _View()
        return [self.views[ANY_OWNER], view]

    def _put(self, new: JobSummary) -> None:
        old = self.jobs.get(new.job_id)
        if old is None and self.horizon is not None and new.key <= self.horizon:
            return  # dropped earlier (or older than everything dropped): never counted twice
        if old is not None and old.events > new.events:
            return  # an older record of a job already seen newer (a re-read after a restart)
        views = self._views_of(new.owner)
        if old is None:
            bisect.insort(self.order, new.key)
            b = _bucket(new.submitted_at)
            for v in views:
                v.submitted[b] = v.submitted.get(b, 0) + 1
        else:
            if old.key != new.key:  # submit time known only now (events out of order): re-sort
                del self.order[bisect.bisect_left(self.order, old.key)]
                bisect.insort(self.order, new.key)
            for v in views:
                v.count(old.status, -1)
        for v in views:
            v.count(new.status, 1)
        if new.terminal and (old is None or not old.terminal) and new.finished_at is not None:
            fb = _bucket(new.finished_at)
            for v in views:
                per = v.finished.setdefault(fb, {})
                per[new.status] = per.get(new.status, 0) + 1
        self.jobs[new.job_id] = new
        self.version += 1
        while len(self.jobs) > self.capacity:
            self._drop_oldest()

    def _drop_oldest(self) -> None:
        key = self.order.pop(0)
        self.horizon = key if self.horizon is None else max(self.horizon, key)
        old = self.jobs.pop(key[1])
        for v in self._views_of(old.owner):
            v.count(old.status, -1)

    def _remove(self, job_id: str) -> None:
        old = self.jobs.pop(job_id, None)
        if old is None:
            return
        del self.order[bisect.bisect_left(self.order, old.key)]
        for v in self._views_of(old.owner):
            v.count(old.status, -1)
        self.version += 1

    def _prune(self) -> None:
        oldest = _bucket(self.clock()) - BUCKETS + 1
        for v in self.views.values():
            v.prune(oldest)

    # --- reading ---------------------------------------------------------------------------------

    def page(
        self,
        *,
        statuses: frozenset[str] = frozenset(),
        query: str = "",
        cursor: str | None = None,
        limit: int = 50,
        owner: str = ANY_OWNER,
    ) -> Page:
        """Newest first: up to ``limit`` jobs older than ``cursor`` whose status is one of
        ``statuses`` (all when empty; ``active`` = not finished) and whose id or URL contains
        ``query`` (case-insensitive). Cursors name a position, not an offset, so jobs arriving
        meanwhile never shift a page."""
        q = query.strip().lower()
        active = ACTIVE in statuses
        with self.lock:
            i = len(self.order) if cursor is None else bisect.bisect_left(self.order, decode_cursor(cursor))
            out: list[JobSummary] = []
            while i > 0 and len(out) < limit:
                i -= 1
                job = self.jobs[self.order[i][1]]
                if owner != ANY_OWNER and job.owner != owner:
                    continue
                if statuses and job.status not in statuses and not (active and not job.terminal):
                    continue
                if q and q not in job.job_id.lower() and q not in job.url.lower():
                    continue
                out.append(job)
            more = i > 0 and len(out) == limit
        return Page(out, encode_cursor(out[-1].key) if more else None)

    def stats(self, owner: str = ANY_OWNER) -> dict[str, Any]:
        """Counters for the dashboard: per bucket over the last 15 minutes (oldest first),
        by status now, in flight."""
        with self.lock:
            self._prune()
            view = self.views.get(owner) or _View()
            now_b = _bucket(self.clock())
            buckets = [
                {"t": b * BUCKET_S, "submitted": view.submitted.get(b, 0),
                 "finished": dict(view.finished.get(b, {}))}
                for b in range(now_b - BUCKETS + 1, now_b + 1)
            ]
            by_status = dict(view.by_status)
            version = self.version
            indexed = sum(by_status.values())
        return {
            "now": self.clock(),
            "bucket_s": BUCKET_S,
            "buckets": buckets,
            "counts": by_status,
            "in_flight": sum(n for s, n in by_status.items() if s not in ledger.TERMINAL),
            "indexed": indexed,
            "capacity": self.capacity,
            "version": version,
        }


def _bucket(t: float) -> int:
    return int(t // BUCKET_S)


CURSOR = re.compile(r"([0-9]{1,16}(?:\.[0-9]{1,17})?)~([A-Za-z0-9_-]{0,64})")
"""``<submitted_at>~<job_id>``: a position in the list, so any cursor of this shape is valid."""


def encode_cursor(key: tuple[float, str]) -> str:
    return f"{key[0]!r}~{key[1]}"  # repr: the exact float, so the page after it starts after it


def decode_cursor(raw: str) -> tuple[float, str]:
    m = CURSOR.fullmatch(raw)
    if m is None:
        raise CursorError("not a cursor of this list")
    return (float(m.group(1)), m.group(2))
