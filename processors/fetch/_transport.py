"""An httpx transport over aiohttp: the httpx API without httpx's slow connection pool.

Measured in bench/http_transports.py: httpx's own pool loses throughput as concurrency rises,
aiohttp's does not. ``httpx-aiohttp``'s ``AiohttpTransport`` has the same idea, but a scraper
needs three things it lacks, so this module is a small transport of its own:

* the proxy is chosen **per request** (rotation and per-job overrides share one pool), passed in
  the request extension ``"scrapeledger.route"`` instead of being fixed per transport;
* two connection pools: a *guarded* one whose resolver is the SSRF guard (direct requests and
  per-job proxies) and an *open* one for the operator's own proxies;
* exact error mapping: ``httpx-aiohttp`` 0.2.0 reports a refused connection as
  ``httpx.ConnectTimeout`` (its first matching rule wins); here every aiohttp error becomes the
  closest httpx error with the original kept as ``__cause__`` for :func:`classify_exception`.
"""

from __future__ import annotations

import base64
import contextlib
import ssl
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import httpx
import yarl
from aiohttp.http_exceptions import BadHttpMessage, LineTooLong

from ._errors import Rejection
from ._guard import AddressGuard, GuardedResolver

ROUTE = "scrapeledger.route"
"""Request extension naming the route (:class:`Route`) a request takes."""


@dataclass(frozen=True)
class Route:
    """How a request leaves: through ``proxy`` (or directly), on the guarded pool or not."""

    proxy: str | None = None
    guarded: bool = True


_DIRECT = Route()

# first match wins, so subclasses come before their bases
_ERRORS: tuple[tuple[type[BaseException], type[httpx.TransportError]], ...] = (
    (aiohttp.ClientProxyConnectionError, httpx.ProxyError),
    (aiohttp.ClientHttpProxyError, httpx.ProxyError),
    (aiohttp.ConnectionTimeoutError, httpx.ConnectTimeout),
    (aiohttp.SocketTimeoutError, httpx.ReadTimeout),
    (aiohttp.ServerTimeoutError, httpx.ReadTimeout),
    (aiohttp.ClientConnectorError, httpx.ConnectError),
    (aiohttp.ServerDisconnectedError, httpx.RemoteProtocolError),
    (aiohttp.ClientPayloadError, httpx.ReadError),
    (aiohttp.ClientResponseError, httpx.RemoteProtocolError),
    (aiohttp.InvalidURL, httpx.UnsupportedProtocol),
    (aiohttp.ClientOSError, httpx.NetworkError),
    (aiohttp.ClientError, httpx.TransportError),
    (TimeoutError, httpx.TimeoutException),
    (OSError, httpx.NetworkError),
)


@contextlib.contextmanager
def _mapped(request: httpx.Request) -> Iterator[None]:
    try:
        yield
    except Exception as exc:
        for source, target in _ERRORS:
            if isinstance(exc, source):
                raise target(f"{type(exc).__name__}: {exc}", request=request) from exc
        raise  # not a transport error (e.g. the guard's Rejection): let it through unchanged


DEFAULT_MAX_HEADER_BYTES = 64 * 1024


def _headers_too_large(exc: BaseException) -> bool:
    """aiohttp's refusal of a response head: a header line over 8190 bytes or over 128 headers."""
    current: BaseException | None = exc
    for _ in range(8):
        if current is None:
            return False
        if isinstance(current, LineTooLong) or (
            isinstance(current, BadHttpMessage) and "Too many headers" in str(current.message)
        ):
            return True
        current = current.__cause__ or current.__context__
    return False


def _header_bytes(raw: tuple[tuple[bytes, bytes], ...]) -> int:
    return sum(len(name) + len(value) + 4 for name, value in raw)  # "name: value\r\n"


class _ResponseStream(httpx.AsyncByteStream):
    """The body as it arrives; closing early drops the connection instead of draining it."""

    def __init__(self, response: aiohttp.ClientResponse, request: httpx.Request) -> None:
        self._response = response
        self._request = request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with _mapped(self._request):
            async for chunk in self._response.content.iter_any():
                yield chunk

    async def aclose(self) -> None:
        self._response.release()


class AiohttpTransport(httpx.AsyncBaseTransport):
    """Sends httpx requests with aiohttp. Create it inside the event loop that will use it."""

    def __init__(
        self, guard: AddressGuard, *, keepalive_s: float = 15.0,
        max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES,
    ) -> None:
        """``max_header_bytes`` bounds a response's header block: a page that sends more is
        refused for good (``headers_too_large``), since the same page would do it again."""
        self._guard = guard
        self.max_header_bytes = max_header_bytes
        self._keepalive_s = keepalive_s
        self._ssl = ssl.create_default_context()
        self._sessions: dict[bool, aiohttp.ClientSession] = {}

    def _session(self, guarded: bool) -> aiohttp.ClientSession:
        guarded = guarded and not self._guard.allow_private
        session = self._sessions.get(guarded)
        if session is None or session.closed:
            resolver = GuardedResolver(self._guard, check=guarded)
            connector = aiohttp.TCPConnector(
                limit=0,  # the fetcher's own global and per-host slots bound the connections
                resolver=resolver,
                ssl=self._ssl,
                keepalive_timeout=self._keepalive_s,
            )
            session = aiohttp.ClientSession(
                connector=connector,
                cookie_jar=aiohttp.DummyCookieJar(),  # one job's cookies never reach another
                # the fetcher decodes (_decoding.bounded_decoder), so the cap counts decoded bytes
                auto_decompress=False,
                trust_env=False,  # proxies come from settings and jobs, not the environment
                timeout=aiohttp.ClientTimeout(total=None),
            )
            self._sessions[guarded] = session
        return session

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        route = request.extensions.get(ROUTE, _DIRECT)
        assert isinstance(route, Route)
        headers = list(request.headers.multi_items())
        proxy_url, proxy_headers = _proxy_for(route, request, headers)
        response = await self._send(request, headers, route, proxy_url, proxy_headers)
        size = _header_bytes(response.raw_headers)
        if size > self.max_header_bytes:
            response.close()  # the body is never read: the connection cannot be reused
            raise Rejection(
                "headers_too_large",
                f"the response's headers are {size} bytes; the limit is {self.max_header_bytes}",
            )
        return _as_httpx(response, request)

    async def _send(
        self,
        request: httpx.Request,
        headers: list[tuple[str, str]],
        route: Route,
        proxy_url: yarl.URL | None,
        proxy_headers: dict[str, str] | None,
    ) -> aiohttp.ClientResponse:
        """The request sent and the response head read, aiohttp's errors mapped to httpx's."""
        timeout: dict[str, float | None] = request.extensions.get("timeout", {})
        session = self._session(route.guarded)
        try:
            with _mapped(request):
                return await session.request(
                    request.method,
                    yarl.URL(str(request.url), encoded=True),
                    headers=headers,
                    data=request.content or None,
                    allow_redirects=False,
                    proxy=proxy_url,
                    proxy_headers=proxy_headers,
                    timeout=aiohttp.ClientTimeout(
                        total=None, sock_connect=timeout.get("connect"), sock_read=timeout.get("read")
                    ),
                )
        except httpx.RemoteProtocolError as exc:
            if _headers_too_large(exc):
                raise Rejection(
                    "headers_too_large", "the response's header block is over the limit "
                    "(a line over 8190 bytes or more than 128 headers)",
                ) from exc
            raise

    async def aclose(self) -> None:
        sessions, self._sessions = list(self._sessions.values()), {}
        for session in sessions:
            await session.close()


def _proxy_for(
    route: Route, request: httpx.Request, headers: list[tuple[str, str]]
) -> tuple[yarl.URL | None, dict[str, str] | None]:
    """The proxy URL aiohttp connects to (user info removed) and the CONNECT headers.

    aiohttp sends ``proxy_headers`` only in CONNECT (https targets); a plain http request goes to
    the proxy as is, so there the ``Proxy-Authorization`` header rides on the request itself
    (appended to ``headers``)."""
    if route.proxy is None:
        return None, None
    proxy_url = yarl.URL(route.proxy)
    if proxy_url.user is None:
        return proxy_url, None
    auth = f"{proxy_url.user}:{proxy_url.password or ''}".encode()
    value = "Basic " + base64.b64encode(auth).decode("ascii")
    proxy_url = proxy_url.with_user(None)
    if request.url.scheme == "https":
        return proxy_url, {"Proxy-Authorization": value}
    headers.append(("Proxy-Authorization", value))
    return proxy_url, None


def _as_httpx(response: aiohttp.ClientResponse, request: httpx.Request) -> httpx.Response:
    """aiohttp's response head as an httpx response whose body streams from the connection."""
    extensions: dict[str, Any] = {"http_version": b"HTTP/1.1"}
    if response.reason:
        extensions["reason_phrase"] = response.reason.encode("latin-1", "replace")
    return httpx.Response(
        status_code=response.status,
        headers=response.raw_headers,
        stream=_ResponseStream(response, request),
        request=request,
        extensions=extensions,
    )
