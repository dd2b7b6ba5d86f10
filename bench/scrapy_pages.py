"""The Scrapy baseline of bench/compare.py: one spider fetching the page server's pages.

A plain Scrapy crawl (``pip install -e '.[bench]'``) with ``CONCURRENT_REQUESTS=64`` (and the
same per domain: every page is on the one local host, and Scrapy's default per-domain cap is 8),
no download delay, no robots.txt, everything else at Scrapy's defaults unless
``--concurrent-items N`` sets ``CONCURRENT_ITEMS``: Scrapy 2.13+ (asyncio reactor) starts that
many tasks (default 100) to process *each* callback's output, which on this page server halves
its pages/s; a spider yielding one item per page loses nothing with 1. It first fetches
``--warmup`` pages; when the last of them is parsed it prints ``measuring`` and schedules the
``--pages-n`` measured ones, checks each body (size and title), and when the last is parsed prints
one JSON line: pages, seconds, the process's CPU seconds, bad bodies.

    .venv/bin/python bench/scrapy_pages.py --pages http://127.0.0.1:PORT --tag s1 --pages-n 3000
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import scrapy
from scrapy.crawler import CrawlerProcess
from scrapy.http import Response
from twisted.python.failure import Failure

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.compare_clients import emit, mark_start, page_title, page_url


class PagesSpider(scrapy.Spider):
    name = "pages"

    def __init__(self, args: argparse.Namespace, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.args = args
        self.warm_done = 0
        self.done = 0
        self.bad: list[str] = []
        self.started = self.cpu = 0.0

    def _warmup(self) -> Iterator[scrapy.Request]:
        for i in range(self.args.warmup):
            yield scrapy.Request(page_url(self.args.pages, f"{self.args.tag}-warm", i, self.args.kb),
                                 callback=self.parse_warm)

    async def start(self) -> AsyncIterator[scrapy.Request]:  # Scrapy >= 2.13
        for request in self._warmup():
            yield request

    def start_requests(self) -> Iterator[scrapy.Request]:  # Scrapy < 2.13
        yield from self._warmup()

    def parse_warm(self, response: Response) -> Iterator[scrapy.Request]:
        self.warm_done += 1
        if self.warm_done < self.args.warmup:
            return
        mark_start()
        self.started, self.cpu = time.perf_counter(), time.process_time()
        for i in range(self.args.pages_n):
            yield scrapy.Request(page_url(self.args.pages, self.args.tag, i, self.args.kb),
                                 callback=self.parse, errback=self.failed, cb_kwargs={"i": i})

    def parse(self, response: Response, i: int) -> None:
        body = response.body
        if len(body) != self.args.kb * 1024 or page_title(self.args.tag, i).encode() not in body:
            self.bad.append(f"page {i}: {response.status}, {len(body)} bytes")
        self._one_done()

    def failed(self, failure: Failure) -> None:
        self.bad.append(f"{failure.request.url}: {failure.value!r}")  # type: ignore[attr-defined]
        self._one_done()

    def _one_done(self) -> None:
        self.done += 1
        if self.done == self.args.pages_n:
            seconds, cpu = time.perf_counter() - self.started, time.process_time() - self.cpu
            emit({"pages": self.done, "seconds": seconds, "cpu_s": cpu, "bad": len(self.bad),
                  "bad_examples": self.bad[:5], "scrapy": scrapy.__version__})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pages", required=True, help="page server base URL")
    ap.add_argument("--tag", required=True, help="names the pages of this run (distinct URLs)")
    ap.add_argument("--kb", type=int, default=47)
    ap.add_argument("--pages-n", type=int, default=3000)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--warmup", type=int, default=300)
    ap.add_argument("--concurrent-items", type=int, default=0,
                    help="Scrapy's CONCURRENT_ITEMS (0: Scrapy's default, 100)")
    args = ap.parse_args()
    if args.warmup < 1:
        ap.error("--warmup must be at least 1 (its last page starts the measurement)")
    process = CrawlerProcess(settings={
        "CONCURRENT_REQUESTS": args.concurrency,
        "CONCURRENT_REQUESTS_PER_DOMAIN": args.concurrency,
        "DOWNLOAD_DELAY": 0,
        "ROBOTSTXT_OBEY": False,
        "TELNETCONSOLE_ENABLED": False,
        "LOG_LEVEL": "WARNING",
        # items/requests of one callback's output processed in parallel (Scrapy's default: 100)
        **({"CONCURRENT_ITEMS": args.concurrent_items} if args.concurrent_items else {}),
    })
    process.crawl(PagesSpider, args=args)
    process.start()


if __name__ == "__main__":
    main()
