"""Oversized response headers are a permanent failure (``headers_too_large``), never retried.

Before, one 200 KB header line or 200 headers was aiohttp's ``ClientResponseError`` ->
``protocol_error`` (retryable: three attempts, then dead-lettered), and 200 KB in 32 lines of
6.4 KB was a success whose headers went into the forever ledger.
"""

from __future__ import annotations

import asyncio

import pytest

import ledger
from processors.fetch import Fetcher, FetchError, FetchOk, FetchRequest
from processors.scraper import outcome_events
from scrapeledger.settings import Settings
from tests.support.pages import PageServer

pytestmark = pytest.mark.timeout(30)


def fetch(path: str, **kw: int) -> tuple[FetchOk | FetchError, int]:
    """The result of one fetch and how many requests the server saw for it."""

    async def main() -> tuple[FetchOk | FetchError, int]:
        async with PageServer() as pages, Fetcher(allow_private=True, **kw) as fetcher:  # type: ignore[arg-type]
            result = await fetcher.fetch(FetchRequest(pages.url + path))
            return result, pages.hits["/big-headers"]

    return asyncio.run(main())


@pytest.mark.parametrize(
    "path",
    [
        "/big-headers?kb=200&lines=1",    # one 200 KB line (over aiohttp's 8190-byte line limit)
        "/big-headers?kb=200&lines=32",   # 200 KB in lines of 6.4 KB: each line fits, the block not
        "/big-headers?kb=20&lines=200",   # more headers than aiohttp's 128
    ],
)
def test_an_oversized_header_block_is_a_permanent_failure(path: str) -> None:
    result, requests = fetch(path)
    assert isinstance(result, FetchError), result
    assert (result.code, result.retryable) == ("headers_too_large", False)
    assert requests == 1


def test_the_limit_is_a_setting_and_headers_under_it_pass() -> None:
    ok, _ = fetch("/big-headers?kb=12&lines=4")
    assert isinstance(ok, FetchOk) and len(ok.headers["x-big-0"]) == 3 * 1024
    small, _ = fetch("/big-headers?kb=12&lines=4", max_header_bytes=8 * 1024)
    assert isinstance(small, FetchError) and small.code == "headers_too_large"
    assert Fetcher.from_settings(Settings(scraper_max_header_bytes=4096)).max_header_bytes == 4096


def test_a_headers_too_large_attempt_ends_the_job_at_once() -> None:
    trigger = ledger.JobValidated(job_id="j" * 22, event_id="v", at=1.0, source="v", attempt=1, url="http://x/")
    error = FetchError("headers_too_large", "too big", retryable=False)
    [event] = outcome_events(trigger, error, settings=Settings(), body_ref=None, body_inline=None)
    assert isinstance(event, ledger.JobFailed) and event.code == "headers_too_large"
