"""The Python client's connection handling, against in-process Tornado servers (no broker)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import threading
import warnings
from collections.abc import Callable

import orjson
import pytest
from tornado.httpserver import HTTPServer
from tornado.ioloop import IOLoop
from tornado.testing import bind_unused_port
from tornado.web import Application, RequestHandler
from tornado.websocket import WebSocketHandler

from scrapeledger.errors import ScrapeledgerError
from ws_edge import Client, JobSpec


class NotYet(RequestHandler):
    def get(self) -> None:  # a pod that answers HTTP but does not serve WebSockets (yet)
        self.set_status(503)


class Quiet(WebSocketHandler):
    def on_message(self, message: str | bytes) -> None:
        pass


async def serve(handler: type[RequestHandler]) -> tuple[HTTPServer, str]:
    return await serve_with(Application([("/", handler)]))


async def serve_with(app: Application) -> tuple[HTTPServer, str]:
    sock, port = bind_unused_port()
    server = HTTPServer(app)
    server.add_sockets([sock])
    return server, f"ws://127.0.0.1:{port}/"


def test_a_failed_websocket_handshake_moves_on_to_the_next_server() -> None:
    async def go() -> tuple[str, str]:
        bad, bad_url = await serve(NotYet)
        good, good_url = await serve(Quiet)
        try:
            async with Client([bad_url, good_url], connect_timeout=5) as client:
                return client.server, good_url
        finally:
            bad.stop()
            good.stop()
            await bad.close_all_connections()
            await good.close_all_connections()

    # the first answers 503 (a pod starting or draining), which used to end the client for good
    connected, good_url = asyncio.run(go())
    assert connected == good_url


def test_a_client_that_cannot_connect_anywhere_says_so() -> None:
    async def go() -> None:
        bad, bad_url = await serve(NotYet)
        try:
            async with Client([bad_url], connect_timeout=1, max_reconnect_s=0.5):
                pass
        finally:
            bad.stop()
            await bad.close_all_connections()

    with pytest.raises(ScrapeledgerError, match="cannot connect"):
        asyncio.run(go())


class SlowHandshake(Quiet):
    arrived: asyncio.Event

    async def get(self, *args: str, **kwargs: str) -> None:
        SlowHandshake.arrived.set()
        await asyncio.sleep(0.3)  # the pod is slow to accept: the handshake outlasts close()'s start
        await super().get(*args, **kwargs)


def test_close_during_a_reconnect_leaves_no_connection_open() -> None:
    async def go() -> None:
        SlowHandshake.arrived = asyncio.Event()
        fast, fast_url = await serve(Quiet)
        slow, slow_url = await serve(SlowHandshake)
        try:
            client = Client([fast_url, slow_url], connect_timeout=5)
            await client.__aenter__()
            await client.reconnect()  # the reader moves on to the slow server...
            await SlowHandshake.arrived.wait()  # ...and is inside its handshake when we close
            await client.close()
        finally:
            for server in (fast, slow):
                server.stop()
                await server.close_all_connections()

    assert _resource_warnings(lambda: asyncio.run(go())) == []


def test_a_result_that_arrives_before_result_is_called_is_kept() -> None:
    from tests.support.fake_edge import fake_edge

    async def go(url: str) -> tuple[dict[str, object], dict[str, object]]:
        async with Client(url) as client:
            first = await client.submit("http://p.test/ok/1")
            second = await client.submit("http://p.test/ok/2")  # the edge answers both now, 2 first
            late = await asyncio.wait_for(client.result(first), 10)  # so 2's result came before this
            early = await asyncio.wait_for(client.result(second), 10)
            return late, early

    with fake_edge(hold=2) as edge:
        late, early = asyncio.run(go(edge.url))
    # the old client had dropped 2's result and sent a resume for it instead
    assert (late["status"], early["status"]) == ("succeeded", "succeeded")
    assert early["url"] == "http://p.test/ok/2"


def test_a_request_nobody_answers_times_out() -> None:
    from ws_edge import ClientTimeoutError

    async def go() -> None:
        quiet, url = await serve(Quiet)
        try:
            async with Client(url, request_timeout=0.3) as client:
                await asyncio.wait_for(client.submit("http://p.test/ok/1"), 10)
        finally:
            quiet.stop()
            await quiet.close_all_connections()

    with pytest.raises(ClientTimeoutError, match=r"no answer to the submit within 0\.3 s"):
        asyncio.run(go())


def test_a_result_that_never_comes_times_out_naming_the_job() -> None:
    from tests.support.fake_edge import fake_edge
    from ws_edge import ClientTimeoutError

    async def go(url: str) -> None:
        async with Client(url, result_timeout=0.3) as client:
            await asyncio.wait_for(client.scrape("http://p.test/ok/1"), 10)

    with fake_edge(hold=100) as edge, pytest.raises(ClientTimeoutError, match="no result for job job0001"):
        asyncio.run(go(edge.url))


def test_the_first_connect_has_its_own_short_budget() -> None:
    import socket
    import time

    from ws_edge import EdgeUnreachableError

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        url = f"ws://127.0.0.1:{s.getsockname()[1]}/"  # nothing listens once this closes

    async def go() -> None:
        async with Client(url, first_connect_s=1.0):
            pass

    started = time.monotonic()
    with pytest.raises(EdgeUnreachableError, match="Connection refused"):
        asyncio.run(go())
    assert time.monotonic() - started < 10  # max_reconnect_s (120 s) is for reconnects only


class RateLimitsOnce(WebSocketHandler):
    """Answers a connection's first resume with ``rate_limited``, the next one with a result."""

    def open(self, *args: str, **kwargs: str) -> None:
        self.refused = False

    def on_message(self, message: str | bytes) -> None:
        frame = orjson.loads(message)
        if not self.refused:
            self.refused = True
            self.write_message(orjson.dumps({
                "event": "error", "code": "rate_limited", "message": "slow down",
                "ref": frame.get("ref"), "retry_after": 0.05,
            }).decode())
        else:
            self.write_message(orjson.dumps(
                {"event": "result", "job_id": frame["job_id"], "status": "succeeded"}).decode())


def test_a_rate_limited_resume_is_sent_again_after_retry_after() -> None:
    async def go() -> dict[str, object]:
        server, url = await serve(RateLimitsOnce)
        try:
            async with Client(url, connect_timeout=5) as client:
                return await asyncio.wait_for(client.resume("job-1"), 10)
        finally:
            server.stop()
            await server.close_all_connections()

    assert asyncio.run(go())["status"] == "succeeded"


class FailsFirstSubmit(WebSocketHandler):
    """Answers a connection's first job frame with ``submit_failed`` (as an edge whose Kafka
    write failed does), the next with ``accepted``; keeps every job frame it got."""

    frames: list[dict[str, object]] = []

    def on_message(self, message: str | bytes) -> None:
        frame = orjson.loads(message)
        FailsFirstSubmit.frames.append(frame)
        if len(FailsFirstSubmit.frames) == 1:
            self.write_message(orjson.dumps({"event": "error", "code": "submit_failed",
                                             "message": "retry", "ref": frame["ref"]}).decode())
        else:
            self.write_message(orjson.dumps(
                {"event": "accepted", "job_id": "job-1", "ref": frame["ref"]}).decode())


def test_a_submit_the_edge_could_not_record_is_sent_again_under_its_key() -> None:
    # the edge says "submit_failed ... retry" when Kafka is unusable (a node being replaced) or
    # the materializer's answer is late; the submit failed for good although resending is safe
    FailsFirstSubmit.frames = []

    async def go() -> str:
        server, url = await serve(FailsFirstSubmit)
        try:
            async with Client(url, connect_timeout=5) as client:
                return await asyncio.wait_for(client.submit("http://example.test/"), 10)
        finally:
            server.stop()
            await server.close_all_connections()

    assert asyncio.run(go()) == "job-1"
    first, again = FailsFirstSubmit.frames
    assert first == again  # the same frame: the same ref and idempotency key, so one job


class Echo(WebSocketHandler):
    """Answers every job frame with ``accepted`` and a result that echoes the frame received."""

    def on_message(self, message: str | bytes) -> None:
        frame = orjson.loads(message)
        job_id = f"job-{frame['ref']}"
        self.write_message(orjson.dumps({"event": "accepted", "job_id": job_id, "ref": frame["ref"]}))
        self.write_message(orjson.dumps({"event": "result", "job_id": job_id, "received": frame}))


def test_formats_are_sent_with_the_job_and_left_out_when_not_given() -> None:
    async def go() -> tuple[dict[str, object], dict[str, object]]:
        server, url = await serve(Echo)
        try:
            async with Client(url, connect_timeout=5) as client:
                asked = await client.scrape(JobSpec("https://a.example/", formats=("markdown", "links")))
                plain = await client.scrape("https://a.example/")
                return asked["received"], plain["received"]  # type: ignore[return-value]
        finally:
            server.stop()
            await server.close_all_connections()

    asked, plain = asyncio.run(go())
    # every job carries the idempotency key the client gave it (its resubmits name the same job)
    asked_message, plain_message = dict(asked["message"]), dict(plain["message"])  # type: ignore[call-overload]
    asked_key, plain_key = asked_message.pop("idempotency_key"), plain_message.pop("idempotency_key")
    assert asked_message == {"url": "https://a.example/", "formats": ["markdown", "links"]}
    assert plain_message == {"url": "https://a.example/"}
    assert asked_key != plain_key and len(plain_key) >= 22



class _Gated(Quiet):
    def initialize(self, pod: GatedPod) -> None:
        self.pod = pod

    async def get(self, *args: str, **kwargs: str) -> None:
        self.pod.arrived.set()
        await self.pod.release.wait()
        await super().get(*args, **kwargs)


class GatedPod:
    """A pod, on its own loop in a thread, that holds every WebSocket handshake until it stops.

    Its own loop, so nothing it does (answering a close frame, closing its side when a test's
    loop ends) can close the client's socket for it: what the client leaves open stays open.
    """

    def __init__(self) -> None:
        self.arrived = threading.Event()
        self.release = asyncio.Event()
        self.url = ""
        self._loop = asyncio.new_event_loop()
        self._server: HTTPServer | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    def __enter__(self) -> GatedPod:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    async def _start(self) -> None:
        self.release = asyncio.Event()
        self._server, self.url = await serve_with(Application([("/", _Gated, {"pod": self})]))

    async def _stop(self) -> None:
        assert self._server is not None
        self.release.set()
        self._server.stop()
        await self._server.close_all_connections()

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()


def _resource_warnings(run: Callable[[], None]) -> list[str]:
    """ResourceWarnings from ``run`` and from collecting what it left behind.

    Tornado keeps a closed asyncio loop's IOLoop (and every stream still registered with it) in
    ``IOLoop._ioloop_for_asyncio`` until the next IOLoop is made, so a leaked socket is only
    collected then: under pytest that is some *later* test's teardown, which then fails for a
    leak it did not make. Making one here collects the leak against the test that made it.
    """

    async def next_ioloop() -> None:
        IOLoop.current()

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run()
        asyncio.run(next_ioloop())
        gc.collect()
    return [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]


def test_close_after_a_first_connect_cancelled_mid_handshake_leaves_no_connection_open() -> None:
    async def go(url: str) -> None:
        client = Client(url, connect_timeout=1)
        entering = asyncio.ensure_future(client.__aenter__())  # as under asyncio.timeout(), ^C
        await asyncio.to_thread(pod.arrived.wait, 10)
        entering.cancel()  # while the handshake is in flight
        with contextlib.suppress(asyncio.CancelledError):
            await entering
        await client.close()

    with GatedPod() as pod:
        # the old close() knew nothing of the handshake the cancelled connect left in flight:
        # it returned at once, and the loop ended with that attempt's socket open
        leaks = _resource_warnings(lambda: asyncio.run(go(pod.url)))
    assert leaks == []


def test_close_that_outlasts_a_reconnect_handshake_leaves_no_connection_open() -> None:
    async def go(gated_url: str) -> None:
        fast, fast_url = await serve(Quiet)
        try:
            client = Client([fast_url, gated_url], connect_timeout=6)
            await client.__aenter__()
            await client.reconnect()  # the reader moves on to the gated pod...
            await asyncio.to_thread(pod.arrived.wait, 10)  # ...and is inside its handshake
            await client.close()  # gives the reader 5 s, then cancels it mid-handshake
        finally:
            fast.stop()
            await fast.close_all_connections()

    with GatedPod() as pod:
        # the old close() cancelled the reader after 5 s and returned, leaving the handshake's
        # socket to a done-callback that at best sent a close frame nobody waited for
        leaks = _resource_warnings(lambda: asyncio.run(go(pod.url)))
    assert leaks == []


class SubmitsRateLimitedOnce(WebSocketHandler):
    """Refuses a connection's first job frame with ``rate_limited`` (an API key's limits), then
    accepts the same frame and answers it; 401 without the expected API key."""

    def prepare(self) -> None:
        if self.request.headers.get("Authorization") != "Bearer right-key-0123456789":
            self.set_status(401)
            self.finish('{"error": {"code": "unauthorized", "message": "no"}}')

    def open(self, *args: str, **kwargs: str) -> None:
        self.frames: list[dict[str, object]] = []

    def on_message(self, message: str | bytes) -> None:
        frame = orjson.loads(message)
        self.frames.append(frame)
        if len(self.frames) == 1:
            self.write_message(orjson.dumps({"event": "error", "code": "rate_limited", "message": "slow",
                                             "ref": frame["ref"], "retry_after": 0.05}).decode())
            return
        assert frame == self.frames[0]  # the same frame: the same idempotency key
        self.write_message(orjson.dumps({"event": "accepted", "job_id": "j", "ref": frame["ref"]}).decode())
        self.write_message(orjson.dumps({"event": "result", "job_id": "j", "status": "succeeded"}).decode())


def test_a_rate_limited_submit_is_sent_again_and_a_refused_key_fails_at_once() -> None:
    from ws_edge import UnauthorizedError

    async def go() -> dict[str, object]:
        server, url = await serve(SubmitsRateLimitedOnce)
        try:
            with pytest.raises(UnauthorizedError, match="401"):
                async with Client(url, connect_timeout=5, first_connect_s=30, api_key="wrong-key-0123456789"):
                    pass
            async with Client(url, connect_timeout=5, api_key="right-key-0123456789") as client:
                return await asyncio.wait_for(client.scrape("https://a.example/"), 10)
        finally:
            server.stop()
            await server.close_all_connections()

    assert asyncio.run(go())["status"] == "succeeded"
