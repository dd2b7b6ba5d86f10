"""Budgets of an edge pod: what one address, one connection or one slow reader may hold of it.

Each class is one limit, with no I/O and an injectable clock, so the HTTP and WebSocket sides
(and tests) use the same rules:

* :class:`ConnectionBudget` - open TCP connections, in all and per client address; a small
  reserve over the total cap for addresses holding none (health probes keep answering at the cap).
* :class:`TokenBucket` - a rate (resumes per connection per second; an API key's submits), with
  the wait to report.
* :class:`KeyBudget` - per API key owner: jobs in flight through this pod, and a submit rate.
* :class:`SendBudget` - bytes handed to a socket and not yet flushed to the kernel.
* :class:`AttachWindow` - which jobs this pod already recorded a ``ClientAttached`` for, and
  the last answer it was given for each, within a window: repeated resumes write nothing.
* :class:`Throttled` - a log line at most once per interval, counting what it held back.
* :func:`raise_fd_limit` - the soft descriptor limit raised to the hard one.
"""

from __future__ import annotations

import logging
import resource
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

import ledger

Clock = Callable[[], float]


class Admission(Enum):
    """How a connection was let in: within the caps, or on the probe reserve over the total."""

    NORMAL = "normal"
    RESERVE = "reserve"


class ConnectionBudget:
    """Open connections in all and per address.

    ``admit`` says whether a new connection from ``address`` may stay (and counts it), and how;
    ``release`` gives its place back. Over ``per_address`` (0: no per-address cap, e.g. behind
    a proxy whose address every client shares) a connection is refused. Over ``total``, an
    address that holds no connection yet still gets one of ``reserve`` places: a liveness probe
    opens one connection at a time from its own address, so a flood that fills the edge cannot
    make the kubelet restart it. The caller keeps reserve connections to plain HTTP requests.
    """

    def __init__(self, total: int, per_address: int, reserve: int = 0) -> None:
        self.total = total
        self.per_address = per_address
        self.reserve = reserve
        self.open = 0
        self.reserved = 0
        self._by_address: dict[str, int] = {}

    def admit(self, address: str) -> Admission | None:
        held = self._by_address.get(address, 0)
        if self.per_address and held >= self.per_address:
            return None
        if self.open - self.reserved < self.total:
            how = Admission.NORMAL
        elif held == 0 and self.reserved < self.reserve:
            how = Admission.RESERVE
            self.reserved += 1
        else:
            return None
        self.open += 1
        self._by_address[address] = held + 1
        return how

    def release(self, address: str, how: Admission) -> None:
        self.open -= 1
        if how is Admission.RESERVE:
            self.reserved -= 1
        held = self._by_address.get(address, 0) - 1
        if held > 0:
            self._by_address[address] = held
        else:
            self._by_address.pop(address, None)

    def held_by(self, address: str) -> int:
        return self._by_address.get(address, 0)


class TokenBucket:
    """``rate`` actions per second on average, ``burst`` at once.

    ``take()`` spends a token and returns 0.0, or returns how many seconds until one is there
    (spending nothing): the ``retry_after`` a refused client is told.
    """

    def __init__(self, rate: float, burst: int, clock: Clock = time.monotonic) -> None:
        self.rate = rate
        self.burst = max(1, burst)
        self._clock = clock
        self._tokens = float(self.burst)
        self._at = clock()

    def take(self, n: int = 1) -> float:
        """Spend ``n`` tokens, or say how long until there are enough. More than ``burst`` at
        once (a large batch) passes on a full bucket and leaves a debt: the average still holds."""
        now = self._clock()
        self._tokens = min(float(self.burst), self._tokens + (now - self._at) * self.rate)
        self._at = now
        need = float(min(n, self.burst))
        if self._tokens >= need:
            self._tokens -= n
            return 0.0
        return (need - self._tokens) / self.rate


class KeyBudget:
    """Per API key owner: jobs in flight through this pod, and a submit rate.

    ``admit(owner, n)`` reserves ``n`` submits or says why not (``None`` when admitted, else a
    message and the seconds to wait); each admitted submit ends with :meth:`started` (a job
    that is now in flight) and/or :meth:`settle` (the reservation is given back). A job leaves
    the count with :meth:`finished`, when this pod hears its result (every pod a job was
    submitted on is sent it). Per pod: the edge shares no memory with its peers.
    """

    def __init__(self, max_in_flight: int, rate: float, burst: int, clock: Clock = time.monotonic,
                 most_owners: int = 10_000) -> None:
        self.max_in_flight = max_in_flight
        self.rate, self.burst = rate, burst
        self._clock = clock
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()
        self._most_owners = most_owners
        self._in_flight: dict[str, set[str]] = {}
        self._owner_of: dict[str, str] = {}
        self._reserved: dict[str, int] = {}

    def in_flight(self, owner: str) -> int:
        return len(self._in_flight.get(owner, ())) + self._reserved.get(owner, 0)

    def admit(self, owner: str, n: int = 1) -> tuple[str, float] | None:
        if self.in_flight(owner) + n > self.max_in_flight:
            return (f"at most {self.max_in_flight} jobs in flight per API key; wait for a result", 1.0)
        bucket = self._buckets.get(owner)
        if bucket is None:
            bucket = self._buckets[owner] = TokenBucket(self.rate, self.burst, self._clock)
            if len(self._buckets) > self._most_owners:
                self._buckets.popitem(last=False)
        self._buckets.move_to_end(owner)
        wait = bucket.take(n)
        if wait:
            return (f"at most {self.rate:g} submits per second per API key", wait)
        self._reserved[owner] = self._reserved.get(owner, 0) + n
        return None

    def started(self, owner: str, job_id: str) -> None:
        self._in_flight.setdefault(owner, set()).add(job_id)
        self._owner_of[job_id] = owner

    def settle(self, owner: str, n: int = 1) -> None:
        left = self._reserved.get(owner, 0) - n
        if left > 0:
            self._reserved[owner] = left
        else:
            self._reserved.pop(owner, None)

    def finished(self, job_id: str) -> None:
        owner = self._owner_of.pop(job_id, None)
        if owner is None:
            return
        jobs = self._in_flight.get(owner)
        if jobs is not None:
            jobs.discard(job_id)
            if not jobs:
                del self._in_flight[owner]


class SendBudget:
    """Bytes queued on one socket and not yet flushed (the reader is slower than its results).

    One frame larger than the cap is let through when nothing else is queued, so any single
    result can be delivered; beyond that, a reader that does not keep up is cut off instead of
    making the edge hold its results (40 unread 30 MiB results took an edge from 113 to 266 MiB).
    """

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.queued = 0

    def take(self, n: int) -> bool:
        if self.queued and self.queued + n > self.cap:
            return False
        self.queued += n
        return True

    def done(self, n: int) -> None:
        self.queued -= n


@dataclass
class _Attached:
    expires: float
    state: ledger.JobState | None = None
    delivered: bool = False


class AttachWindow:
    """Jobs this pod recorded as attached (``ClientAttached``, or submitted here) in the window.

    A resume of a job found here writes nothing to the ledger: the materializer already routes
    the job's result to this pod, and the last answer it sent (kept here, bodies by reference
    only) is replayed at once. Entries expire ``window`` seconds after they were made, however
    often they are used, so an answer is never older than the window; at most ``most`` entries
    are kept (the oldest go first), which bounds memory under a flood of distinct ids.
    """

    def __init__(self, window: float, most: int = 20_000, clock: Clock = time.monotonic) -> None:
        self.window = window
        self.most = most
        self._clock = clock
        self._jobs: OrderedDict[str, _Attached] = OrderedDict()

    def _expire(self) -> None:
        now = self._clock()
        while self._jobs:
            job_id, entry = next(iter(self._jobs.items()))
            if entry.expires > now and len(self._jobs) <= self.most:
                break
            del self._jobs[job_id]

    def __contains__(self, job_id: str) -> bool:
        self._expire()
        return job_id in self._jobs

    def __len__(self) -> int:
        self._expire()
        return len(self._jobs)

    def attach(self, job_id: str) -> bool:
        """Note an attach; False if one is already recorded in the window (write nothing)."""
        self._expire()
        if job_id in self._jobs:
            return False
        self._jobs[job_id] = _Attached(self._clock() + self.window)
        return True

    def forget(self, job_id: str) -> None:
        """The attach could not be recorded: the next resume must try again."""
        self._jobs.pop(job_id, None)

    def answer(self, job_id: str) -> ledger.JobState | None:
        """The last answer this pod got for the job within the window, if any."""
        self._expire()
        entry = self._jobs.get(job_id)
        return None if entry is None else entry.state

    def answered(self, state: ledger.JobState, *, new: bool = True) -> None:
        """Keep an answer routed to this pod (the latest wins); ``new=False`` only updates a
        job already remembered (an expiry notice for a job this pod has forgotten is dropped)."""
        self._expire()
        entry = self._jobs.get(state.job_id)
        if entry is None:
            if not new:
                return
            entry = self._jobs[state.job_id] = _Attached(self._clock() + self.window)
            self._expire()  # may drop the oldest to stay within ``most``
        entry.state = state

    def delivered(self, job_id: str) -> bool:
        """True the first time in the window a result of the job reached a client here: the pod
        then records ``ResultDelivered`` (once per window, like the attach)."""
        entry = self._jobs.get(job_id)
        if entry is None:
            return True
        first = not entry.delivered
        entry.delivered = True
        return first


class Throttled:
    """A logger that writes a given line at most once per ``interval`` seconds.

    Tornado's accept loop, out of descriptors, logged a traceback on every wake-up (85 MB in
    80 s); through this, one line per second says what happened and how often since.
    """

    def __init__(self, log: logging.Logger, interval: float = 1.0, clock: Clock = time.monotonic) -> None:
        self.log = log
        self.interval = interval
        self._clock = clock
        self._last = float("-inf")
        self.held_back = 0

    def warning(self, msg: str, *args: object) -> bool:
        now = self._clock()
        if now - self._last < self.interval:
            self.held_back += 1
            return False
        held, self.held_back, self._last = self.held_back, 0, now
        self.log.warning("%s (%d more like this since the last line)", msg % args, held)
        return True


def raise_fd_limit() -> int:
    """Raise this process's soft descriptor limit to the hard one; return the soft limit now.

    Every connection is a descriptor, and the default soft limit (often 1024) would make the
    connection cap meaningless; the hard limit is the administrator's choice, so it stays.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass  # keep what we have; the caller sizes the cap to it
    return soft
