"""Fetcher memory under decompression bombs: peak RSS with N bombs in flight at once.

The page server (its own process) serves ``/encoded/<coding>?mb=M``: M MiB of zeros compressed
with gzip, deflate, br or zstd, a few KB on the wire. One Fetcher (the scraper's engine, body cap
``--cap-mb``) fetches ``--bombs`` of them at once, codings in rotation. Prints this process's
RSS before and its peak (``ru_maxrss``) after; every result must be cut at the cap.

    .venv/bin/python bench/bombs.py --bombs 64 --mb 1024 --cap-mb 5
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from processors.fetch import Fetcher, FetchOk, FetchRequest
from tests.support.stack import start_pages

CODINGS = ("gzip", "deflate", "br", "zstd")


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def run(pages: str, bombs: int, mb: int, cap: int) -> tuple[float, int]:
    async with Fetcher(allow_private=True, concurrency=bombs, per_host=bombs, max_body_bytes=cap,
                       timeout_s=120) as fetcher:
        # one of each first: the page server builds (and caches) each bomb once
        for coding in CODINGS:
            await fetcher.fetch(FetchRequest(f"{pages}/encoded/{coding}?mb={mb}"))
        started = time.perf_counter()
        results = await asyncio.gather(*(
            fetcher.fetch(FetchRequest(f"{pages}/encoded/{CODINGS[i % 4]}?mb={mb}&i={i}"))
            for i in range(bombs)
        ))
        seconds = time.perf_counter() - started
    cut = sum(1 for r in results if isinstance(r, FetchOk) and r.truncated and len(r.body) == cap)
    return seconds, cut


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bombs", type=int, default=64)
    ap.add_argument("--mb", type=int, default=1024, help="MiB each bomb decodes to")
    ap.add_argument("--cap-mb", type=int, default=5, help="the body cap (SCRAPER_MAX_BODY_BYTES)")
    args = ap.parse_args()
    with start_pages() as pages:
        before = rss_mib()
        seconds, cut = asyncio.run(run(pages, args.bombs, args.mb, args.cap_mb * 1024 * 1024))
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{args.bombs} bombs of {args.mb} MiB each ({', '.join(CODINGS)} in turn), cap {args.cap_mb} MiB")
    print(f"fetcher RSS before {before:.0f} MiB, peak {peak:.0f} MiB; {cut}/{args.bombs} cut at the cap "
          f"in {seconds:.1f} s")
    return 0 if cut == args.bombs else 1


if __name__ == "__main__":
    raise SystemExit(main())
