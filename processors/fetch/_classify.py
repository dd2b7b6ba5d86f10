"""The one boundary where failures become error codes, and retryable or permanent.

Every exception and every non-success response of a fetch passes through here, so the
attempt-retry policy - which failures may pass and are worth another attempt of the job - lives
in one table (mirrored in docs/scraper.md) instead of in scattered ``except`` clauses. What
happens to a retryable failure next (the attempt bound, the back-off, ``RetryScheduled``) is
told in ``processors/_attempt_retry.py``; record failure and crash recovery, the other two kinds
of retry, never pass through here.

Exceptions are matched on their whole ``__cause__`` chain, in rule order, because the transport
wraps aiohttp's errors in httpx's and the more telling one may be either.
"""

from __future__ import annotations

import email.utils
import socket
import ssl
import time
from collections.abc import Iterator, Mapping
from typing import overload

import aiohttp
import httpx

from ._errors import Rejection, ResolutionError
from ._models import FetchError

REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
RETRYABLE_4XX = frozenset({408, 429})

_Rule = tuple[tuple[type[BaseException], ...], str, bool]

# (exception types anywhere in the chain, code, retryable) - the first rule that matches wins
_RULES: tuple[_Rule, ...] = (
    ((aiohttp.ClientProxyConnectionError, aiohttp.ClientHttpProxyError, httpx.ProxyError),
     "proxy_error", True),
    ((aiohttp.ClientConnectorDNSError, ResolutionError, socket.gaierror), "dns_error", True),
    ((aiohttp.ClientConnectorCertificateError, aiohttp.ClientSSLError, ssl.SSLError), "tls_error", False),
    ((TimeoutError, httpx.TimeoutException), "timeout", True),
    ((aiohttp.ClientConnectorError, aiohttp.ServerDisconnectedError, ConnectionError,
      httpx.ConnectError), "connect_error", True),
    ((aiohttp.ClientPayloadError, httpx.ReadError), "read_error", True),
    ((httpx.DecodingError,), "decode_error", False),
    ((aiohttp.ClientResponseError, httpx.RemoteProtocolError, httpx.LocalProtocolError),
     "protocol_error", True),
    ((aiohttp.InvalidURL, httpx.UnsupportedProtocol, httpx.InvalidURL), "invalid_url", False),
    ((aiohttp.ClientOSError, httpx.NetworkError, OSError), "connect_error", True),
)


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen and len(seen) < 16:
        seen.add(id(current))
        yield current
        current = current.__cause__ or (None if current.__suppress_context__ else current.__context__)


@overload
def classify(outcome: httpx.Response) -> FetchError | None: ...
@overload
def classify(outcome: BaseException) -> FetchError: ...
def classify(outcome: httpx.Response | BaseException) -> FetchError | None:
    """THE classification: a response or an exception of a fetch -> ``None`` (keep the
    response) or the :class:`FetchError` it stands for. Never raises.

    The one function the fetcher calls at both of its exits, so the whole attempt-retry policy
    is read here: 4xx permanent except 408/429; 5xx, 408, 429 (with ``Retry-After``), timeouts, refused
    or reset connections, DNS and proxy failures retryable; a guard refusal, TLS, a bad URL or
    redirect permanent; anything unforeseen retryable ``fetch_error`` naming its type.
    """
    if isinstance(outcome, httpx.Response):
        return classify_response(outcome.status_code, outcome.headers)
    return classify_exception(outcome)


def classify_exception(exc: BaseException) -> FetchError:
    """The :class:`FetchError` for an exception raised while fetching. Never raises."""
    chain = list(_chain(exc))
    for link in chain:
        if isinstance(link, Rejection):
            return FetchError(link.code, link.message, retryable=False)
    for types, code, retryable in _RULES:
        for link in chain:
            if isinstance(link, types):
                if isinstance(link, ResolutionError):
                    return FetchError(code, link.message, retryable)
                return FetchError(code, _describe(exc), retryable)
    return FetchError("fetch_error", f"unexpected {_describe(exc)}", retryable=True)


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def classify_response(status: int, headers: Mapping[str, str]) -> FetchError | None:
    """None for a status the scraper keeps (1xx-3xx), else the error it stands for.

    4xx is the request's fault and will not change on retry - except 408 (the server gave up
    waiting) and 429 (rate limited: come back after ``Retry-After``). 5xx is the server's trouble
    and often passes. Every error carries ``http_status``.
    """
    if status < 400:
        return None
    retryable = status >= 500 or status in RETRYABLE_4XX
    retry_after = retry_after_seconds(headers.get("retry-after")) if status in (429, 503) else None
    message = f"HTTP {status}" + (f", retry after {retry_after:g}s" if retry_after is not None else "")
    return FetchError(f"http_{status}", message, retryable, http_status=status, retry_after_s=retry_after)


def retry_after_seconds(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds from a ``Retry-After`` value (delta-seconds or an HTTP-date), or None if unusable."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    if seconds != seconds:  # NaN
        return None
    return max(0.0, seconds)
