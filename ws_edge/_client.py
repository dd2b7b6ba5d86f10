"""The Python client: ``async with Client(server) as c: result = await c.scrape(url)``.

It keeps one WebSocket, matches ``accepted`` frames to requests by ``ref`` and results to jobs
by ``job_id``, and when the connection drops it reconnects (with back-off) and sends ``resume``
for every job that was accepted but has no result yet, so a dropped connection or a dead edge pod
costs latency, never a result. A job whose ``accepted`` never arrived is submitted again, with
the idempotency key it was first sent with (one per job, made here unless the caller gives one),
so a resubmit names the same job and never runs it twice.

Nothing waits without a bound: the first connect gives up after ``first_connect_s`` (a dead edge
is reported in seconds, not after the whole reconnect budget), reconnects after
``max_reconnect_s``, a request's reply (``accepted``, or an ``error`` frame echoing its ``ref``)
after ``request_timeout``, a result after ``result_timeout``. Each raises a
:class:`~scrapeledger.errors.ScrapeledgerError` that says which of them ran out.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import logging
import random
import secrets
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

import orjson
from tornado.httpclient import HTTPClientError, HTTPRequest
from tornado.websocket import WebSocketClientConnection, WebSocketClosedError, websocket_connect

from scrapeledger.errors import (
    ClientError,
    ClientTimeoutError,
    EdgeUnreachableError,
    ScrapeledgerError,
    UnauthorizedError,
    UnknownJobError,
)
from scrapeledger.redact import url_ref

from ._endpoint import edge_url
from ._job import JobSpec

log = logging.getLogger(__name__)

T = TypeVar("T")
SUBMIT_RETRY_S = 1.0
"""Pause before a submit the edge could not record (``submit_failed``) is sent again."""


@dataclass
class _Pending:
    frame: dict[str, Any]
    job_id: str | None = None
    claimed: bool = True
    """Someone waits on ``result`` (``scrape``, ``result``, ``resume``); if not, a result that
    arrives is kept in ``Client._unclaimed`` until :meth:`Client.result` asks for it."""
    accepted: asyncio.Future[str] = field(default_factory=lambda: asyncio.get_running_loop().create_future())
    result: asyncio.Future[dict[str, Any]] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class Client:
    """A reconnecting, resuming Scrapeledger WebSocket client."""

    def __init__(
        self,
        server: str | list[str] = "ws://127.0.0.1:3001",
        *,
        connect_timeout: float = 10.0,
        max_reconnect_s: float = 120.0,
        first_connect_s: float | None = None,
        request_timeout: float | None = None,
        result_timeout: float = 900.0,
        api_key: str | None = None,
    ) -> None:
        """``server`` may list several edges (as a load balancer would): each reconnect tries the
        next one, so a dead pod is left behind. ``http://`` addresses are taken as ``ws://``; a
        value that is no edge address raises :class:`~scrapeledger.errors.ConfigError` here.

        ``first_connect_s`` bounds the first connect (default: ``max_reconnect_s``); the CLI makes
        it short, because a user who starts a client against a dead edge wants to hear so now,
        while a client already holding jobs keeps trying for ``max_reconnect_s``. A request's
        reply may legitimately wait for a reconnect, so ``request_timeout`` defaults to the
        reconnect budget plus 30 s.

        ``api_key`` (for an edge with API keys on) is sent as ``Authorization: Bearer``, never
        in the URL; a refused key raises :class:`UnauthorizedError` at once.
        """
        raw = [server] if isinstance(server, str) else list(server)
        self.servers = [edge_url(s) for s in raw]
        self.server = self.servers[0]
        self._next_server = 0
        self.connect_timeout = connect_timeout
        self.max_reconnect_s = max_reconnect_s
        self.first_connect_s = max_reconnect_s if first_connect_s is None else first_connect_s
        self.request_timeout = max_reconnect_s + 30.0 if request_timeout is None else request_timeout
        self.result_timeout = result_timeout
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._conn: WebSocketClientConnection | None = None
        self._refs = itertools.count(1)
        self._by_ref: dict[str, _Pending] = {}
        self._resumes: dict[str, _Pending] = {}  # ref of a resume -> its request (error frames)
        self._cancels: dict[str, tuple[dict[str, Any], asyncio.Future[str]]] = {}
        self._by_job: dict[str, _Pending] = {}
        self._unclaimed: dict[str, _Pending] = {}  # submit()ted jobs whose result came first
        self._reader: asyncio.Task[None] | None = None
        # connect attempts whose waiter was cancelled mid-handshake: close() waits them out
        self._orphans: set[asyncio.Future[WebSocketClientConnection]] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False
        self._connected = asyncio.Event()
        self._failed: ScrapeledgerError | None = None
        self.reconnects = 0
        self.resumes = 0
        self.duplicates = 0

    async def __aenter__(self) -> Client:
        if not await self._connect(self.first_connect_s):
            raise EdgeUnreachableError("the client was closed while it connected")
        self._reader = asyncio.create_task(self._read_forever())
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the connection and wait for the close handshake, so no socket outlives us."""
        self._closed = True
        if self._conn is not None:
            self._conn.close()
        if self._reader is not None:
            try:  # the reader sees the close (read_message -> None) and returns
                await asyncio.wait_for(asyncio.shield(self._reader), 5)
            except (TimeoutError, Exception):
                self._reader.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await self._reader
        # A connect cancelled mid-handshake (the reader, just now; a cancelled __aenter__) leaves
        # its handshake running, and a connection that completes after we returned would be
        # nobody's: its socket outlives the loop. Tornado ends each attempt within its timeout
        # (at most connect_timeout), so wait for them here and close whatever they made.
        while self._orphans:
            attempt = self._orphans.pop()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(attempt), max(self.connect_timeout, 0.2) + 5)
            if attempt.done():
                _close_late(attempt)
            else:  # Tornado broke its bound: close it whenever it arrives
                attempt.add_done_callback(_close_late)
        if self._conn is not None:
            # the reader may have opened a new connection while we waited for it to stop
            _abort(self._conn)

    # --- public API ---------------------------------------------------------------------------

    async def submit(self, job: str | JobSpec, *, ref: str | None = None) -> str:
        """Submit a job (a URL, or a :class:`JobSpec` with options); return its id once the edge
        confirmed it is durable. An ``error`` frame for it raises :class:`ClientError`.

        ``ref`` is sent as the frame's ``ref`` (the edge echoes it) instead of one the client
        makes up; it must be unique among this client's requests still waiting for ``accepted``.
        The result is kept until :meth:`result` collects it, however soon it arrives.
        """
        pending = await self._send_job(_spec(job), ref)
        return await self._accepted(pending)

    async def scrape(
        self, job: str | JobSpec, *, ref: str | None = None, on_accepted: Callable[[str], None] | None = None
    ) -> dict[str, Any]:
        """Submit a job and wait for its ``result`` frame (whatever its status); ``on_accepted``
        hears the job id as soon as the submit is durable."""
        pending = await self._send_job(_spec(job), ref, claimed=True)
        job_id = await self._accepted(pending)
        if on_accepted is not None:
            on_accepted(job_id)
        return await self._bounded(pending.result, self.result_timeout, pending, "no result")

    async def result(self, job_id: str) -> dict[str, Any]:
        """Wait for the result of a job submitted with :meth:`submit` (or resume it by id)."""
        pending = self._unclaimed.pop(job_id, None) or self._by_job.get(job_id)
        if pending is None:
            return await self.resume(job_id)
        pending.claimed = True
        return await self._bounded(pending.result, self.result_timeout, pending, "no result")

    async def resume(self, job_id: str) -> dict[str, Any]:
        """Ask for a job's result by id (on any edge); raises :class:`UnknownJobError`."""
        ref = f"r{next(self._refs)}"
        pending = _Pending(frame={"event": "resume", "job_id": job_id, "ref": ref}, job_id=job_id)
        pending.accepted.set_result(job_id)
        self._by_job[job_id] = pending
        self._resumes[ref] = pending
        await self._write(pending.frame)
        return await self._bounded(pending.result, self.result_timeout, pending, "no result")

    async def cancel(self, job_id: str) -> None:
        """Cancel a job. Raises :class:`ClientError` ``already_finished`` if it had finished
        (nothing changed) and :class:`UnknownJobError` for an id the ledger never saw; a job
        that was already cancelled is not an error. A waiting :meth:`result` gets the
        ``cancelled`` result."""
        ref = f"x{next(self._refs)}"
        frame = {"event": "cancel", "job_id": job_id, "ref": ref}
        done: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._cancels[ref] = (frame, done)
        try:
            await self._write(frame)
            await asyncio.wait_for(asyncio.shield(done), self.request_timeout)
        except TimeoutError:
            raise ClientTimeoutError(f"no answer to the cancel of {job_id} within "
                                     f"{self.request_timeout:g} s", job_id) from None
        finally:
            self._cancels.pop(ref, None)

    async def reconnect(self) -> None:
        """Drop the connection now; the client moves to the next server and resumes its jobs there.

        The same path a network failure takes, on purpose: for moving clients off a pod that is
        being drained, and for tests that drop connections at random.
        """
        if self._conn is not None and self._connected.is_set():
            self._conn.close()

    # --- internals ----------------------------------------------------------------------------

    async def _send_job(self, job: JobSpec, ref: str | None, *, claimed: bool = False) -> _Pending:
        if ref is None:
            ref = f"c{next(self._refs)}"
            while ref in self._by_ref or ref in self._resumes:  # a caller chose this one
                ref = f"c{next(self._refs)}"
        elif ref in self._by_ref or ref in self._resumes:
            raise ClientError("duplicate_ref", f"ref {ref!r} is already waiting for an answer")
        if job.idempotency_key is None:  # its resubmits (a lost accepted) must name the same job
            job = dataclasses.replace(job, idempotency_key=secrets.token_urlsafe(16))
        pending = _Pending(frame={"event": "job", "message": job.message(), "ref": ref}, claimed=claimed)
        self._by_ref[ref] = pending
        await self._write(pending.frame)
        return pending

    async def _accepted(self, pending: _Pending) -> str:
        return await self._bounded(pending.accepted, self.request_timeout, pending, "no answer to the submit")

    async def _bounded(self, fut: asyncio.Future[T], timeout: float, pending: _Pending, what: str) -> T:
        """``fut``'s value, or :class:`ClientTimeoutError` after ``timeout`` seconds (the request
        is then forgotten: a late reply counts as a duplicate, not as a second answer)."""
        try:
            return await asyncio.wait_for(asyncio.shield(fut), timeout)
        except TimeoutError:
            self._forget(pending)
            job = f" for job {pending.job_id}" if pending.job_id else ""
            raise ClientTimeoutError(f"{what}{job} within {timeout:g} s", pending.job_id) from None

    def _forget(self, pending: _Pending) -> None:
        for table in (self._by_ref, self._resumes, self._by_job):
            for key in [k for k, v in table.items() if v is pending]:
                del table[key]
        for fut in (pending.accepted, pending.result):
            fut.cancel()

    async def _write(self, frame: dict[str, Any]) -> None:
        await self._connected.wait()
        if self._failed is not None:
            raise self._failed
        conn = self._conn
        try:
            if conn is None:
                raise WebSocketClosedError()
            await conn.write_message(orjson.dumps(frame).decode())
        except WebSocketClosedError:
            pass  # the reader reconnects and re-sends everything still pending

    async def _connect(self, budget: float) -> bool:
        """Connect (``self._conn``); False if the client was closed first (no connection then)."""
        delay = 0.1
        loop = asyncio.get_running_loop()
        deadline = loop.time() + budget
        while True:
            if self._closed:  # close() during the back-off: opening another connection would leak it
                return False
            self.server = self.servers[self._next_server % len(self.servers)]
            self._next_server += 1
            # Tornado enforces the timeouts itself and closes what it gave up on; a cancelled
            # wait would orphan a handshake that completes later (an unclosed connection).
            # One attempt never outlasts what is left of the budget (a host that drops packets).
            attempt_s = max(0.2, min(self.connect_timeout, deadline - loop.time()))
            request = HTTPRequest(self.server, connect_timeout=attempt_s, request_timeout=attempt_s,
                                  headers=self._headers)
            attempt = asyncio.ensure_future(websocket_connect(request, max_message_size=64 * 1024 * 1024))
            try:
                conn = await asyncio.shield(attempt)
            except asyncio.CancelledError:
                # the handshake goes on: close() waits for it; without a close(), what arrives
                # late is at least closed (if the loop still runs then)
                self._orphans.add(attempt)
                attempt.add_done_callback(_close_late)
                raise
            # HTTPClientError: the pod died mid-handshake (599 stream closed) or is not serving
            # WebSockets yet or any more (503 while draining): another try, maybe another pod
            except (OSError, TimeoutError, WebSocketClosedError, HTTPClientError) as exc:
                pause = self._pause_after(exc, delay, deadline)
                if pause is None:
                    return False
                await asyncio.sleep(pause)
                delay = min(delay * 2, 5.0)
                continue
            if self._closed:  # close() ran during the handshake: nobody will read or close this
                _abort(conn)
                return False
            self._conn = conn
            self._connected.set()
            return True

    def _pause_after(self, exc: Exception, delay: float, deadline: float) -> float | None:
        """How long to wait before the next connect after ``exc`` (``delay``, jittered); None if
        the client was closed meanwhile. Raises :class:`UnauthorizedError` for a refused key (no
        retry helps) and :class:`EdgeUnreachableError` once the pause would pass ``deadline``."""
        if isinstance(exc, HTTPClientError) and exc.code == 401:
            raise UnauthorizedError(  # the key is never in the message
                f"{url_ref(self.server)} refused the API key (401 unauthorized): give one "
                "with --api-key or SCRAPELEDGER_API_KEY"
            ) from None
        pause = delay * random.uniform(0.5, 1.5)
        if self._closed:
            return None
        if asyncio.get_running_loop().time() + pause >= deadline:
            raise EdgeUnreachableError(f"cannot connect to {url_ref(self.server)}: {_reason(exc)}") from None
        # the server URL may carry ?api_key=: logged without its query
        log.info("connect to %s failed (%s); retrying in %.1fs", url_ref(self.server), exc, pause)
        return pause

    async def _read_forever(self) -> None:
        try:
            await self._read_loop()
        except Exception as exc:
            # nothing may wait forever on a reader that is gone: every caller hears why
            log.error("connection lost for good: %s", exc)
            err = exc if isinstance(exc, ScrapeledgerError) else ScrapeledgerError(f"client failed: {exc!r}")
            for pending in [*self._by_ref.values(), *self._by_job.values(), *self._resumes.values()]:
                for fut in (pending.accepted, pending.result):
                    if not fut.done():
                        fut.set_exception(err)
            for _, done in self._cancels.values():
                if not done.done():
                    done.set_exception(err)
            self._by_ref.clear()
            self._by_job.clear()
            self._resumes.clear()
            self._failed = err
            self._connected.set()  # writers waiting for a connection wake up and hear it
            raise

    async def _read_loop(self) -> None:
        while not self._closed:
            conn = self._conn
            assert conn is not None
            raw = await conn.read_message()
            if raw is None:  # connection closed
                conn.close()
                if self._closed:
                    return
                self._connected.clear()
                self.reconnects += 1
                if not await self._connect(self.max_reconnect_s):
                    return  # closed meanwhile
                await self._resend()
                continue
            self._handle(orjson.loads(raw))

    async def _resend(self) -> None:
        for pending in list(self._by_job.values()):
            if not pending.result.done():
                self.resumes += 1
                await self._resume_again(pending)
        for pending in list(self._by_ref.values()):
            await self._write(pending.frame)
        for frame, _ in list(self._cancels.values()):
            await self._write(frame)  # a cancel is idempotent

    async def _resume_again(self, pending: _Pending) -> None:
        """Resume a pending job under a new ref, so that :meth:`_on_error` can tell its answer:
        an error frame for it fails the job's wait, and a ``rate_limited`` one (the edge limits
        resumes per connection; a reconnect resumes every job at once) sends it again after
        ``retry_after`` (:meth:`_retry_later`)."""
        if pending.result.done() or pending.job_id is None:
            return
        ref = f"r{next(self._refs)}"
        self._resumes[ref] = pending
        await self._write({"event": "resume", "job_id": pending.job_id, "ref": ref})

    async def _submit_again(self, ref: str, pending: _Pending) -> None:
        if self._by_ref.get(ref) is pending and not pending.accepted.done():
            await self._write(pending.frame)

    def _later(self, delay: float, coro: Callable[[], Coroutine[Any, Any, None]]) -> None:
        def start() -> None:
            task = asyncio.ensure_future(coro())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

        asyncio.get_running_loop().call_later(delay, start)

    def _drop_resumes(self, pending: _Pending) -> None:
        for ref in [r for r, p in self._resumes.items() if p is pending]:
            del self._resumes[ref]

    def _handle(self, frame: dict[str, Any]) -> None:
        """One frame from the edge, to whoever waits for it: an answer to a cancel, a submit's
        ``accepted``, a job's result (or ``unknown_job``), or an ``error`` for a request."""
        event = frame.get("event")
        cancel = self._cancels.get(str(frame.get("ref")))
        if cancel is not None and event in ("cancelled", "unknown_job", "error"):
            _answer_cancel(cancel[1], frame)
        elif event == "accepted":
            self._on_accepted(frame)
        elif event in ("result", "unknown_job"):
            self._on_result(frame)
        elif event == "error":
            self._on_error(frame)

    def _on_accepted(self, frame: dict[str, Any]) -> None:
        pending = self._by_ref.pop(str(frame.get("ref")), None)
        if pending is not None:
            job_id = frame["job_id"]
            pending.job_id = job_id
            self._by_job[job_id] = pending
            if not pending.accepted.done():
                pending.accepted.set_result(job_id)

    def _on_result(self, frame: dict[str, Any]) -> None:
        """A ``result`` or ``unknown_job`` frame: the job's wait ends (a second one is counted
        as a duplicate: after a reconnect, the old pod and the new one may both answer)."""
        pending = self._by_job.pop(frame.get("job_id", ""), None)
        if pending is None or pending.result.done():
            self.duplicates += 1
            return
        self._drop_resumes(pending)
        if not pending.claimed:
            self._unclaimed[frame.get("job_id", "")] = pending
        if frame.get("event") == "unknown_job":
            pending.result.set_exception(UnknownJobError(f"unknown job {frame.get('job_id')}"))
        else:
            pending.result.set_result(frame)

    def _on_error(self, frame: dict[str, Any]) -> None:
        """An ``error`` frame: a request the edge will take later is sent again then; any other
        fails the request it answers (or is logged, if it answers none)."""
        ref = str(frame.get("ref"))
        if self._retry_later(frame, ref):
            return
        pending = self._by_ref.pop(ref, None) or self._resumes.pop(ref, None)
        err = ClientError(frame.get("code", "error"), frame.get("message", ""))
        if pending is None:
            log.warning("edge error: %s", err)
            return
        if pending.job_id is not None and self._by_job.get(pending.job_id) is pending:
            del self._by_job[pending.job_id]
        self._drop_resumes(pending)
        for fut in (pending.accepted, pending.result):
            if not fut.done():
                fut.set_exception(err)
        if not pending.result.cancelled():
            pending.result.exception()  # mark retrieved; accepted carries the error

    def _retry_later(self, frame: dict[str, Any], ref: str) -> bool:
        """Schedule the request an error frame answers to be sent again, if the error says it may
        be: True when it was. A rate-limited resume or submit waits ``retry_after``; a submit the
        edge could not record waits :data:`SUBMIT_RETRY_S`."""
        code = frame.get("code")
        if code == "rate_limited" and ref in self._resumes:
            again = self._resumes.pop(ref)
            self._later(float(frame.get("retry_after") or 1.0), lambda: self._resume_again(again))
            return True
        if code == "submit_failed" and ref in self._by_ref:
            # the edge could not record it (Kafka unusable, or no answer in time): the job's
            # idempotency key makes sending it again safe, and the submit's wait stays bounded
            failed = self._by_ref[ref]
            self._later(SUBMIT_RETRY_S, lambda: self._submit_again(ref, failed))
            return True
        if code == "rate_limited" and ref in self._by_ref:
            # the API key's submit limits: the same frame (the same idempotency key) later
            limited = self._by_ref[ref]
            self._later(float(frame.get("retry_after") or 1.0), lambda: self._submit_again(ref, limited))
            return True
        return False


def _answer_cancel(done: asyncio.Future[str], frame: dict[str, Any]) -> None:
    """The edge's answer to a cancel, to its waiter: done, an unknown job, or an error."""
    if done.done():
        return
    event = frame.get("event")
    if event == "cancelled":
        done.set_result(str(frame.get("job_id")))
    elif event == "unknown_job":
        done.set_exception(UnknownJobError(f"unknown job {frame.get('job_id')}"))
    else:
        done.set_exception(ClientError(frame.get("code", "error"), frame.get("message", "")))


def _spec(job: str | JobSpec) -> JobSpec:
    return JobSpec(url=job) if isinstance(job, str) else job


def _reason(exc: BaseException) -> str:
    """Why a connect failed, in words: ``[Errno 111] Connection refused``, ``HTTP 503``..."""
    if isinstance(exc, HTTPClientError):
        return f"HTTP {exc.code} {exc.message or ''}".strip()
    if isinstance(exc, TimeoutError):
        return "timed out"
    return str(exc) or type(exc).__name__


def _close_late(attempt: asyncio.Future[WebSocketClientConnection]) -> None:
    if not attempt.cancelled() and attempt.exception() is None:
        _abort(attempt.result())


def _abort(conn: WebSocketClientConnection) -> None:
    """Close ``conn`` and its socket now: ``close()`` alone only sends the close frame and leaves
    the socket to the close handshake, which a loop that is about to end never finishes."""
    conn.close()
    stream = getattr(conn, "stream", None)
    if stream is not None and not stream.closed():
        stream.close()
