"""A stand-in edge for client and CLI unit tests: the real wire protocol, no broker.

Frames are parsed by the edge's own :func:`ws_edge.parse_frame` (so a bad frame gets the same
``error`` frame, ``ref`` echoed, as from the real edge) and answered from the URL's path:

==============  ==========================================================
``/ok/<n>``     ``succeeded``, HTML ``page n``
``/fail``       ``failed`` (``http_404``)
``/reject``     ``rejected`` (``blocked_address``)
``/dead``       ``dead_lettered`` (``timeout``)
``/expire``     ``expired``
==============  ==========================================================

Results are held until ``hold`` jobs are outstanding (default 1: answer at once), then sent in
*reverse* order of arrival, so a client that prints in completion order is caught. Every parsed
request is kept in ``requests``. Runs on its own event loop in a thread (``with FakeEdge() as
edge``), so a CLI can be invoked in the test's thread or as a subprocess.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

import orjson
import tornado.httpserver
import tornado.web
import tornado.websocket
from tornado.testing import bind_unused_port

from scrapeledger.errors import ProtocolError
from ws_edge import JobRequest, ResumeRequest, parse_frame
from ws_edge._protocol import accepted_frame, error_frame, unknown_job_frame

_FAILURES = {
    "fail": ("failed", "http_404", "HTTP 404"),
    "reject": ("rejected", "blocked_address", "not a public address"),
    "dead": ("dead_lettered", "timeout", "timed out 3 times"),
    "expire": ("expired", "expired", "job expired"),
}


class _Socket(tornado.websocket.WebSocketHandler):
    def initialize(self, edge: FakeEdge) -> None:
        self.edge = edge
        self.held: list[bytes] = []

    def on_message(self, message: str | bytes) -> None:
        try:
            req = parse_frame(message, max_bytes=1024 * 1024)
        except ProtocolError as exc:
            self.write_message(error_frame(exc.code, exc.message, exc.ref).decode())
            return
        self.edge.requests.append(req)
        if isinstance(req, ResumeRequest):
            self.write_message(unknown_job_frame(req.job_id, req.ref).decode())
            return
        job_id = f"job{next(self.edge.ids):04d}"
        self.write_message(accepted_frame(job_id, req.ref).decode())
        self.held.append(orjson.dumps(self.edge.result(job_id, req)))
        self.edge.max_outstanding = max(self.edge.max_outstanding, len(self.held))
        if len(self.held) >= self.edge.hold:
            for frame in reversed(self.held):
                self.write_message(frame.decode())
            self.held.clear()


class FakeEdge:
    def __init__(self, hold: int = 1) -> None:
        self.hold = hold
        self.requests: list[JobRequest | ResumeRequest] = []
        self.max_outstanding = 0
        self.ids = itertools.count(1)
        self.url = ""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread: threading.Thread | None = None

    @staticmethod
    def result(job_id: str, req: JobRequest) -> dict[str, Any]:
        path = urlsplit(req.url).path.strip("/").split("/")
        frame: dict[str, Any] = {"event": "result", "job_id": job_id, "url": req.url, "attempts": 1}
        if req.ref is not None:
            frame["ref"] = req.ref
        if path[0] in _FAILURES:
            status, code, message = _FAILURES[path[0]]
            return {**frame, "status": status, "error": {"code": code, "message": message}}
        n = path[1] if len(path) > 1 else "0"
        html = f"<html><title>page {n}</title>page {n} </html>"
        outputs = {"html": html, "markdown": f"page {n}", "text": f"page {n}", "links": [],
                   "metadata": {"title": f"page {n}", "status": 200}}
        return {
            **frame, "status": "succeeded", "final_url": req.url, "http_status": 200,
            "headers": {"content-type": "text/html"}, "elapsed_ms": 1.5, "truncated": False,
            **{f: outputs[f] for f in req.formats if f in outputs},
        }

    def __enter__(self) -> FakeEdge:
        ready = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._serve(ready)), daemon=True)
        self._thread.start()
        if not ready.wait(30):
            raise RuntimeError("fake edge did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._loop is not None and self._stop is not None and self._thread is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)

    async def _serve(self, ready: threading.Event) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        sock, port = bind_unused_port()
        server = tornado.httpserver.HTTPServer(tornado.web.Application([("/", _Socket, {"edge": self})]))
        server.add_sockets([sock])
        self.url = f"ws://127.0.0.1:{port}/"
        ready.set()
        await self._stop.wait()
        server.stop()
        await server.close_all_connections()


@contextmanager
def fake_edge(hold: int = 1) -> Iterator[FakeEdge]:
    with FakeEdge(hold) as edge:
        yield edge
