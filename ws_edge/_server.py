"""The edge: a Tornado WebSocket server that turns frames into ledger events and results into frames.

The edge holds no job state of its own beyond "which open socket waits for which job": a submit
is durable in the ledger before the client hears ``accepted``, and a result reaches this pod only
because the materializer routed it here by pod id (the route: :mod:`scrapeledger.delivery`). A pod
that dies loses nothing but sockets; clients reconnect to any pod and ``resume``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import orjson
import tornado.httputil
import tornado.netutil
import tornado.web
import tornado.websocket

import ledger
from scrapeledger.errors import BrokerError, CodedError, ConfigError, ProtocolError
from scrapeledger.observability import JOBS_SUBMITTED, RESULTS_SENT, WS_CONNECTIONS, render
from scrapeledger.redact import job_ref, url_ref
from scrapeledger.settings import Settings
from scrapeledger.vault import Vault

from ._auth import Keys, Unauthorized
from ._kafka import Delivery, EdgeKafka, Reply
from ._limits import AttachWindow, ConnectionBudget, KeyBudget, SendBudget, TokenBucket, raise_fd_limit
from ._listener import MOST_LINGERING, GuardedHTTPServer
from ._protocol import (
    CancelRequest,
    JobRequest,
    ResumeRequest,
    accepted_frame,
    cancelled_frame,
    error_frame,
    parse_frame,
    result_frame,
    unknown_job_frame,
)
from ._tornado import PathSummary, checked_utf8

if TYPE_CHECKING:
    from ._http import Reads
    from ._index_feed import IndexFeed

log = logging.getLogger(__name__)

HARD_FRAME_LIMIT = 1024 * 1024
"""Tornado closes the socket above this; below it, our own limit answers with an error frame."""
FD_HEADROOM = 256
"""Descriptors kept for everything but client connections (Kafka clients, logs, threads)."""
LISTEN_BACKLOG = 4096
"""Tornado's default (128) overflowed under a burst of connections: dropped SYNs, retried by
clients after 1 s, then 2 s, made ``/healthz`` take seconds in the flood bench. The kernel
caps it at ``net.core.somaxconn``."""


class Listener(Protocol):
    """Whoever waits for job results on this pod: a WebSocket, or an HTTP request (``?wait``)."""

    jobs: set[str]
    owner: str | None
    """The API key owner it acts for (None: API keys are off); it hears only that owner's jobs."""

    def send(self, frame: bytes) -> None: ...


@dataclass(frozen=True, slots=True)
class Submitted:
    """A recorded submit: the job and its status (``state``: the materializer's answer, keyed
    submits only; with ``html`` when it is a finished job's result)."""

    job_id: str
    status: str
    state: ledger.JobState | None = None
    html: str | None = None


class IdempotencyConflict(CodedError):
    """The idempotency key already named a job submitted for another URL (``idempotency_conflict``)."""

    def __init__(self, job_id: str) -> None:
        super().__init__("idempotency_conflict", "this idempotency key was already used for another URL")
        self.job_id = job_id


class Edge:
    """One edge pod: sockets, the waiting-jobs registry and the Kafka side."""

    def __init__(self, settings: Settings, vault: Vault | None = None,
                 fd_limit: int | None = None, on_failure: Callable[[], None] | None = None) -> None:
        """``vault`` seals each job's credentials before the submit is written (built from the
        settings on first use when not given); ``fd_limit``: the process's descriptor limit,
        which the connection cap must fit in; ``on_failure`` is called from another thread if
        the Kafka side stops for good (the broker away past ``SCRAPELEDGER_BROKER_OUTAGE_S``)."""
        self.settings = settings
        self._vault = vault
        self.keys = Keys.from_settings(settings)
        """The API keys (None: authentication off); a bad setting stops the edge here."""
        self.key_budget = KeyBudget(settings.edge_key_max_in_flight, settings.edge_key_submits_per_s,
                                    settings.edge_key_submit_burst)
        self.connections = ConnectionBudget(
            _fit_connections(settings, fd_limit), settings.edge_max_connections_per_address,
            settings.edge_reserved_connections,
        )
        self.attached = AttachWindow(settings.edge_attach_window_s)
        """Jobs this pod recorded an attach for (resumed or submitted here) and their answers."""
        self.kafka = EdgeKafka(settings, self._on_deliveries, on_replies=self._on_replies,
                               on_failure=on_failure)
        self.waiting: dict[str, dict[Listener, Any]] = defaultdict(dict)
        self.unaccepted: dict[tuple[str, Listener], list[bytes]] = {}
        """Submits not yet answered, with any result that overtook the answer: the client sees
        ``accepted`` before ``result``, however the two threads' callbacks interleave."""
        self.replies: dict[str, asyncio.Future[Delivery]] = {}
        """Request events (keyed submits, cancels) awaiting the materializer's answer."""
        self.sockets: set[JobSocket] = set()
        self.draining = False
        self.pending_submits = 0
        self._server: GuardedHTTPServer | None = None
        self.port: int | None = None
        self._connected = asyncio.Event()
        self.reads: Reads | None = None
        self.index_feed: IndexFeed | None = None

    @property
    def vault(self) -> Vault:
        if self._vault is None:
            self._vault = Vault.from_settings(self.settings)
        return self._vault

    # --- lifecycle ---------------------------------------------------------------------------

    def application(self) -> tornado.web.Application:
        from ._dashboard import routes as dashboard_routes
        from ._http import NotFound, Reads, routes  # the HTTP API builds on this module
        from ._index_feed import IndexFeed

        self.reads = Reads(self)
        self.index_feed = IndexFeed(self.settings)
        return tornado.web.Application(
            [
                (r"/healthz", Healthz),
                (r"/readyz", Readyz, {"edge": self}),
                (r"/metrics", Metrics),
                (r"/", JobSocket, {"edge": self}),
                (r"/ws", JobSocket, {"edge": self}),
                *dashboard_routes(self, self.reads, self.index_feed),  # before: GET /v1/jobs
                *routes(self, self.reads),
            ],
            default_handler_class=NotFound,
            default_handler_args={"edge": self, "reads": self.reads},
            websocket_max_message_size=HARD_FRAME_LIMIT,
            websocket_ping_interval=20,
            log_function=_log_request,
        )

    async def start(self, port: int | None = None) -> int:
        """Listen, then connect to Kafka; returns the bound port (``port=0`` picks one)."""
        bound = self.listen(port)
        await self.connect()
        return bound

    async def connect(self) -> None:
        """Start the Kafka side; ``/readyz`` turns ready once this pod's deliveries are read,
        and connections held while it started go on."""
        self.kafka.start(asyncio.get_running_loop())
        await self.kafka.wait_ready(timeout=self.settings.broker_wait_s)
        self._connected.set()

    async def until_ready(self, timeout: float) -> bool:
        """Wait (at most ``timeout`` s) until this pod can serve jobs; whether it can."""
        if not self.ready and not self._connected.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._connected.wait(), timeout)
        return self.ready

    def listen(self, port: int | None = None) -> int:
        """Serve HTTP at once, so liveness passes (and readiness says no) while Kafka is away."""
        wanted = self.settings.edge_port if port is None else port
        try:
            sockets = tornado.netutil.bind_sockets(wanted, address="", backlog=LISTEN_BACKLOG)
        except OSError as exc:
            raise ConfigError(
                f"the edge port {wanted} is not available ({exc.strerror}); choose another with "
                "--port or EDGE_PORT (0 picks a free one)"
            ) from None
        self._server = GuardedHTTPServer(
            self.application(), budget=self.connections,
            header_timeout_s=self.settings.edge_header_timeout_s, max_body_size=2 * HARD_FRAME_LIMIT,
        )
        self._server.add_sockets(sockets)
        self.port = sockets[0].getsockname()[1]
        log.info("edge %s listening on port %d (at most %d connections, %d per address)",
                 self.settings.pod_name, self.port, self.connections.total,
                 self.connections.per_address)
        return self.port

    def on_reserve(self, request: tornado.httputil.HTTPServerRequest) -> bool:
        """Whether the request came on a connection over ``EDGE_MAX_CONNECTIONS`` (the probe
        reserve): handlers other than health probes answer it 503, as the cap promises."""
        stream = getattr(request.connection, "stream", None)
        return self._server is not None and stream is not None and stream in self._server.reserve_streams

    @property
    def ready(self) -> bool:
        return not self.draining and self.kafka.ready

    async def drain(self) -> None:
        """Stop taking connections, let submits finish and results arrive, then close sockets.

        Clients whose job is still running are closed with 1001 ("going away") at the deadline;
        their jobs are safe in the ledger and they resume on another pod.
        """
        self.draining = True
        if self._server is not None:
            self._server.stop()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.edge_drain_s
        while (self.pending_submits or self.waiting) and loop.time() < deadline:
            await asyncio.sleep(0.05)
        for sock in list(self.sockets):
            sock.close(1001, "edge shutting down")
        if self._server is not None:
            try:
                await asyncio.wait_for(self._server.close_all_connections(), timeout=5)
            except TimeoutError:
                log.warning("some connections did not close in time")
        if self.reads is not None:
            self.reads.close()
        if self.index_feed is not None:
            await loop.run_in_executor(None, self.index_feed.close)
        await loop.run_in_executor(None, self.kafka.close)
        log.info("edge %s drained", self.settings.pod_name)

    # --- jobs --------------------------------------------------------------------------------

    @staticmethod
    def job_id_for(req: JobRequest, owner: str | None = None) -> str:
        """The id a submit gets: derived from (owner, idempotency key), else new and random."""
        if req.idempotency_key is None:
            return ledger.new_job_id()
        return ledger.idempotent_job_id(owner, req.idempotency_key)

    async def record_submit(
        self, req: JobRequest, *, owner: str | None = None, listener: Listener | None = None,
        job_id: str | None = None,
    ) -> Submitted:
        """Write the job's ``JobSubmitted`` (acks=all) and say which job it is.

        Unkeyed: a new random id, answered once the write is durable. Keyed (an idempotency
        key): the id is derived from (owner, key), so a resubmit from any pod names the same job;
        the materializer, which folds the job's events in ledger order, answers the submit
        (``reply_to``) with the job's state, and the edge tells "new", "already there" and "the
        key was used for another URL" (:class:`IdempotencyConflict`) from it. ``listener``, if
        given, is registered for the result before the write, so a fast result finds it.
        """
        key = req.idempotency_key
        job_id = job_id or self.job_id_for(req, owner)
        event = self._submitted(req, job_id, owner)
        event_id = event.event_id
        if listener is not None:
            self.waiting[job_id][listener] = req.ref
            listener.jobs.add(job_id)
        reply = None if key is None else self._expect_reply(event_id)
        self.pending_submits += 1
        try:
            await self.kafka.append(event)
            if reply is None:
                if owner is not None:
                    self.key_budget.started(owner, job_id)
                return Submitted(job_id, "submitted")
            state, html = await self._answer(event_id, reply)
        except BaseException:
            self.replies.pop(event_id, None)
            if listener is not None:
                self._forget(job_id, listener)
            raise
        finally:
            self.pending_submits -= 1
        if state.submitted_url != req.url:
            if listener is not None:
                self._forget(job_id, listener)
            raise IdempotencyConflict(job_id)
        if owner is not None and not state.terminal:
            self.key_budget.started(owner, job_id)
        return Submitted(job_id, state.status, state, html)

    def _submitted(self, req: JobRequest, job_id: str, owner: str | None) -> ledger.JobSubmitted:
        """The ``JobSubmitted`` this pod writes for ``req``, its credentials sealed."""
        key = req.idempotency_key
        # a keyed job may be submitted again: each submit is its own request, with its own id
        event_id = f"{job_id}/submitted" if key is None else f"{job_id}/submitted/{ledger.new_event_id()}"
        # credentials never reach Kafka in clear: the ledger keeps this event forever
        request = self.vault.seal(job_id, req.headers, req.proxy)
        return ledger.JobSubmitted(
            job_id=job_id,
            event_id=event_id,
            at=ledger.now(),
            source=self.settings.pod_name,
            url=req.url,
            headers=request.headers,
            timeout_s=req.timeout_s,
            proxy=request.proxy,
            sealed=request.sealed,
            formats=req.formats,
            owner=owner,
            idempotency_digest=None if key is None else ledger.key_digest(key),
        )

    async def submit(self, sock: Listener, req: JobRequest) -> None:
        """A WebSocket ``job`` frame: ``accepted`` once durable (and known, for a keyed job),
        then the result when it comes; a resubmit of a finished keyed job gets it at once."""
        job_id = self.job_id_for(req, sock.owner)
        held: list[bytes] = []  # results that overtake the answer wait for accepted
        self.unaccepted[(job_id, sock)] = held
        if isinstance(sock, JobSocket):
            sock.starting -= 1  # counted in sock.jobs from here on (record_submit registers it)
        try:
            submitted = await self.record_submit(req, owner=sock.owner, listener=sock, job_id=job_id)
        except IdempotencyConflict as exc:
            sock.send(error_frame("idempotency_conflict", exc.message, req.ref))
            return
        except BrokerError as exc:
            log.error("submit of %s failed: %s", url_ref(req.url), exc)
            sock.send(error_frame("submit_failed", "the job could not be recorded; retry", req.ref))
            return
        finally:
            self.unaccepted.pop((job_id, sock), None)
            if sock.owner is not None:
                self.key_budget.settle(sock.owner)
        JOBS_SUBMITTED.inc()
        self.attached.attach(job_id)  # the submit routes results here, as an attach would
        log.debug("job %s submitted: %s", job_ref(job_id), url_ref(req.url))
        sock.send(accepted_frame(job_id, req.ref))
        for frame in held:  # a result that arrived before the acknowledgement
            sock.send(frame)
        if submitted.state is not None and submitted.state.terminal and job_id in sock.jobs:
            self._forget(job_id, sock)  # a resubmit of a finished job: its result now
            sock.send(result_frame(submitted.state, submitted.html, req.ref))
            RESULTS_SENT.inc()

    async def attach(self, job_id: str, listener: Listener, ref: Any = None) -> None:
        """Register ``listener`` for the job's result and record ``ClientAttached`` for this pod:
        the materializer routes the result here whether the job finished before or after.

        Once per job and pod within the attach window: a repeated attach is answered from the
        window's last answer (or waits for the one under way)."""
        self.waiting[job_id][listener] = ref
        listener.jobs.add(job_id)
        if not self.attached.attach(job_id):
            answer = self.attached.answer(job_id)
            if answer is not None:
                self._replay(answer)
            return  # else: the result is already routed to this pod
        event = ledger.ClientAttached(
            job_id=job_id,
            event_id=ledger.new_event_id(),
            at=ledger.now(),
            source=self.settings.pod_name,
            pod=self.settings.pod_name,
        )
        self.pending_submits += 1
        try:
            await self.kafka.append(event)
        except BrokerError:
            self.attached.forget(job_id)
            self._forget(job_id, listener)
            raise
        finally:
            self.pending_submits -= 1

    async def may_see(self, owner: str | None, job_id: str) -> bool:
        """Whether ``owner`` may see the job: always with API keys off; with keys on only its
        own jobs, read from the ledger (the same read for an unknown id as for another owner's
        job, so neither answer comes sooner). Raises :class:`BrokerError`."""
        if owner is None:
            return True
        assert self.reads is not None
        return await self.reads.owned_by(job_id, owner)

    async def resume(self, sock: Listener, req: ResumeRequest) -> None:
        try:
            if not await self.may_see(sock.owner, req.job_id):
                sock.jobs.discard(req.job_id)
                sock.send(unknown_job_frame(req.job_id, req.ref))
                return
            await self.attach(req.job_id, sock, req.ref)
        except BrokerError as exc:
            log.error("resume of %s failed: %s", job_ref(req.job_id), exc)
            sock.send(error_frame("resume_failed", "the resume could not be recorded; retry", req.ref))

    async def record_cancel(self, job_id: str, reason: str = "") -> ledger.JobState:
        """Write ``JobCancelled`` and return the job's state after it, as the materializer folded
        it: ``cancelled``, another terminal status (it had finished: the cancel changed nothing),
        or ``unknown``. Raises :class:`BrokerError` when the write or the answer fails."""
        event = ledger.JobCancelled(
            job_id=job_id, event_id=ledger.new_event_id(), at=ledger.now(), source=self.settings.pod_name,
            reason=reason,
        )
        reply = self._expect_reply(event.event_id)
        self.pending_submits += 1
        try:
            await self.kafka.append(event)
            state, _ = await self._answer(event.event_id, reply)
        except BaseException:
            self.replies.pop(event.event_id, None)
            raise
        finally:
            self.pending_submits -= 1
        log.info("job %s: cancel answered %s", job_ref(job_id), state.status)
        return state

    async def cancel(self, sock: Listener, req: CancelRequest) -> None:
        try:
            if not await self.may_see(sock.owner, req.job_id):
                sock.send(unknown_job_frame(req.job_id, req.ref))
                return
            state = await self.record_cancel(req.job_id)
        except BrokerError as exc:
            log.error("cancel of %s failed: %s", job_ref(req.job_id), exc)
            sock.send(error_frame("cancel_failed", "the cancel could not be recorded; retry", req.ref))
            return
        if state.status == "unknown":
            sock.send(unknown_job_frame(req.job_id, req.ref))
        elif state.status == "cancelled":
            sock.send(cancelled_frame(req.job_id, req.ref))
        else:
            sock.send(error_frame("already_finished", f"the job had already finished ({state.status})",
                                  req.ref))

    def _expect_reply(self, event_id: str) -> asyncio.Future[Delivery]:
        fut: asyncio.Future[Delivery] = asyncio.get_running_loop().create_future()
        self.replies[event_id] = fut
        return fut

    async def _answer(self, event_id: str, reply: asyncio.Future[Delivery]) -> Delivery:
        timeout = self.settings.edge_reply_timeout_s
        try:
            return await asyncio.wait_for(reply, timeout)
        except TimeoutError:
            raise BrokerError(f"no answer from the state materializer in {timeout:g}s") from None
        finally:
            self.replies.pop(event_id, None)

    def _on_replies(self, replies: list[Reply]) -> None:
        for reply_to, state, html in replies:
            fut = self.replies.pop(reply_to, None)
            if fut is not None and not fut.done():
                fut.set_result((state, html))

    def _replay(self, state: ledger.JobState) -> None:
        """Answer waiting sockets with a state this pod was sent before (a repeated resume)."""
        r = state.result
        if r is not None and r.body is None and r.body_partition is not None:
            self.kafka.replay(state)  # the body is read by reference, as for a notice
        else:
            body = r.body if r is not None else None
            asyncio.get_running_loop().call_soon(self._on_deliveries, [(state, body)])

    def _on_deliveries(self, deliveries: list[Delivery]) -> None:
        for state, body in deliveries:
            self.attached.answered(state, new=state.status != "expired")
            if state.terminal or state.status == "unknown":
                self.key_budget.finished(state.job_id)
            socks = self.waiting.pop(state.job_id, None)
            if not socks:
                continue  # the client left; it will resume, possibly elsewhere
            for sock, ref in socks.items():
                sock.jobs.discard(state.job_id)
                if state.status == "unknown" or (self.keys is not None and sock.owner != state.owner):
                    # another owner's job answers as an unknown one (checked before the attach;
                    # this is the second lock on the door)
                    sock.send(unknown_job_frame(state.job_id, ref))
                    continue
                frame = result_frame(state, body, ref)
                held = self.unaccepted.get((state.job_id, sock))
                if held is not None:
                    held.append(frame)
                else:
                    sock.send(frame)
                RESULTS_SENT.inc()
            if state.status != "unknown" and self.attached.delivered(state.job_id):
                self.kafka.append_nowait(
                    ledger.ResultDelivered(
                        job_id=state.job_id,
                        event_id=ledger.new_event_id(),
                        at=ledger.now(),
                        source=self.settings.pod_name,
                        pod=self.settings.pod_name,
                    )
                )

    def _forget(self, job_id: str, sock: Listener) -> None:
        socks = self.waiting.get(job_id)
        sock.jobs.discard(job_id)
        if socks is not None:
            socks.pop(sock, None)
            if not socks:
                del self.waiting[job_id]

    def forget(self, listener: Listener) -> None:
        """``listener`` waits for nothing any more (an HTTP request that ended)."""
        for job_id in list(listener.jobs):
            self._forget(job_id, listener)

    def disconnected(self, sock: JobSocket, job_ids: set[str]) -> None:
        self.sockets.discard(sock)
        for job_id in list(job_ids):
            self._forget(job_id, sock)


def _fit_connections(settings: Settings, fd_limit: int | None) -> int:
    """``EDGE_MAX_CONNECTIONS``, lowered (with a warning) to what the descriptor limit allows:
    a cap above it would let ``accept()`` fail instead of answering 503."""
    cap = settings.edge_max_connections
    if fd_limit is None:
        return cap
    room = fd_limit - FD_HEADROOM - settings.edge_reserved_connections - MOST_LINGERING
    if cap > room:
        log.warning("EDGE_MAX_CONNECTIONS=%d does not fit the descriptor limit %d; using %d",
                    cap, fd_limit, max(1, room))
        return max(1, room)
    return cap


class JobSocket(PathSummary, tornado.websocket.WebSocketHandler):
    """One client connection; any number of jobs at once."""

    summary_names_address = False

    def get_websocket_protocol(self) -> tornado.websocket.WebSocketProtocol | None:
        return checked_utf8(super().get_websocket_protocol())  # 1007 for a text frame not UTF-8

    def initialize(self, edge: Edge) -> None:
        self.edge = edge
        self.jobs: set[str] = set()
        self.owner: str | None = None
        """The API key's owner (set in :meth:`prepare` when keys are on)."""
        self.starting = 0
        """Submits handed to a task that has not registered its job yet (counted in flight)."""
        self._tasks: set[asyncio.Future[None]] = set()
        settings = edge.settings
        self.resumes = TokenBucket(settings.edge_resumes_per_s, settings.edge_resume_burst)
        self.queued = SendBudget(settings.edge_max_queued_bytes)

    def prepare(self) -> None:
        """A connection let in on the probe reserve (over ``EDGE_MAX_CONNECTIONS``) gets the 503
        the cap promises before any upgrade: the reserve is for health probes."""
        if self.edge.on_reserve(self.request):
            self.set_status(503)
            self.set_header("Retry-After", "1")
            self.finish("too many connections; retry\n")
            return
        if self.edge.keys is not None:
            try:
                self.owner = self.edge.keys.authenticate(self.request, query=True)
            except Unauthorized as exc:
                refuse_unauthorized(self, str(exc))  # the upgrade is refused: no socket opens

    def check_origin(self, origin: str) -> bool:
        """Cross-site WebSocket hijacking: any page a user visits could otherwise drive the edge
        from their browser (with their cookies and their network position). Tornado calls this
        only when the handshake has an ``Origin`` (browsers always send one); the edge's own
        origin passes, others only if ``EDGE_ALLOWED_ORIGINS`` names them or is ``*``."""
        allowed = self.edge.settings.edge_allowed_origins
        if "*" in allowed or origin.rstrip("/").lower() in {a.rstrip("/").lower() for a in allowed}:
            return True
        return super().check_origin(origin)

    async def open(self, *args: str, **kwargs: str) -> None:
        """Accept the connection; one that arrives while the edge is still connecting to Kafka
        is held (Tornado queues its frames until ``open`` returns) instead of refused, for up to
        ``EDGE_READY_WAIT_S``: a client that tries the moment the edge listens is served."""
        if self.edge.draining:
            self.close(1001, "edge shutting down")
            return
        if not await self.edge.until_ready(self.edge.settings.edge_ready_wait_s):
            self.close(1013, "edge not ready; try again later")
            return
        self.edge.sockets.add(self)
        WS_CONNECTIONS.inc()

    def on_message(self, message: str | bytes) -> None:
        try:
            req = parse_frame(message, max_bytes=self.edge.settings.edge_max_frame_bytes)
        except ProtocolError as exc:
            self.send(error_frame(exc.code, exc.message, exc.ref))
            return
        if self.edge.draining:
            self.send(error_frame("draining", "this edge is shutting down; reconnect", req.ref))
            return
        if isinstance(req, ResumeRequest) and (wait := self.resumes.take()):
            self.send(error_frame(
                "rate_limited", "too many resumes on this connection; retry later", req.ref,
                retry_after=wait,
            ))
            return
        most = self.edge.settings.edge_max_jobs_per_connection
        again = isinstance(req, ResumeRequest) and req.job_id in self.jobs
        if len(self.jobs) + self.starting >= most and not again:
            self.send(error_frame(
                "too_many_jobs", f"at most {most} jobs in flight per connection; wait for a result",
                req.ref,
            ))
            return
        if isinstance(req, JobRequest) and self.owner is not None:
            refused = self.edge.key_budget.admit(self.owner)
            if refused is not None:
                message, wait = refused
                self.send(error_frame("rate_limited", message, req.ref, retry_after=wait))
                return
        task: asyncio.Future[None]
        if isinstance(req, JobRequest):
            self.starting += 1
            task = asyncio.ensure_future(self.edge.submit(self, req))
        elif isinstance(req, CancelRequest):
            task = asyncio.ensure_future(self.edge.cancel(self, req))
        else:
            self.jobs.add(req.job_id)
            task = asyncio.ensure_future(self.edge.resume(self, req))
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Future[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("frame handling failed", exc_info=task.exception())

    def send(self, frame: bytes) -> None:
        if self.ws_connection is None or self.ws_connection.is_closing():
            return
        size = len(frame)
        if not self.queued.take(size):
            # the reader does not keep up: drop it rather than hold its results (it resumes)
            log.warning("closing a slow reader: %d bytes queued", self.queued.queued)
            self.close(1013, "reader too slow; reconnect and resume")
            return
        # text frames: the protocol is JSON text
        written = self.write_message(frame.decode())
        written.add_done_callback(lambda _: self.queued.done(size))
        written.add_done_callback(_ignore_closed)

    def on_close(self) -> None:
        if self in self.edge.sockets:
            WS_CONNECTIONS.dec()
        self.edge.disconnected(self, self.jobs)


def _ignore_closed(fut: asyncio.Future[None]) -> None:
    if not fut.cancelled():
        exc = fut.exception()
        if exc is not None and not isinstance(exc, tornado.websocket.WebSocketClosedError):
            log.warning("write failed: %r", exc)


_PROBES = frozenset({"/healthz", "/readyz", "/metrics"})


def refuse_unauthorized(handler: tornado.web.RequestHandler, message: str) -> None:
    """401 with the API's JSON error body and a stable code (HTTP and a WebSocket upgrade)."""
    handler.set_status(401)
    handler.set_header("Content-Type", "application/json")
    handler.set_header("WWW-Authenticate", 'Bearer realm="scrapeledger"')
    handler.finish(orjson.dumps({"error": {"code": "unauthorized", "message": message}}))


def _log_request(handler: tornado.web.RequestHandler) -> None:
    """Tornado's access line without the query string: ``?api_key=`` and the like stay out.
    Probes log at DEBUG: a 503 from ``/readyz`` while the edge starts is the answer a prober
    asked for, not an ERROR line (Tornado logs every 5xx as one)."""
    status = handler.get_status()
    level = logging.INFO if status < 400 else logging.WARNING if status < 500 else logging.ERROR
    request = handler.request
    if request.path in _PROBES:
        level = logging.DEBUG
    logging.getLogger("tornado.access").log(
        level, "%d %s %s (%s) %.2fms", status, request.method, request.path, request.remote_ip,
        1000.0 * request.request_time(),
    )


class NoQuery(PathSummary, tornado.web.RequestHandler):
    """Tornado's own warnings (a 405, a bad request) name the request by its URI, query and
    all; these handlers name it by path only, so an ``?api_key=`` never reaches a log."""


class Healthz(NoQuery):
    """Liveness: the event loop answers. Never depends on Kafka (no restart storms)."""

    def get(self) -> None:
        self.write("ok\n")


class Metrics(NoQuery):
    """Prometheus exposition of this pod's metrics."""

    def get(self) -> None:
        body, ctype = render()
        self.set_header("Content-Type", ctype)
        self.write(body)


class Readyz(NoQuery):
    """Readiness: reading this pod's deliveries and not draining."""

    def initialize(self, edge: Edge) -> None:
        self.edge = edge

    def get(self) -> None:
        if self.edge.ready:
            self.write("ready\n")
        else:
            self.set_status(503)
            self.write("draining\n" if self.edge.draining else "not ready\n")


async def serve(settings: Settings, port: int | None = None) -> None:
    """Run an edge until SIGTERM/SIGINT, then drain. The ``scrapeledger edge`` entry point."""
    from scrapeledger.clusters import attach
    from scrapeledger.outage import retry
    from scrapeledger.topics import ensure_topics, wait_for_broker

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    got: list[signal.Signals] = []

    def on_signal(sig: signal.Signals) -> None:
        got.append(sig)
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig)

    def kafka_failed() -> None:
        loop.call_soon_threadsafe(stop.set)

    # a bad key stops the edge here, not per job
    edge = Edge(settings, Vault.from_settings(settings), fd_limit=raise_fd_limit(),
                on_failure=kafka_failed)
    bound = edge.listen(port)
    await loop.run_in_executor(None, lambda: wait_for_broker(settings, should_stop=stop.is_set))
    await loop.run_in_executor(None, lambda: attach(settings, f"edge {settings.pod_name}"))
    # a broker that has just come up may not have partition leaders yet: retried as a whole
    await loop.run_in_executor(
        None, lambda: retry(settings, f"edge {settings.pod_name} start-up", lambda: ensure_topics(settings))
    )
    await edge.connect()
    # one write: under PYTHONUNBUFFERED print() writes the newline separately, and a log line
    # from another thread could land between them in a merged stdout/stderr pipe
    sys.stdout.write(f"edge {settings.pod_name} ready on port {bound}\n")
    sys.stdout.flush()
    await stop.wait()
    failure = edge.kafka.failure
    if failure is None:
        log.info("edge %s: %s, draining", settings.pod_name, got[0].name if got else "stop")
    await edge.drain()
    if failure is not None:
        raise BrokerError(f"edge {settings.pod_name} stopped: {failure}")
