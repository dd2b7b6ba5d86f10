"""The Python client: ``async with Client(server) as c: result = await c.scrape(url)``.

It keeps one WebSocket, matches ``accepted`` frames to requests by ``ref`` and results to jobs
by ``job_id``, and when the connection drops it reconnects (with back-off) and sends ``resume``
for every job that was accepted but has no result yet, so a dropped connection or a dead edge pod
costs latency, never a result. A job whose ``accepted`` never arrived is submitted again.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import random
from dataclasses import dataclass, field
from typing import Any

import orjson
from tornado.httpclient import HTTPClientError, HTTPRequest
from tornado.websocket import WebSocketClientConnection, WebSocketClosedError, websocket_connect

from scrapeledger.errors import ScrapeledgerError, UnknownJobError

log = logging.getLogger(__name__)


class ClientError(ScrapeledgerError):
    """The edge answered a request with an ``error`` frame."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code


@dataclass
class _Pending:
    frame: dict[str, Any]
    job_id: str | None = None
    accepted: asyncio.Future[str] = field(default_factory=lambda: asyncio.get_running_loop().create_future())
    result: asyncio.Future[dict[str, Any]] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class Client:
    """A reconnecting, resuming Scrapeledger WebSocket client."""

    def __init__(
        self, server: str | list[str] = "ws://127.0.0.1:3001", *, connect_timeout: float = 10.0,
        max_reconnect_s: float = 120.0,
    ) -> None:
        """``server`` may list several edges (as a load balancer would): each reconnect tries the
        next one, so a dead pod is left behind."""
        self.servers = [server] if isinstance(server, str) else list(server)
        self._next_server = 0
        self.connect_timeout = connect_timeout
        self.max_reconnect_s = max_reconnect_s
        self._conn: WebSocketClientConnection | None = None
        self._refs = itertools.count(1)
        self._by_ref: dict[str, _Pending] = {}
        self._resumes: dict[str, _Pending] = {}  # ref of a resume -> its request (error frames)
        self._by_job: dict[str, _Pending] = {}
        self._reader: asyncio.Task[None] | None = None
        self._closed = False
        self._connected = asyncio.Event()
        self._failed: ScrapeledgerError | None = None
        self.reconnects = 0
        self.resumes = 0
        self.duplicates = 0

    async def __aenter__(self) -> Client:
        await self._connect()
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
        if self._conn is not None:
            # the reader may have opened a new connection while we waited for it to stop
            self._conn.close()
        stream = getattr(self._conn, "stream", None)
        if stream is not None and not stream.closed():
            stream.close()

    # --- public API ---------------------------------------------------------------------------

    async def submit(
        self, url: str, *, headers: dict[str, str] | None = None, timeout_s: float | None = None,
        proxy: str | None = None,
    ) -> str:
        """Submit a job; return its id once the edge confirmed it is durable."""
        pending = await self._send_job(url, headers, timeout_s, proxy)
        return await pending.accepted

    async def scrape(
        self, url: str, *, headers: dict[str, str] | None = None, timeout_s: float | None = None,
        proxy: str | None = None,
    ) -> dict[str, Any]:
        """Submit a job and wait for its ``result`` frame (whatever its status)."""
        pending = await self._send_job(url, headers, timeout_s, proxy)
        await pending.accepted
        return await pending.result

    async def result(self, job_id: str) -> dict[str, Any]:
        """Wait for the result of a job submitted with :meth:`submit`."""
        pending = self._by_job.get(job_id)
        if pending is None:
            return await self.resume(job_id)
        return await pending.result

    async def resume(self, job_id: str) -> dict[str, Any]:
        """Ask for a job's result by id (on any edge); raises :class:`UnknownJobError`."""
        ref = f"r{next(self._refs)}"
        pending = _Pending(frame={"event": "resume", "job_id": job_id, "ref": ref}, job_id=job_id)
        pending.accepted.set_result(job_id)
        self._by_job[job_id] = pending
        self._resumes[ref] = pending
        await self._write(pending.frame)
        return await pending.result

    async def reconnect(self) -> None:
        """Drop the connection now; the client moves to the next server and resumes its jobs there.

        The same path a network failure takes, on purpose: for moving clients off a pod that is
        being drained, and for tests that drop connections at random.
        """
        if self._conn is not None and self._connected.is_set():
            self._conn.close()

    # --- internals ----------------------------------------------------------------------------

    async def _send_job(
        self, url: str, headers: dict[str, str] | None, timeout_s: float | None, proxy: str | None
    ) -> _Pending:
        ref = f"c{next(self._refs)}"
        message: Any = url
        if headers or timeout_s is not None or proxy is not None:
            message = {"url": url, "headers": headers or {}, "timeout_s": timeout_s, "proxy": proxy}
            message = {k: v for k, v in message.items() if v is not None}
        pending = _Pending(frame={"event": "job", "message": message, "ref": ref})
        self._by_ref[ref] = pending
        await self._write(pending.frame)
        return pending

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

    async def _connect(self) -> None:
        delay = 0.1
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.max_reconnect_s
        while True:
            self.server = self.servers[self._next_server % len(self.servers)]
            self._next_server += 1
            # Tornado enforces the timeouts itself and closes what it gave up on; a cancelled
            # wait would orphan a handshake that completes later (an unclosed connection)
            request = HTTPRequest(
                self.server, connect_timeout=self.connect_timeout, request_timeout=self.connect_timeout
            )
            attempt = asyncio.ensure_future(websocket_connect(request, max_message_size=64 * 1024 * 1024))
            try:
                self._conn = await asyncio.shield(attempt)
                self._connected.set()
                return
            except asyncio.CancelledError:  # close() while connecting: close what arrives late
                attempt.add_done_callback(_close_late)
                raise
            # HTTPClientError: the pod died mid-handshake (599 stream closed) or is not serving
            # WebSockets yet or any more (503 while draining): another try, maybe another pod
            except (OSError, TimeoutError, WebSocketClosedError, HTTPClientError) as exc:
                if loop.time() >= deadline or self._closed:
                    raise ScrapeledgerError(f"cannot connect to {self.server}: {exc}") from None
                log.info("connect to %s failed (%s); retrying in %.1fs", self.server, exc, delay)
                await asyncio.sleep(delay * random.uniform(0.5, 1.5))
                delay = min(delay * 2, 5.0)

    async def _read_forever(self) -> None:
        try:
            await self._read_loop()
        except Exception as exc:
            # nothing may wait forever on a reader that is gone: every caller hears why
            log.error("connection lost for good: %s", exc)
            err = exc if isinstance(exc, ScrapeledgerError) else ScrapeledgerError(f"client failed: {exc!r}")
            for pending in [*self._by_ref.values(), *self._by_job.values()]:
                for fut in (pending.accepted, pending.result):
                    if not fut.done():
                        fut.set_exception(err)
            self._by_ref.clear()
            self._by_job.clear()
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
                await self._connect()
                await self._resend()
                continue
            self._handle(orjson.loads(raw))

    async def _resend(self) -> None:
        for pending in list(self._by_job.values()):
            if not pending.result.done():
                self.resumes += 1
                await self._write({"event": "resume", "job_id": pending.job_id})
        for pending in list(self._by_ref.values()):
            await self._write(pending.frame)

    def _handle(self, frame: dict[str, Any]) -> None:
        event = frame.get("event")
        if event == "accepted":
            pending = self._by_ref.pop(str(frame.get("ref")), None)
            if pending is not None:
                job_id = frame["job_id"]
                pending.job_id = job_id
                self._by_job[job_id] = pending
                if not pending.accepted.done():
                    pending.accepted.set_result(job_id)
        elif event in ("result", "unknown_job"):
            pending = self._by_job.pop(frame.get("job_id", ""), None)
            if pending is None or pending.result.done():
                self.duplicates += 1
                return
            ref = pending.frame.get("ref")
            if pending.frame.get("event") == "resume" and ref is not None:
                self._resumes.pop(ref, None)
            if event == "unknown_job":
                pending.result.set_exception(UnknownJobError(f"unknown job {frame.get('job_id')}"))
            else:
                pending.result.set_result(frame)
        elif event == "error":
            ref = str(frame.get("ref"))
            pending = self._by_ref.pop(ref, None) or self._resumes.pop(ref, None)
            err = ClientError(frame.get("code", "error"), frame.get("message", ""))
            if pending is not None:
                if pending.job_id is not None and self._by_job.get(pending.job_id) is pending:
                    del self._by_job[pending.job_id]
                for fut in (pending.accepted, pending.result):
                    if not fut.done():
                        fut.set_exception(err)
                pending.result.exception()  # mark retrieved; accepted carries the error
            else:
                log.warning("edge error: %s", err)


def _close_late(attempt: asyncio.Future[WebSocketClientConnection]) -> None:
    if not attempt.cancelled() and attempt.exception() is None:
        attempt.result().close()
