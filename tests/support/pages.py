"""Local page server for tests and benches: a small, fast HTTP/1.1 server on bare asyncio.

Why not aiohttp.web (the first idea) or Tornado: benches compare HTTP clients that reach ~10,000
pages/s on two cores, so the fixture server must not be the ceiling. This protocol-level server
(keep-alive, one write per response) costs ~60 µs of CPU per request, 1 KB or 47 KB pages alike -
about 15,000 requests/s per core (measured 2026-11-29 with aiohttp at 64 in flight).

Routes (GET or HEAD; request bodies are read and ignored; an unknown path answers 404):

=================================  ===========================================================
``/page/<n>[?kb=K]``               200 ``text/html`` with ``<title>page n</title>`` and the text
                                   ``page n `` (trailing space), padded to exactly K KiB
                                   (default 2)
``/article/<n>[?kb=K&charset=C]``  200 a realistic article page (``tests/support/articles.py``),
                                   about K KiB (default 50), encoded in C (default utf-8)
                                   and declared so in ``Content-Type`` and ``<meta>``
``/json``                          200 ``application/json`` object with a URL in it
``/slow?ms=M``                     200 small page after M milliseconds (default 200)
``/status/<code>[?retry_after=V]`` that status with a small body; ``Retry-After: V`` when given
                                   (seconds or an HTTP-date, URL-encoded)
``/redirect/<n>[?to=URL&code=C]``  302 (or C) with a relative ``Location``: ``/redirect/n`` ->
                                   ``/redirect/n-1`` -> ... -> ``/redirect/0`` -> ``/page/0`` (or
                                   URL), so ``/redirect/3`` ends at ``/page/0`` after 4 redirects.
                                   Relative, so a client that came as ``localhost`` stays there
``/flaky/<key>?fail=F``            503 for the first F requests per key (default 2), then 200
``/encoded/C?n=N``                 page N with ``Content-Encoding: C`` (gzip, deflate, br, zstd);
                                   ``?mb=M`` instead: M MiB of zeros so encoded (a bomb)
``/big?bytes=N``                   200 ``text/html`` of exactly N bytes of ``x``, streamed with
                                   flow control (any N)
``/hang``                          never answers; holds the connection until the client leaves
``/gate/<key>``                    waits until ``/release/<key>`` has been requested, then 200
``/release/<key>``                 opens gate ``key`` for good (earlier and later waiters pass)
``/script/<key>``                  200 ``text/html`` whose scripts log ``xss-ran <key>``, set
                                   ``window.__xss``, the title and a cookie, and request
                                   ``/beacon/<key>`` (so a test sees whether they ran)
``/beacon/<key>``                  200; its hit count says a ``/script`` page's script ran
``/headers``                       200 JSON object of the request headers received (lower-case)
``/multi-header``                  200 with two ``X-Multi`` and two ``Set-Cookie`` headers
``/big-headers?kb=K&lines=N``      200 with K KiB of response headers (default 200) in N lines
                                   (default 1: one huge line; N > 1 splits them evenly)
``/digest-headers[?key=K&fail=F]``  200 JSON: SHA-256 (hex) of each request header's value, so a
                                   test can see a secret header arrived without the page (and
                                   hence the bodies topic) ever holding it; with ``key``, 503
                                   for the first F requests of that key
``/count``                         200 JSON: per route (``/page``, ``/slow``, ``/hang``...)
                                   ``concurrent``, ``max_concurrent`` and ``total``
``/reset``                         forgets totals, maxima and flaky counts (200)
``/stats``                         200 JSON: ``requests``, ``in_flight``, ``max_in_flight``,
                                   ``hits`` (count per path, query excluded)
=================================  ===========================================================

In-process use (tests; same event loop as the code under test)::

    runner, base_url = await start()           # runner.cleanup() stops it, like an aiohttp runner
    async with PageServer() as pages:          # or the object itself
        url = pages.url + "/page/1"            # http://127.0.0.1:<port>
        await pages.wait_until(lambda: pages.hits["/gate/a"] == 2)
        pages.release("a")

Besides ``/count`` and ``/stats``, the object exposes ``hits``, ``in_flight``, ``max_in_flight``,
``routes`` and ``events`` (an ordered log of ``("arrive" | "done", path)``), so tests assert
ordering from what the server saw instead of from wall-clock thresholds.

As a process (integration tests, benches)::

    python -m tests.support.pages --port 0     # prints "pages listening on <PORT>", then serves
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import functools
import gzip
import hashlib
import json
import zlib
from collections.abc import Callable, Coroutine
from typing import Any
from urllib.parse import parse_qs, unquote, urlencode

MAX_HEAD = 64 * 1024
_BLOCK = 64 * 1024
_REASONS = {
    200: "OK", 301: "Moved Permanently", 302: "Found", 303: "See Other", 307: "Temporary Redirect",
    308: "Permanent Redirect", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden",
    404: "Not Found", 405: "Method Not Allowed", 408: "Request Timeout", 410: "Gone",
    429: "Too Many Requests", 431: "Request Header Fields Too Large", 500: "Internal Server Error",
    502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout",
}

Handler = Coroutine[Any, Any, None]
_UNCOUNTED = frozenset({"/count", "/reset", "/stats"})  # observing must not change what is observed


class _RouteCount:
    __slots__ = ("concurrent", "max_concurrent", "total")

    def __init__(self) -> None:
        self.concurrent = 0
        self.max_concurrent = 0
        self.total = 0


def _route_of(path: str) -> str:
    """``/page/7`` -> ``/page``: the unit the concurrency counters are kept per."""
    return "/" + path.split("/", 2)[1] if path.startswith("/") else path


def response(
    status: int,
    body: bytes = b"",
    *,
    content_type: bytes = b"text/html; charset=utf-8",
    headers: tuple[tuple[str, str], ...] = (),
    length: int | None = None,
) -> bytes:
    """Status line and headers (and the body, when given) as one buffer: one write per response."""
    reason = _REASONS.get(status, "Status")
    extra = "".join(f"{k}: {v}\r\n" for k, v in headers).encode("latin-1")
    if status < 200 or status in (204, 304):  # these never have a body (RFC 9110)
        return b"HTTP/1.1 %d %s\r\nServer: pages\r\n%s\r\n" % (status, reason.encode(), extra)
    size = len(body) if length is None else length
    return (
        b"HTTP/1.1 %d %s\r\nServer: pages\r\nContent-Type: %s\r\nContent-Length: %d\r\n%s\r\n"
        % (status, reason.encode(), content_type, size, extra)
    ) + body


DEFAULT_PAGE_KB = 2


def page_html(n: str, kb: int | None = None) -> bytes:
    """The HTML of ``/page/<n>``: names n twice (title, and ``page n `` in the text) so a test can
    tell pages apart, padded to exactly ``kb`` KiB so benches know the size they measure."""
    head = f"<!doctype html><html><head><title>page {n}</title></head><body><h1>page {n} </h1>"
    return head.encode() + _padding((DEFAULT_PAGE_KB if kb is None else kb) * 1024, len(head.encode()))


def script_html(key: str, host: str) -> bytes:
    """The HTML of ``/script/<key>``: a page whose scripts, wherever they run, leave traces a
    test can look for - a console line, a global, the title, a cookie, and a request for
    ``/beacon/<key>`` on this server (its hit count)."""
    return (
        "<!doctype html><html><head><title>script page</title>"
        f"<script>console.log('xss-ran {key}'); window.__xss = '{key}';"
        f"document.title = 'pwned {key}'; document.cookie = 'xss={key}; path=/';"
        f"try {{ parent.document.title = 'pwned {key}'; }} catch (e) {{}}"
        f"new Image().src = 'http://{host}/beacon/{key}';</script></head>"
        f"<body><h1>script page {key}</h1><img src=x onerror=\"window.__xss2 = '{key}'\"></body></html>"
    ).encode()


def _zstd(data: bytes) -> bytes:
    import zstandard

    return zstandard.ZstdCompressor(level=10).compress(data)


def _brotli(data: bytes) -> bytes:
    import brotli

    return bytes(brotli.compress(data, quality=5))


_ENCODERS = {"gzip": gzip.compress, "deflate": zlib.compress, "br": _brotli, "zstd": _zstd}


@functools.lru_cache(maxsize=16)
def _bomb(coding: str, mb: int) -> bytes:
    """``mb`` MiB of zeros, compressed: a few KB on the wire (a decompression bomb)."""
    return _ENCODERS[coding](bytes(mb * 1024 * 1024))


@functools.lru_cache(maxsize=256)
def _padding(target: int, used: int) -> bytes:
    tail = "</body></html>\n"
    para = "<p>lorem ipsum dolor sit amet, consectetur adipiscing elit.</p>\n"
    filler = max(0, target - used - len(tail))
    return ((para * (filler // len(para) + 1))[:filler] + tail).encode()


class PageServer:
    """The server; see the module docstring for routes. Not thread-safe: one event loop."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port
        self.requests = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.hits: collections.Counter[str] = collections.Counter()
        self.events: collections.deque[tuple[str, str]] = collections.deque(maxlen=100_000)
        self.routes: dict[str, _RouteCount] = {}
        self._flaky: collections.Counter[str] = collections.Counter()
        self._gates: dict[str, asyncio.Event] = {}
        self._changed = asyncio.Event()
        self._server: asyncio.Server | None = None
        self._connections: set[_Connection] = set()

    # --- lifecycle -------------------------------------------------------------------------

    async def start(self) -> PageServer:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _Connection(self), self.host, self.port, backlog=1024, reuse_address=True
        )
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            for conn in list(self._connections):
                conn.abort()
            await self._server.wait_closed()

    async def cleanup(self) -> None:
        """Same as :meth:`close`; the name an ``aiohttp.web.AppRunner`` uses."""
        await self.close()

    async def __aenter__(self) -> PageServer:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def url(self) -> str:
        """Base URL without a trailing slash, e.g. ``http://127.0.0.1:8080``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    # --- observation -----------------------------------------------------------------------

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait_until(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
        """Wait until ``predicate()`` holds, re-checking whenever the server's state changes."""
        async with asyncio.timeout(timeout):
            while not predicate():
                await self._changed.wait()

    def release(self, key: str) -> None:
        """Open gate ``key`` (same as requesting ``/release/<key>``)."""
        self._gate(key).set()
        self._notify()

    def _gate(self, key: str) -> asyncio.Event:
        gate = self._gates.get(key)
        if gate is None:
            gate = self._gates[key] = asyncio.Event()
        return gate

    def count(self) -> dict[str, dict[str, int]]:
        """Per route: requests being served now, the most at once, and how many in all."""
        return {
            route: {"concurrent": c.concurrent, "max_concurrent": c.max_concurrent, "total": c.total}
            for route, c in sorted(self.routes.items())
        }

    def reset(self) -> None:
        """Forget history (totals, maxima, hits, events, flaky counts); requests being served
        stay counted as concurrent, so the counters never go negative when they finish."""
        self.requests = 0
        self.max_in_flight = self.in_flight
        self.hits.clear()
        self.events.clear()
        self._flaky.clear()
        for c in self.routes.values():
            c.total = 0
            c.max_concurrent = c.concurrent
        self._notify()

    def _arrive(self, path: str) -> None:
        self.requests += 1
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        self.hits[path] += 1
        self.events.append(("arrive", path))
        route = _route_of(path)
        if route not in _UNCOUNTED:
            c = self.routes.get(route)
            if c is None:
                c = self.routes[route] = _RouteCount()
            c.concurrent += 1
            c.total += 1
            c.max_concurrent = max(c.max_concurrent, c.concurrent)
        self._notify()

    def _done(self, path: str) -> None:
        self.in_flight -= 1
        self.events.append(("done", path))
        c = self.routes.get(_route_of(path))
        if c is not None:
            c.concurrent -= 1
        self._notify()

    # --- routing ---------------------------------------------------------------------------

    def route(
        self, conn: _Connection, path: str, query: dict[str, list[str]], head: bytes
    ) -> bytes | Handler:
        """A ready response, or a coroutine that writes one (for routes that wait)."""
        parts = path.split("/", 3)
        name = parts[1] if len(parts) > 1 else ""
        arg = parts[2] if len(parts) > 2 else ""

        def q(key: str, default: str) -> str:
            return query.get(key, [default])[0]

        if name == "page" and arg:
            return response(200, page_html(arg, int(q("kb", "0")) or None))
        if name == "article" and arg.isdigit():
            from .articles import article_html

            charset = q("charset", "utf-8")
            body = article_html(int(arg), kb=int(q("kb", "50")), charset=charset).encode(charset)
            return response(200, body, content_type=f"text/html; charset={charset}".encode())
        if name == "json":
            data = {"see": "/page/1", "title": "not html"}
            return response(200, json.dumps(data).encode(), content_type=b"application/json")
        if name == "status" and arg.isdigit():
            code = int(arg)
            extra = (("Retry-After", q("retry_after", "")),) if "retry_after" in query else ()
            return response(code, f"status {code}\n".encode(), content_type=b"text/plain", headers=extra)
        if name == "redirect" and arg.lstrip("-").isdigit():
            n = int(arg)
            carry = urlencode([(k, v) for k, vs in query.items() for v in vs if k in ("to", "code")])
            nxt = f"/redirect/{n - 1}" + (f"?{carry}" if carry else "")
            target = nxt if n > 0 else q("to", "/page/0")
            return response(int(q("code", "302")), b"", headers=(("Location", target),))
        if name == "flaky" and arg:
            self._flaky[arg] += 1
            if self._flaky[arg] <= int(q("fail", "2")):
                return response(503, b"try again\n", content_type=b"text/plain")
            return response(200, page_html(f"flaky {arg}"))
        if name == "encoded" and arg in _ENCODERS:
            # /encoded/<coding>?n=N&mb=M: page N (or, with mb, M MiB of zeros: a bomb), compressed
            mb = int(q("mb", "0"))
            body = _bomb(arg, mb) if mb else _ENCODERS[arg](page_html(q("n", "0")))
            return response(200, body, headers=(("Content-Encoding", arg),))
        if name == "big":
            return self._big(conn, int(q("bytes", "1048576")))
        if name == "slow":
            return self._slow(conn, float(q("ms", "200")))
        if name == "hang":
            return conn.closed_wait()
        if name == "gate" and arg:
            return self._gated(conn, arg)
        if name == "release" and arg:
            self.release(arg)
            return response(200, b"released\n", content_type=b"text/plain")
        if name == "script" and arg:
            return response(200, script_html(arg, _parse_headers(head).get("host", self.host)))
        if name == "beacon" and arg:
            return response(200, b"seen\n", content_type=b"text/plain")
        if name == "headers":
            return response(200, json.dumps(_parse_headers(head)).encode(), content_type=b"application/json")
        if name == "big-headers":
            total, lines = int(q("kb", "200")) * 1024, max(1, int(q("lines", "1")))
            big = tuple((f"X-Big-{i}", "a" * (total // lines)) for i in range(lines))
            return response(200, b"big headers\n", content_type=b"text/plain", headers=big)
        if name == "digest-headers":
            # ?key=K&fail=F: 503 for the first F requests of key K, as /flaky does
            key = q("key", "")
            if key:
                self._flaky[f"digest/{key}"] += 1
                if self._flaky[f"digest/{key}"] <= int(q("fail", "0")):
                    return response(503, b"try again\n", content_type=b"text/plain")
            digests = {k: hashlib.sha256(v.encode("latin-1")).hexdigest()
                       for k, v in _parse_headers(head).items()}
            return response(200, json.dumps(digests).encode(), content_type=b"application/json")
        if name == "multi-header":
            multi = (("X-Multi", "a"), ("X-Multi", "b"), ("Set-Cookie", "a=1"), ("Set-Cookie", "b=2"))
            return response(200, b"multi\n", content_type=b"text/plain", headers=multi)
        if name == "count":
            return response(200, json.dumps(self.count()).encode(), content_type=b"application/json")
        if name == "reset":
            self.reset()
            return response(200, b"reset\n", content_type=b"text/plain")
        if name == "stats":
            stats = {"requests": self.requests, "in_flight": self.in_flight,
                     "max_in_flight": self.max_in_flight, "hits": dict(self.hits)}
            return response(200, json.dumps(stats).encode(), content_type=b"application/json")
        return response(404, b"not found\n", content_type=b"text/plain")

    async def _slow(self, conn: _Connection, ms: float) -> None:
        await asyncio.sleep(ms / 1000)
        conn.write(response(200, page_html("slow")))

    async def _gated(self, conn: _Connection, key: str) -> None:
        await self._gate(key).wait()
        conn.write(response(200, page_html(f"gate {key}")))

    async def _big(self, conn: _Connection, size: int) -> None:
        conn.write(response(200, length=size))
        block = b"x" * _BLOCK
        left = size
        while left > 0 and not conn.is_closing():
            chunk = block if left >= _BLOCK else block[:left]
            conn.write(chunk)
            left -= len(chunk)
            await conn.drain()


def _parse_headers(head: bytes) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        out[name.strip().lower().decode("latin-1")] = value.strip().decode("latin-1")
    return out


class _Connection(asyncio.Protocol):
    """One client connection: parses requests in order, one at a time (HTTP/1.1 keep-alive)."""

    def __init__(self, server: PageServer) -> None:
        self._server = server
        self._buf = bytearray()
        self._transport: asyncio.Transport | None = None
        self._task: asyncio.Task[None] | None = None
        self._closed = asyncio.get_running_loop().create_future()
        self._writable = asyncio.Event()
        self._writable.set()

    # --- asyncio.Protocol ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        self._server._connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._server._connections.discard(self)
        if not self._closed.done():
            self._closed.set_result(None)
        self._writable.set()
        if self._task is not None:
            self._task.cancel()

    def pause_writing(self) -> None:
        self._writable.clear()

    def resume_writing(self) -> None:
        self._writable.set()

    def data_received(self, data: bytes) -> None:
        self._buf += data
        if self._task is None:
            self._process()

    # --- helpers for handlers --------------------------------------------------------------

    def write(self, data: bytes) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(data)

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()

    def is_closing(self) -> bool:
        return self._transport is None or self._transport.is_closing()

    async def drain(self) -> None:
        await self._writable.wait()

    async def closed_wait(self) -> None:
        await self._closed

    # --- request loop ----------------------------------------------------------------------

    def _process(self) -> None:
        transport = self._transport
        assert transport is not None
        while not transport.is_closing():
            end = self._buf.find(b"\r\n\r\n")
            if end < 0:
                if len(self._buf) > MAX_HEAD:
                    transport.write(response(431, b""))
                    transport.close()
                return
            head = bytes(self._buf[:end])
            lowered = head.lower()
            body_len = 0
            if b"\r\ncontent-length:" in lowered:
                value = lowered.split(b"\r\ncontent-length:", 1)[1].split(b"\r\n", 1)[0]
                body_len = int(value.strip() or b"0")
            if len(self._buf) < end + 4 + body_len:
                return
            del self._buf[: end + 4 + body_len]
            request_line = head.split(b"\r\n", 1)[0].decode("latin-1")
            try:
                method, target, version = request_line.split(" ", 2)
            except ValueError:
                transport.write(response(400, b""))
                transport.close()
                return
            keep_alive = (b"\r\nconnection: close" not in lowered) and (
                version == "HTTP/1.1" or b"\r\nconnection: keep-alive" in lowered
            )
            raw_path, _, raw_query = target.partition("?")
            path = unquote(raw_path)
            self._server._arrive(path)
            if method not in ("GET", "HEAD"):
                result: bytes | Handler = response(405, b"")
            else:
                try:
                    result = self._server.route(self, path, parse_qs(raw_query), head)
                except ValueError:
                    result = response(400, b"bad request\n", content_type=b"text/plain")
            if isinstance(result, bytes):
                if method == "HEAD":
                    result = result[: result.find(b"\r\n\r\n") + 4]
                transport.write(result)
                self._server._done(path)
                if not keep_alive:
                    transport.close()
                    return
                continue
            self._task = asyncio.get_running_loop().create_task(self._run(result, path, keep_alive))
            return

    async def _run(self, handler: Handler, path: str, keep_alive: bool) -> None:
        try:
            await handler
        except asyncio.CancelledError:
            pass
        finally:
            self._server._done(path)
            self._task = None
        if self._transport is None or self._transport.is_closing():
            return
        if not keep_alive:
            self._transport.close()
        elif self._buf:
            self._process()


async def start(port: int = 0, host: str = "127.0.0.1") -> tuple[PageServer, str]:
    """Start a page server in the running loop; return it (``await it.cleanup()`` stops it) and
    its base URL, ``http://127.0.0.1:<port>``."""
    server = await PageServer(host, port).start()
    return server, server.url


async def _serve(host: str, port: int) -> None:
    server = await PageServer(host, port).start()
    print(f"pages listening on {server.port}", flush=True)
    await asyncio.Event().wait()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Local page server for tests and benches.")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0, help="0 picks a free port (printed)")
    args = ap.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(args.host, args.port))


if __name__ == "__main__":
    main()
