"""The fetcher: one GET per job, many at once, every outcome a value.

Threading: everything here belongs to one asyncio event loop. The scraper runs that loop in a
daemon thread and hands coroutines over with ``asyncio.run_coroutine_threadsafe``, so the
Fetcher builds its HTTP client lazily on the first :meth:`Fetcher.fetch`, inside the loop that
will use it (aiohttp sessions and asyncio primitives must not be created on one loop and used
on another). Constructing a Fetcher is therefore safe anywhere, even in the Quix Streams thread;
calling it from a second loop raises ``RuntimeError``.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Iterable, Sequence

import httpx

from scrapeledger.errors import ConfigError
from scrapeledger.settings import Settings

from ._classify import REDIRECT_STATUSES, classify
from ._compat import without_cookies
from ._decoding import bounded_decoder
from ._errors import Rejection
from ._guard import AddressGuard, Lookup, system_lookup
from ._limits import HostSlots
from ._models import FetchError, FetchOk, FetchRequest
from ._transport import ROUTE, AiohttpTransport, Route
from ._urls import parse_proxy, parse_url

MiB = 1024 * 1024

# request headers a job may not set: they belong to the connection, not to the page
_DROPPED_HEADERS = frozenset({
    "host", "content-length", "transfer-encoding", "connection", "keep-alive", "upgrade", "te",
    "trailer", "proxy-authorization", "proxy-connection",
})
# credentials that must not follow a redirect to another origin
_ORIGIN_BOUND_HEADERS = frozenset({"authorization", "cookie"})


class _Redirect(Exception):
    """Raised by a response hook to hand a redirect's ``Location`` back to :meth:`Fetcher._hop`,
    which returns it to :meth:`Fetcher._follow`."""

    def __init__(self, location: str) -> None:
        super().__init__(location)
        self.location = location


async def _stop_at_redirects(response: httpx.Response) -> None:
    """httpx builds the next request of every redirect even with ``follow_redirects=False``,
    and raises on a ``Location`` it cannot parse (``javascript:...``) before we see the
    response; redirects are followed by hand here, so they leave the client at this hook."""
    if response.status_code in REDIRECT_STATUSES and "location" in response.headers:
        raise _Redirect(response.headers["location"])


class Fetcher:
    """Fetches pages over the httpx API, bounded, guarded against SSRF, never raising on I/O.

    ``concurrency`` bounds requests in flight; ``per_host`` bounds them per host name, taken
    before a global slot so a slow site queues its own requests without starving others.
    ``timeout_s`` (or the request's own) covers the fetch from the moment its first request gets
    its slots - redirect hops, later slot waits and the body included - but not the queueing
    before that, which is the caller's backpressure, not the site's slowness.

    ``proxies`` are the operator's (trusted) proxies, rotated per request; a request's ``proxy``
    overrides them. ``allow_networks`` lists CIDR ranges reachable even with the guard on.
    ``lookup`` resolves host names (the system resolver unless injected). A response whose
    header block is over ``max_header_bytes`` is a permanent ``headers_too_large`` failure.
    """

    def __init__(
        self,
        *,
        allow_private: bool,
        proxies: Sequence[str] | None = None,
        concurrency: int = 64,
        per_host: int = 16,
        timeout_s: float = 20.0,
        max_redirects: int = 10,
        max_body_bytes: int = 5 * MiB,
        user_agent: str = "scrapeledger/0.1",
        allow_networks: Iterable[str] = (),
        lookup: Lookup = system_lookup,
        max_header_bytes: int = 64 * 1024,
    ) -> None:
        if concurrency < 1 or per_host < 1 or timeout_s <= 0 or max_redirects < 0 or max_body_bytes < 0:
            raise ConfigError("fetcher limits must be positive")
        try:
            normalized = tuple(str(parse_proxy(p)) for p in proxies or ())
        except Rejection as rej:
            raise ConfigError(f"SCRAPER_PROXIES: {rej.message}") from None
        self.guard = AddressGuard(allow_private=allow_private, allow_networks=allow_networks, lookup=lookup)
        self.proxies = normalized
        """The operator's proxies, in the one normalized form (:func:`parse_proxy`)."""
        self.concurrency = concurrency
        self.timeout_s = timeout_s
        self.max_redirects = max_redirects
        self.max_body_bytes = max_body_bytes
        self.max_header_bytes = max_header_bytes
        self.user_agent = user_agent
        self.host_slots = HostSlots(per_host)
        self._rotation = itertools.cycle(self.proxies) if self.proxies else None
        self._slots = asyncio.Semaphore(concurrency)
        self._client: httpx.AsyncClient | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False

    @classmethod
    def from_settings(cls, settings: Settings) -> Fetcher:
        """A fetcher configured by the ``SCRAPER_*`` settings."""
        return cls(
            allow_private=settings.scraper_allow_private,
            proxies=settings.scraper_proxies,
            concurrency=settings.scraper_concurrency,
            per_host=settings.scraper_per_host,
            timeout_s=settings.scraper_timeout_s,
            max_redirects=settings.scraper_max_redirects,
            max_body_bytes=settings.scraper_max_body_bytes,
            max_header_bytes=settings.scraper_max_header_bytes,
        )

    # --- lifecycle -------------------------------------------------------------------------

    def _client_for_this_loop(self) -> httpx.AsyncClient:
        loop = asyncio.get_running_loop()
        if self._closed:
            raise RuntimeError("Fetcher is closed")
        if self._client is None:
            self._loop = loop
            client = httpx.AsyncClient(
                transport=AiohttpTransport(self.guard, max_header_bytes=self.max_header_bytes),
                headers={"user-agent": self.user_agent},
                follow_redirects=False,  # followed by hand: every hop is validated and guarded
                event_hooks={"response": [_stop_at_redirects]},
                timeout=None,  # one deadline for the whole fetch, see fetch()
                trust_env=False,  # no proxies or .netrc credentials from the environment
            )
            self._client = without_cookies(client)  # one job's cookies never reach another's
        elif loop is not self._loop:
            raise RuntimeError("Fetcher is bound to another event loop; create one per loop")
        return self._client

    async def aclose(self) -> None:
        """Close the connection pools. Idempotent."""
        self._closed = True
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    async def __aenter__(self) -> Fetcher:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # --- fetching --------------------------------------------------------------------------

    async def fetch(self, req: FetchRequest) -> FetchOk | FetchError:
        """Fetch ``req.url``, following redirects. Returns a result for every network or HTTP
        outcome; raises only for misuse (closed fetcher, wrong loop) or cancellation."""
        client = self._client_for_this_loop()
        try:
            url = parse_url(req.url)
        except Rejection as rej:
            return FetchError(rej.code, rej.message, retryable=False)
        route = self._route(req.proxy)
        if isinstance(route, FetchError):
            return route
        timeout_s = req.timeout_s if req.timeout_s is not None and req.timeout_s > 0 else self.timeout_s
        try:
            async with asyncio.timeout(None) as deadline:
                return await self._follow(client, req, url, route, deadline, timeout_s)
        except TimeoutError:
            return FetchError("timeout", f"no complete response within {timeout_s:g}s", retryable=True)
        except Exception as exc:  # the boundary: whatever went wrong becomes a coded result
            return classify(exc)

    def _route(self, proxy: str | None) -> Route | FetchError:
        if proxy is not None:
            try:
                # normalized once: the form checked below is the form aiohttp connects to
                proxy = str(parse_proxy(proxy))
            except Rejection as rej:
                return FetchError(rej.code, rej.message, retryable=False)
            if proxy in self.proxies:
                return Route(proxy, guarded=False)
            # a job's own proxy is just another address it asks us to connect to: guarded
            return Route(proxy, guarded=True)
        if self._rotation is not None:
            return Route(next(self._rotation), guarded=False)
        return Route(None, guarded=True)

    async def _follow(
        self,
        client: httpx.AsyncClient,
        req: FetchRequest,
        url: httpx.URL,
        route: Route,
        deadline: asyncio.Timeout,
        timeout_s: float,
    ) -> FetchOk | FetchError:
        """Send ``req`` and follow its redirects by hand: each hop is parsed, guarded and sent
        under its host's and the global slots, and credentials never leave their origin."""
        headers = {k.lower(): v for k, v in req.headers.items() if k.lower() not in _DROPPED_HEADERS}
        clock = _FetchClock(deadline, timeout_s)
        redirects = 0
        while True:
            outcome = await self._hop(client, req, url, route, headers, clock, redirects)
            if not isinstance(outcome, _Redirect):
                return outcome
            if redirects >= self.max_redirects:
                return FetchError(
                    "too_many_redirects", f"more than {self.max_redirects} redirects", retryable=False
                )
            next_url = _redirect_target(url, outcome.location)
            if isinstance(next_url, FetchError):
                return next_url
            if (next_url.scheme, next_url.host, next_url.port) != (url.scheme, url.host, url.port):
                headers = {k: v for k, v in headers.items() if k not in _ORIGIN_BOUND_HEADERS}
            url = next_url
            redirects += 1

    async def _hop(
        self,
        client: httpx.AsyncClient,
        req: FetchRequest,
        url: httpx.URL,
        route: Route,
        headers: dict[str, str],
        clock: _FetchClock,
        redirects: int,
    ) -> FetchOk | FetchError | _Redirect:
        """One request of the chain: its result, or the redirect it was answered with."""
        async with self.host_slots.hold(url.host), self._slots:
            clock.start()
            await self._precheck(url, route)
            request = client.build_request("GET", url, headers=headers, extensions={ROUTE: route})
            try:
                response = await client.send(request, stream=True)
            except _Redirect as redirect:
                return redirect
            try:
                error = classify(response)
                if error is not None:
                    return error
                body, truncated = await self._read_body(response)
                return FetchOk(
                    url=req.url,
                    final_url=str(url),
                    http_status=response.status_code,
                    headers=_flatten(response.headers),
                    body=body,
                    truncated=truncated,
                    elapsed_ms=clock.elapsed_ms(),
                    redirects=redirects,
                )
            finally:
                await response.aclose()

    async def _precheck(self, target: httpx.URL, route: Route) -> None:
        """The guard's checks before a request is sent.

        Direct: only an IP-literal host is checked here - a host name is checked by the guarded
        resolver when the connection is made, on the very addresses connected to. Through a proxy
        the proxy resolves the target, so the target is resolved and checked here instead (the
        proxy could still resolve it differently: documented limitation); a job's own proxy is
        also an address we connect to, so its literal is checked here and its name by the resolver.
        """
        guard = self.guard
        if guard.allow_private:
            return
        if route.proxy is None:
            guard.check_literal(target.host)
            return
        await guard.resolve(target.host, target.port or (443 if target.scheme == "https" else 80))
        if route.guarded:
            guard.check_literal(httpx.URL(route.proxy).host)

    async def _read_body(self, response: httpx.Response) -> tuple[bytes, bool]:
        """The decoded body, cut at ``max_body_bytes``; reading stops there (truncated=True).

        Decoded here with :func:`bounded_decoder`, never by httpx: no decoder is ever asked for
        more than what is left under the cap, so a decompression bomb costs the cap, not its size.
        """
        limit = self.max_body_bytes
        decoder = bounded_decoder(response.headers.get("content-encoding", ""))
        chunks: list[bytes] = []
        size = 0
        async for raw in response.aiter_raw():
            chunk = decoder.decode(raw, limit - size + 1)  # one byte more tells "over the cap"
            if size + len(chunk) > limit:
                chunks.append(chunk[: limit - size])
                return b"".join(chunks), True
            chunks.append(chunk)
            size += len(chunk)
        return b"".join(chunks), False


class _FetchClock:
    """A fetch's one deadline, which starts when its first request gets its slots: queueing
    before that is the caller's backpressure, not the site's slowness."""

    def __init__(self, deadline: asyncio.Timeout, timeout_s: float) -> None:
        self._deadline = deadline
        self._timeout_s = timeout_s
        self._started: float | None = None

    def start(self) -> None:
        """Start the clock (on the first hop; later hops run on the same deadline)."""
        if self._started is None:
            self._started = time.perf_counter()
            self._deadline.reschedule(asyncio.get_running_loop().time() + self._timeout_s)

    def elapsed_ms(self) -> float:
        assert self._started is not None, "start() the clock first"
        return (time.perf_counter() - self._started) * 1000


def _redirect_target(url: httpx.URL, location: str) -> httpx.URL | FetchError:
    """Where a redirect from ``url`` to ``location`` leads, or why it leads nowhere."""
    try:
        return parse_url(str(url.join(location)))
    except (Rejection, httpx.InvalidURL) as exc:
        reason = exc.message if isinstance(exc, Rejection) else str(exc)
        return FetchError("invalid_redirect", f"redirect to {location!r}: {reason}", retryable=False)


def _flatten(headers: httpx.Headers) -> dict[str, str]:
    """Lower-case names; repeated headers joined with ", " (lossy for Set-Cookie, by contract)."""
    flat: dict[str, str] = {}
    for name, value in headers.multi_items():
        flat[name] = f"{flat[name]}, {value}" if name in flat else value
    return flat
