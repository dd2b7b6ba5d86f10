"""Which HTTP transport should the scraper's httpx API run on? Pages per second, same run.

Starts the local page server (tests/support/pages.py) as a separate process, then fetches
``--requests`` distinct ~``--page-kb`` KB pages at ``--concurrency`` in flight with each client,
``--rounds`` times in alternation (this machine is noisy; the median round is reported), and
prints pages/s with the ratio to raw aiohttp, the fastest Python client measured in
notes/http-clients.md:

* httpx ``AsyncClient`` on its own pool (httpcore);
* httpx ``AsyncClient`` over the ``httpx-aiohttp`` transport;
* raw aiohttp ``ClientSession`` (the baseline);
* the scraper's :class:`processors.fetch.Fetcher` with ``allow_private=True`` (loopback), and
  with the SSRF guard fully on (``allow_private=False``, loopback exempted by
  ``allow_networks``, host ``localhost`` so the guarded resolver runs).

    .venv/bin/python bench/http_transports.py --requests 3000 --rounds 3
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aiohttp
import httpx
from httpx_aiohttp import HttpxAiohttpClient

from processors.fetch import Fetcher, FetchOk, FetchRequest
from tests.support.stack import start_pages

Result = tuple[float, float]  # pages/s, client CPU µs per page
Get = Callable[[str], Awaitable[int]]
Runner = Callable[[list[str], list[str], int, int], Coroutine[Any, Any, Result]]


async def drive(get: Get, urls: list[str], concurrency: int, expect: int) -> Result:
    """Fetch every URL with ``concurrency`` workers; return pages/s and client CPU µs per page.

    CPU time per page is the steadier number on a shared machine: other processes stretch the
    wall clock, not this process's own CPU time. Checks every body's size."""
    it = iter(urls)
    sizes: list[int] = []

    async def worker() -> None:
        for url in it:
            sizes.append(await get(url))

    started, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    bad = [s for s in sizes if abs(s - expect) > 64]
    if bad or len(sizes) != len(urls):
        raise SystemExit(f"wrong bodies: {len(bad)} of {len(sizes)} (expected ~{expect} bytes)")
    return len(urls) / elapsed, cpu / len(urls) * 1e6


async def run_httpx(urls: list[str], warm: list[str], concurrency: int, expect: int) -> Result:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=30) as client:
        async def get(url: str) -> int:
            return len((await client.get(url)).content)
        await drive(get, warm, concurrency, expect)
        return await drive(get, urls, concurrency, expect)


async def run_httpx_aiohttp(urls: list[str], warm: list[str], concurrency: int, expect: int) -> Result:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with HttpxAiohttpClient(limits=limits, timeout=30) as client:
        async def get(url: str) -> int:
            return len((await client.get(url)).content)
        await drive(get, warm, concurrency, expect)
        return await drive(get, urls, concurrency, expect)


async def run_aiohttp(urls: list[str], warm: list[str], concurrency: int, expect: int) -> Result:
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        async def get(url: str) -> int:
            async with session.get(url) as resp:
                return len(await resp.read())
        await drive(get, warm, concurrency, expect)
        return await drive(get, urls, concurrency, expect)


def run_fetcher(guarded: bool) -> Runner:
    async def run(urls: list[str], warm: list[str], concurrency: int, expect: int) -> Result:
        if guarded:
            urls = [u.replace("127.0.0.1", "localhost") for u in urls]
            warm = [u.replace("127.0.0.1", "localhost") for u in warm]
        fetcher = Fetcher(
            allow_private=not guarded,
            allow_networks=["127.0.0.0/8", "::1/128"] if guarded else [],
            concurrency=concurrency,
            per_host=concurrency,  # every page is on one host here
        )
        async with fetcher:
            async def get(url: str) -> int:
                result = await fetcher.fetch(FetchRequest(url))
                if not isinstance(result, FetchOk):
                    raise SystemExit(f"fetch failed: {result}")
                return len(result.body)
            await drive(get, warm, concurrency, expect)
            return await drive(get, urls, concurrency, expect)
    return run


CLIENTS: dict[str, Runner] = {
    "httpx AsyncClient (httpcore pool)": run_httpx,
    "httpx over httpx-aiohttp transport": run_httpx_aiohttp,
    "aiohttp ClientSession (baseline)": run_aiohttp,
    "Fetcher, allow_private=True": run_fetcher(guarded=False),
    "Fetcher, guard on (resolver + checks)": run_fetcher(guarded=True),
}
BASELINE = "aiohttp ClientSession (baseline)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=3000)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--page-kb", type=int, default=47)
    ap.add_argument("--warmup", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()

    rates: dict[str, list[float]] = {name: [] for name in CLIENTS}
    costs: dict[str, list[float]] = {name: [] for name in CLIENTS}
    with start_pages() as base:
        urls = [f"{base}/page/{i}?kb={args.page_kb}" for i in range(args.requests)]
        warm = [f"{base}/page/w{i}?kb={args.page_kb}" for i in range(args.warmup)]
        expect = args.page_kb * 1024
        for rnd in range(args.rounds):
            for name, run in CLIENTS.items():
                rate, cost = asyncio.run(run(urls, warm, args.concurrency, expect))
                rates[name].append(rate)
                costs[name].append(cost)
                print(f"round {rnd + 1}: {name:<40}{rate:>9.0f} pages/s {cost:>7.0f} µs CPU/page",
                      file=sys.stderr)
    base_rate = statistics.median(rates[BASELINE])
    base_cost = statistics.median(costs[BASELINE])
    print(f"\n{args.requests} GETs of a {args.page_kb} KB page, {args.concurrency} in flight, "
          f"median of {args.rounds} rounds (Python {sys.version.split()[0]}, aiohttp "
          f"{aiohttp.__version__}, httpx {httpx.__version__})\n")
    print(f"| {'client':<40} | {'pages/s':>8} | {'vs aiohttp':>10} | {'client CPU µs/page':>18} "
          f"| {'vs aiohttp':>10} |")
    print(f"|{'-' * 42}|{'-' * 9}:|{'-' * 11}:|{'-' * 19}:|{'-' * 11}:|")
    for name in CLIENTS:
        rate, cost = statistics.median(rates[name]), statistics.median(costs[name])
        print(f"| {name:<40} | {rate:>8,.0f} | {rate / base_rate:>10.2f} | {cost:>18,.0f} "
              f"| {cost / base_cost:>10.2f} |")


if __name__ == "__main__":
    main()
