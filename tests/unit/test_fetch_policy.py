"""Retry policy: which failures are retryable, Retry-After parsing, and the back-off curve."""

from __future__ import annotations

import email.utils
import random
import socket
import ssl

import aiohttp
import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from processors.fetch import (
    Rejection,
    ResolutionError,
    backoff_delay,
    classify_exception,
    classify_response,
    retry_after_seconds,
)


def test_retry_after_seconds_and_dates() -> None:
    now = 1_700_000_000.0
    assert retry_after_seconds("120", now=now) == 120
    assert retry_after_seconds(" 1.5 ", now=now) == 1.5
    assert retry_after_seconds("-5", now=now) == 0
    assert retry_after_seconds(email.utils.formatdate(now + 90, usegmt=True), now=now) == 90
    assert retry_after_seconds(email.utils.formatdate(now - 90, usegmt=True), now=now) == 0
    for junk in (None, "", "soon", "nan", "Mon, 99 Foo 2024"):
        assert retry_after_seconds(junk, now=now) is None


def test_classify_response_table() -> None:
    assert classify_response(200, {}) is None
    assert classify_response(304, {}) is None
    for status in (400, 401, 403, 404, 410, 418, 451):
        error = classify_response(status, {})
        assert error is not None and not error.retryable and error.http_status == status
    for status in (408, 429, 500, 502, 503, 504, 599):
        error = classify_response(status, {})
        assert error is not None and error.retryable and error.code == f"http_{status}"
    limited = classify_response(503, {"retry-after": "30"})
    assert limited is not None and limited.retry_after_s == 30


@pytest.mark.parametrize(
    ("exc", "code", "retryable"),
    [
        (Rejection("blocked_address", "no"), "blocked_address", False),
        (ResolutionError("x.invalid", "nope"), "dns_error", True),
        (TimeoutError(), "timeout", True),
        (httpx.ReadTimeout("slow"), "timeout", True),
        (ConnectionRefusedError(111, "refused"), "connect_error", True),
        (ConnectionResetError(104, "reset"), "connect_error", True),
        (aiohttp.ServerDisconnectedError(), "connect_error", True),
        (httpx.ProxyError("proxy down"), "proxy_error", True),
        (httpx.DecodingError("bad gzip"), "decode_error", False),
        (ssl.SSLCertVerificationError("expired"), "tls_error", False),
        (ValueError("surprise"), "fetch_error", True),
        (KeyError("surprise"), "fetch_error", True),
    ],
)
def test_classify_exception_table(exc: Exception, code: str, retryable: bool) -> None:
    error = classify_exception(exc)
    assert (error.code, error.retryable) == (code, retryable)


def test_the_most_telling_exception_in_the_chain_wins() -> None:
    # the transport wraps aiohttp's errors in httpx's; a DNS failure inside a ConnectError is DNS
    outer = httpx.ConnectError("wrapped")
    outer.__cause__ = socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    assert classify_exception(outer).code == "dns_error"


def test_unexpected_errors_name_their_type() -> None:
    error = classify_exception(ZeroDivisionError("x"))
    assert "ZeroDivisionError" in error.message


def test_backoff_grows_is_capped_and_jitters() -> None:
    rng = random.Random(1)
    delays = [backoff_delay(n, base_s=0.5, cap_s=30, rng=rng) for n in range(1, 40)]
    assert all(0 <= d <= 30 for d in delays)
    assert max(delays[:3]) <= 2.0  # 0.5, 1, 2 ceilings
    assert len(set(delays)) == len(delays)  # jittered, not lockstep
    highs = [backoff_delay(20, base_s=0.5, cap_s=30, rng=random.Random(s)) for s in range(200)]
    assert max(highs) <= 30 and sum(highs) / len(highs) > 10  # full jitter over [0, cap]


def test_backoff_honours_retry_after_within_a_ceiling() -> None:
    for seed in range(50):
        rng = random.Random(seed)
        d = backoff_delay(1, base_s=0.5, cap_s=30, retry_after_s=12, rng=rng)
        assert 12 <= d <= 12 * 1.1
    assert backoff_delay(1, base_s=0.5, cap_s=30, retry_after_s=86_400) <= 300
    assert backoff_delay(1, base_s=0.5, cap_s=30, retry_after_s=float("inf")) <= 300


@given(
    st.integers(-5, 10_000),
    st.floats(0, 100),
    st.floats(0, 1000),
    st.none() | st.floats(0, 1e9),
)
def test_backoff_is_always_a_finite_bounded_delay(
    attempt: int, base: float, cap: float, retry_after: float | None
) -> None:
    d = backoff_delay(attempt, base_s=base, cap_s=cap, retry_after_s=retry_after, rng=random.Random(0))
    assert 0 <= d <= max(cap, 300)
