"""Compressed bodies: decoded right, and a decompression bomb costs the body cap, not its size.

The bombs are real responses from the local page server: a few KB of gzip, deflate, br or zstd
that decode to 256 MiB of zeros. The fetch must end ``succeeded``/``truncated`` at the cap, and
Python's allocation peak while it runs (tracemalloc: every decoded ``bytes`` is a Python
object) must stay a small multiple of the cap - on the old code one chunk decoded to hundreds of
MiB at once.
"""

from __future__ import annotations

import asyncio
import tracemalloc

import pytest

from processors.fetch import Fetcher, FetchRequest
from tests.support.pages import PageServer, page_html

from .test_fetcher import _raw_server, err, ok

pytestmark = pytest.mark.timeout(60)

CODINGS = ["gzip", "deflate", "br", "zstd"]
MiB = 1024 * 1024


@pytest.mark.parametrize("coding", CODINGS)
def test_an_encoded_page_is_decoded(coding: str) -> None:
    async def main() -> None:
        async with PageServer() as pages, Fetcher(allow_private=True) as fetcher:
            result = ok(await fetcher.fetch(FetchRequest(f"{pages.url}/encoded/{coding}?n=7")))
            assert result.body == page_html("7")
            assert not result.truncated
            assert result.headers["content-encoding"] == coding

    asyncio.run(main())


@pytest.mark.parametrize("coding", CODINGS)
def test_a_decompression_bomb_is_cut_at_the_cap_without_decoding_it(coding: str) -> None:
    async def main() -> int:
        async with PageServer() as pages, Fetcher(allow_private=True, max_body_bytes=MiB) as fetcher:
            url = f"{pages.url}/encoded/{coding}?mb=256"
            await fetcher.fetch(FetchRequest(url))  # the server builds (and caches) the bomb
            tracemalloc.start()
            try:
                result = ok(await fetcher.fetch(FetchRequest(url)))
                peak = tracemalloc.get_traced_memory()[1]
            finally:
                tracemalloc.stop()
            assert result.truncated
            assert len(result.body) == MiB and result.body.count(0) == MiB
            return peak

    peak = asyncio.run(main())
    assert peak < 16 * MiB, f"decoding a bomb allocated {peak / MiB:.0f} MiB for a 1 MiB cap"


@pytest.mark.parametrize("coding", CODINGS)
def test_corrupt_compressed_data_is_a_permanent_decode_error(coding: str) -> None:
    body = b"this is not compressed at all, whatever the header says"
    reply = (b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Encoding: %s\r\n"
             b"Content-Length: %d\r\n\r\n%s" % (coding.encode(), len(body), body))

    async def main() -> None:
        server, port = await _raw_server(reply)
        try:
            async with Fetcher(allow_private=True) as fetcher:
                result = err(await fetcher.fetch(FetchRequest(f"http://127.0.0.1:{port}/")))
            assert (result.code, result.retryable) == ("decode_error", False)
        finally:
            server.close()
            await server.wait_closed()

    asyncio.run(main())
