"""The HTTP API on the edge's port: submit, read, wait, stream and cancel jobs (docs/api.md).

Tornado handlers over the same :class:`~ws_edge._server.Edge` the WebSocket uses: a submit is
the same durable ``JobSubmitted`` (keyed submits and cancels answered by the materializer), a
``?wait`` is the same registration for this pod's deliveries a ``resume`` makes. Reads (a job's
state, events, body) come from the ledger itself through ``scrapeledger.reader``, on a thread pool
of their own so a slow read never blocks the loop; the SSE stream follows the job's ledger
partition, so it can be resumed on any pod from the last Kafka offset the client saw.

Every error is JSON ``{"error": {"code", "message"}}`` with a stable ``code``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import math
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import orjson
import tornado.iostream
import tornado.web

import ledger
from scrapeledger import reader
from scrapeledger.errors import BrokerError, CodedError, ProtocolError, UnknownJobError

from ._auth import Unauthorized
from ._kafka import body_of
from ._openapi import openapi_document
from ._protocol import JobRequest, check_idempotency_key, parse_job, result_frame
from ._server import Edge, IdempotencyConflict, refuse_unauthorized
from ._tornado import PathSummary, finished, reason

log = logging.getLogger(__name__)

T = TypeVar("T")

MAX_WAIT_S = 60.0
MAX_BATCH = 1000
MAX_BODY_BYTES = 1024 * 1024
KEEPALIVE_S = 15.0
NOT_STREAMED = (ledger.ClientAttached, ledger.ResultDelivered)
"""Readers' bookkeeping, not transitions of the job: left out of the SSE stream."""


class ApiError(CodedError):
    """An answer other than success: HTTP status, stable code, message (``str()``: the message)."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(code, message)
        self.status = status
        self.headers = headers or {}


def unknown(job_id: str) -> ApiError:
    return ApiError(404, "unknown_job", f"no job {job_id}")


def unavailable(exc: Exception) -> ApiError:
    return ApiError(503, "unavailable", f"the ledger cannot be reached now ({exc}); retry",
                    {"Retry-After": "1"})


class Reads:
    """Blocking ledger reads for the HTTP API, off the event loop."""

    def __init__(self, edge: Edge) -> None:
        self.edge = edge
        self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=16, thread_name_prefix="edge-reads")
        self.stop = threading.Event()

    async def run(self, fn: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self.pool, fn)

    async def events(self, job_id: str, owner: str | None = None) -> list[ledger.Event]:
        """The job's ledger events (404 ``unknown_job`` if it was never submitted: a resume or a
        cancel of an unknown id leaves an event, not a job). ``owner`` (API keys on): another
        owner's job is unknown too, with the very same answer."""
        try:
            events = await self.run(lambda: reader.history(self.edge.settings, job_id))
        except UnknownJobError:
            raise unknown(job_id) from None
        except BrokerError as exc:
            raise unavailable(exc) from None
        first = next((e for e in events if isinstance(e, ledger.JobSubmitted)), None)
        if first is None or (owner is not None and first.owner != owner):
            raise unknown(job_id)
        return events

    async def owned_by(self, job_id: str, owner: str) -> bool:
        """Whether the job exists and is ``owner``'s (False for both "unknown" and "someone
        else's"); raises :class:`BrokerError` when the ledger cannot be read."""
        try:
            await self.events(job_id, owner)
        except ApiError as exc:
            if exc.status == 404:
                return False
            raise BrokerError(exc.message) from None
        return True

    async def state(self, job_id: str, owner: str | None = None) -> tuple[ledger.JobState, str | None]:
        """The job's state folded from its events, exactly as the ledger has it now, and its
        page body when it succeeded."""
        state = ledger.fold_all(await self.events(job_id, owner))[job_id]
        return state, await self.body(state)

    async def body(self, state: ledger.JobState) -> str | None:
        if state.status != "succeeded":
            return None
        return await self.run(lambda: body_of(self.edge.settings, state, self.stop))

    def close(self) -> None:
        self.stop.set()
        self.pool.shutdown(wait=False, cancel_futures=True)


def job_view(state: ledger.JobState, html: str | None) -> dict[str, Any]:
    """``GET /v1/jobs/{id}``: the job's state and, once it is finished, its result with the
    fields of the WebSocket ``result`` frame (whatever that frame carries)."""
    result = None
    if state.terminal:
        result = orjson.loads(result_frame(state, html))
        result.pop("event", None)
    return {
        "job_id": state.job_id,
        "status": state.status,
        "url": state.url,
        "attempts": state.attempts,
        "submitted_at": state.submitted_at,
        "updated_at": state.updated_at,
        "finished_at": state.finished_at,
        "error": None if state.error is None else {"code": state.error.code, "message": state.error.message},
        "result": result,
    }


class ApiHandler(PathSummary, tornado.web.RequestHandler):
    """JSON in, JSON out, every failure an ``{"error": ...}`` body."""

    public = False
    """Answered without an API key even when keys are on (``/openapi.json``)."""
    summary_names_address = False

    def initialize(self, edge: Edge, reads: Reads) -> None:
        self.edge = edge
        self.reads = reads
        self.owner: str | None = None
        """The API key's owner (None: keys are off): what this request may see and submit as."""

    def set_default_headers(self) -> None:
        self.set_header("Content-Type", "application/json")
        self.set_header("Cache-Control", "no-store")

    def prepare(self) -> None:
        """The edge's connection limits hold here too: the connection caps (per address, and
        overall) are enforced at accept for every connection on the port, and a request that came
        on the probe reserve (over ``EDGE_MAX_CONNECTIONS``) gets the 503 the cap promises."""
        if self.edge.on_reserve(self.request):
            raise ApiError(503, "too_many_connections", "too many connections; retry", {"Retry-After": "1"})
        if self.edge.keys is not None and not self.public:
            try:
                self.owner = self.edge.keys.authenticate(self.request, query=False)
            except Unauthorized as exc:
                refuse_unauthorized(self, str(exc))

    def answer(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        self.set_status(status)
        for name, value in (headers or {}).items():
            self.set_header(name, value)
        self.finish(orjson.dumps(body))

    def fail(self, exc: ApiError) -> None:
        self.answer(exc.status, {"error": {"code": exc.code, "message": exc.message}}, exc.headers)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        """Tornado's own errors (405, a bad request line, a bug) as JSON too."""
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, ApiError):
            self.fail(exc)
            return
        codes = {400: "bad_request", 404: "not_found", 405: "method_not_allowed"}
        code = codes.get(status_code, "internal_error" if status_code >= 500 else "bad_request")
        self.set_header("Content-Type", "application/json")
        self.finish(orjson.dumps({"error": {"code": code, "message": reason(self)}}))

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        if not isinstance(value, ApiError):
            super().log_exception(typ, value, tb)

    def job_id(self, raw: str) -> str:
        if not ledger.is_valid_job_id(raw):
            raise unknown(raw)  # an id that cannot exist is unknown, like any other
        return raw


class NotFound(ApiHandler):
    def prepare(self) -> None:
        super().prepare()
        if finished(self):
            return  # refused (401) already
        raise ApiError(404, "not_found", f"no such resource: {self.request.path}")


class OpenApi(ApiHandler):
    public = True

    def get(self) -> None:
        self.answer(200, openapi_document())


def _job_requests(body: Any, header_key: str | None) -> tuple[list[tuple[JobRequest, Any]], bool]:
    """Parse and check every job of a submit before anything is written: one bad entry refuses
    the whole request (400, naming the entry), so nothing is ever half-submitted."""
    batch = isinstance(body, dict) and "jobs" in body
    if batch:
        assert isinstance(body, dict)
        extra = set(body) - {"jobs"}
        if extra:
            raise ApiError(400, "invalid_request", f"unknown fields: {', '.join(sorted(extra))}")
        entries = body["jobs"]
        if not isinstance(entries, list) or not entries:
            raise ApiError(400, "invalid_request", "'jobs' must be a non-empty list of job objects")
        if len(entries) > MAX_BATCH:
            raise ApiError(400, "too_many_jobs", f"at most {MAX_BATCH} jobs per request")
    else:
        entries = [body]
    out = []
    for i, entry in enumerate(entries):
        where = f"jobs[{i}]: " if batch else ""
        if not isinstance(entry, dict):
            raise ApiError(400, "invalid_request", f"{where}a job is a JSON object with a 'url'")
        ref = entry.get("ref")
        if ref is not None and (isinstance(ref, bool) or not isinstance(ref, str | int | float)):
            raise ApiError(400, "invalid_request", f"{where}'ref' must be a string or a number")
        try:
            req = parse_job(entry, ref, extra=frozenset({"ref"}))
        except ProtocolError as exc:
            code = "invalid_request" if exc.code == "bad_frame" else exc.code
            raise ApiError(400, code, where + exc.message) from None
        if req.idempotency_key is None and header_key is not None:
            # one header for a batch: entry i gets key "<header>#i", so the batch retried names
            # the same jobs
            key = header_key if not batch else f"{header_key}#{i}"
            req = JobRequest(url=req.url, headers=req.headers, timeout_s=req.timeout_s,
                             proxy=req.proxy, ref=req.ref, idempotency_key=key)
        out.append((req, ref))
    return out, batch


class Jobs(ApiHandler):
    """``POST /v1/jobs``: one job object, or ``{"jobs": [...]}``."""

    async def post(self) -> None:
        try:
            await self._post()
        except ApiError as exc:
            self.fail(exc)

    async def _post(self) -> None:
        if self.edge.draining:
            raise ApiError(503, "draining", "this edge is shutting down; retry", {"Retry-After": "1"})
        if len(self.request.body) > MAX_BODY_BYTES:
            raise ApiError(413, "body_too_large", f"request bodies are limited to {MAX_BODY_BYTES} bytes")
        header = self.request.headers.get("Idempotency-Key")
        if header is not None:
            try:
                header = check_idempotency_key(header)
            except ProtocolError as exc:
                raise ApiError(400, exc.code, exc.message) from None
        try:
            body = orjson.loads(self.request.body)
        except orjson.JSONDecodeError:
            raise ApiError(400, "invalid_json", "the body is not JSON") from None
        requests, batch = _job_requests(body, header)
        owner = self.owner
        if owner is not None:
            refused = self.edge.key_budget.admit(owner, len(requests))
            if refused is not None:
                message, wait = refused
                raise ApiError(429, "rate_limited", message, {"Retry-After": str(max(1, math.ceil(wait)))})
        try:
            answers = await asyncio.gather(*(self._submit(req, ref) for req, ref in requests))
        finally:
            if owner is not None:
                self.edge.key_budget.settle(owner, len(requests))
        if not batch:
            (answer,) = answers
            if "error" in answer:
                raise ApiError(409, "idempotency_conflict", answer["error"]["message"])
            self.answer(202, answer, {"Location": f"/v1/jobs/{answer['job_id']}"})
            return
        self.answer(202, {"jobs": answers})

    async def _submit(self, req: JobRequest, ref: Any) -> dict[str, Any]:
        try:
            submitted = await self.edge.record_submit(req, owner=self.owner)
        except IdempotencyConflict as exc:
            return {"job_id": exc.job_id,
                    "error": {"code": "idempotency_conflict", "message": exc.message}}
        except BrokerError as exc:
            raise unavailable(exc) from None
        answer: dict[str, Any] = {"job_id": submitted.job_id, "status": submitted.status}
        if ref is not None:
            answer["ref"] = ref
        return answer


class _Waiter:
    """An HTTP request waiting for a job's result on this pod (``?wait=S``)."""

    def __init__(self, owner: str | None) -> None:
        self.jobs: set[str] = set()
        self.owner = owner
        self.done = asyncio.Event()

    def send(self, frame: bytes) -> None:
        self.done.set()


class Job(ApiHandler):
    """``GET /v1/jobs/{id}[?wait=S]`` and ``DELETE /v1/jobs/{id}``."""

    async def get(self, raw_id: str) -> None:
        try:
            await self._get(raw_id)
        except ApiError as exc:
            self.fail(exc)

    async def _get(self, raw_id: str) -> None:
        wait = self._wait()
        job_id = self.job_id(raw_id)
        state, html = await self.reads.state(job_id, self.owner)
        if not state.terminal and wait > 0:
            waiter = _Waiter(self.owner)
            try:
                await self.edge.attach(job_id, waiter)
                await asyncio.wait_for(waiter.done.wait(), wait)
            except BrokerError as exc:
                raise unavailable(exc) from None
            except TimeoutError:
                pass  # not finished in time: the state as it is now
            finally:
                self.edge.forget(waiter)
            state, html = await self.reads.state(job_id, self.owner)
        self.answer(200, job_view(state, html))

    def _wait(self) -> float:
        raw = self.get_query_argument("wait", None)
        if raw is None:
            return 0.0
        try:
            wait = float(raw)
        except ValueError:
            wait = -1.0
        if not 0 <= wait <= MAX_WAIT_S:  # also NaN
            raise ApiError(400, "invalid_wait", f"wait is a number of seconds from 0 to {MAX_WAIT_S:g}")
        return wait

    async def delete(self, raw_id: str) -> None:
        try:
            job_id = self.job_id(raw_id)
            if self.owner is not None:
                await self.reads.events(job_id, self.owner)  # another owner's job: unknown
            try:
                state = await self.edge.record_cancel(job_id)
            except BrokerError as exc:
                raise unavailable(exc) from None
            if state.status == "unknown":
                raise unknown(job_id)
            if state.status != "cancelled":
                raise ApiError(409, "already_finished",
                               f"the job had already finished ({state.status}); nothing changed")
            self.answer(200, {"job_id": job_id, "status": state.status})
        except ApiError as exc:
            self.fail(exc)


class Events(ApiHandler):
    """``GET /v1/jobs/{id}/events``: the ``replay history --json`` records."""

    async def get(self, raw_id: str) -> None:
        try:
            job_id = self.job_id(raw_id)
            events = await self.reads.events(job_id, self.owner)
        except ApiError as exc:
            self.fail(exc)
            return
        self.answer(200, {"job_id": job_id, "events": [ledger.event_to_dict(e) for e in events]})


class Stream(ApiHandler):
    """``GET /v1/jobs/{id}/stream``: Server-Sent Events, one ``transition`` per ledger event of
    the job as it is written and a final ``result``; each event's id is its ledger offset, so
    ``Last-Event-ID`` resumes after it - on any pod."""

    def initialize(self, edge: Edge, reads: Reads) -> None:
        super().initialize(edge, reads)
        self._stop = threading.Event()
        self._started = False

    def on_connection_close(self) -> None:
        self._stop.set()

    async def get(self, raw_id: str) -> None:
        try:
            job_id = self.job_id(raw_id)
            last = self._last_event_id()
            await self._stream(job_id, last)
        except ApiError as exc:
            if not self._started:
                self.fail(exc)
            else:
                self.finish()
        except tornado.iostream.StreamClosedError:
            pass  # the client left; it resumes with Last-Event-ID
        finally:
            self._stop.set()

    def _last_event_id(self) -> int:
        raw = self.request.headers.get("Last-Event-ID")
        if raw is None or not raw.strip():
            return -1
        try:
            return int(raw)
        except ValueError:
            raise ApiError(400, "invalid_last_event_id", "Last-Event-ID is an id of this stream") from None

    async def _stream(self, job_id: str, last: int) -> None:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[int, ledger.Event] | Exception | None] = asyncio.Queue()
        stop = self._stop

        def pump() -> None:
            try:
                for item in reader.follow(self.edge.settings, job_id, stop):
                    loop.call_soon_threadsafe(queue.put_nowait, item)
            except Exception as exc:
                loop.call_soon_threadsafe(queue.put_nowait, exc)

        threading.Thread(target=pump, name=f"edge-stream-{job_id[:8]}", daemon=True).start()
        state: ledger.JobState | None = None
        foreign = False
        while True:
            try:
                item = await asyncio.wait_for(queue.get(), KEEPALIVE_S)
            except TimeoutError:
                if self._started:
                    self.write(": keep-alive\n\n")
                    await self.flush()
                continue
            if isinstance(item, Exception):
                raise unavailable(item)
            if item is reader.CAUGHT_UP:
                if foreign or state is None or state.submitted_at is None:
                    raise unknown(job_id)
                continue
            offset, event = item
            after = ledger.fold(state, event)
            changed, state = after is not state, after
            if state.submitted_at is None:
                continue  # a resume or cancel of the id before anyone submitted it: no job yet
            if foreign or (self.owner is not None and state.owner != self.owner):
                # another owner's job: answered as an unknown one, and as late (once caught up)
                foreign = True
                continue
            if await self._forward(offset, event, state, changed and offset > last):
                return

    async def _forward(self, offset: int, event: ledger.Event, state: ledger.JobState, new: bool) -> bool:
        """Send what one event of the job means to the client (``new``: a change it has not seen):
        its ``transition``, and the ``result`` once the job finished; True then (the stream ends)."""
        if not self._started:
            self._begin()
        if new and not isinstance(event, NOT_STREAMED):
            self._send(offset, "transition", ledger.event_to_dict(event))
        if state.terminal:
            html = await self.reads.body(state)
            frame = orjson.loads(result_frame(state, html))
            frame.pop("event", None)
            self._send(offset, "result", frame)
            await self.flush()
            self.finish()
            return True
        await self.flush()
        return False

    def _begin(self) -> None:
        self._started = True
        self.set_header("Content-Type", "text/event-stream")
        self.set_header("Cache-Control", "no-store")
        self.set_header("X-Accel-Buffering", "no")  # a buffering proxy would hold the events

    def _send(self, offset: int, kind: str, data: dict[str, Any]) -> None:
        self.write(f"id: {offset}\nevent: {kind}\ndata: ".encode() + orjson.dumps(data) + b"\n\n")


def routes(edge: Edge, reads: Reads) -> list[tuple[str, type[tornado.web.RequestHandler], dict[str, Any]]]:
    deps = {"edge": edge, "reads": reads}
    return [
        (r"/openapi\.json", OpenApi, deps),
        (r"/v1/jobs", Jobs, deps),
        (r"/v1/jobs/([^/]+)", Job, deps),
        (r"/v1/jobs/([^/]+)/events", Events, deps),
        (r"/v1/jobs/([^/]+)/stream", Stream, deps),
    ]
