"""One scraper process, many fetches in flight: 1,000 jobs against a server that answers in 200 ms.

Produces ``--jobs`` ``JobValidated`` events straight into the ledger, runs one scraper process
(``SCRAPER_CONCURRENCY`` in flight), and times from the scraper's first outcome event to the last
one written to Kafka. The baseline, in the same run, is aiohttp fetching the same URLs at the same
concurrency with nothing else: the ratio is the cost of Kafka, the checkpoint barrier and the
ledger bookkeeping.

    .venv/bin/python bench/scraper.py --jobs 1000 --delay-ms 200 --concurrency 64
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
import uuid
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import ledger
from bench.e2e import broker
from replay import read_to_end
from scrapeledger import topics
from scrapeledger.clients import make_producer
from scrapeledger.settings import Settings
from tests.support.stack import Stack, start_pages


async def baseline(urls: list[str], in_flight: int) -> float:
    sem = asyncio.Semaphore(in_flight)
    conn = aiohttp.TCPConnector(limit=in_flight)
    async with aiohttp.ClientSession(connector=conn) as session:

        async def one(u: str) -> None:
            async with sem, session.get(u) as resp:
                await resp.read()

        start = time.perf_counter()
        await asyncio.gather(*(one(u) for u in urls))
        return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", type=int, default=1000)
    ap.add_argument("--delay-ms", type=int, default=200)
    ap.add_argument("--concurrency", type=int, default=64)
    args = ap.parse_args()
    with broker() as bootstrap, tempfile.TemporaryDirectory() as tmp, start_pages() as pages:
        settings = Settings(bootstrap_servers=bootstrap, topic_prefix=f"bs-{uuid.uuid4().hex[:8]}-",
                            state_dir=f"{tmp}/state")
        topics.ensure_topics(settings)
        urls = [f"{pages}/slow?ms={args.delay_ms}&n={i}" for i in range(args.jobs)]
        base_s = asyncio.run(baseline(urls, args.concurrency))
        producer = make_producer(settings)
        for url in urls:
            job = ledger.new_job_id()
            event = ledger.JobValidated(job_id=job, event_id=f"{job}/validated", at=ledger.now(),
                                        source="bench",
                                   attempt=1, url=url)
            producer.produce(settings.topic(topics.LEDGER), key=job, value=ledger.encode_event(event))
        producer.flush(60)
        stack = Stack(settings, Path(tmp), env={
            "SCRAPER_CONCURRENCY": str(args.concurrency), "SCRAPER_PER_HOST": str(args.concurrency),
            "SCRAPELEDGER_LOG_LEVEL": "WARNING"})
        started = time.perf_counter()
        stack.start("scraper")
        try:
            outcomes: list[float] = []
            deadline = time.monotonic() + 300
            while len(outcomes) < args.jobs and time.monotonic() < deadline:
                outcomes = [
                    ev.at for m in read_to_end(settings, settings.topic(topics.LEDGER))
                    if (ev := ledger.decode_event(m.value())).TYPE == "ScrapeSucceeded"
                ]
            wall = time.perf_counter() - started
        finally:
            stack.stop_all()
    if len(outcomes) < args.jobs:
        raise SystemExit(f"only {len(outcomes)} of {args.jobs} jobs finished")
    span = max(outcomes) - min(outcomes) + args.delay_ms / 1000
    print(f"{args.jobs} jobs, server delay {args.delay_ms} ms, {args.concurrency} in flight")
    print(f"{'run':<46}{'seconds':>9}{'jobs/s':>9}{'ratio':>7}")
    label = "baseline: aiohttp direct, same concurrency"
    print(f"{label:<46}{base_s:>9.2f}{args.jobs / base_s:>9.0f}{1:>7.2f}")
    print(f"{'scraper process (first to last outcome)':<46}{span:>9.2f}{args.jobs / span:>9.0f}"
          f"{base_s / span:>7.2f}")
    print(f"{'scraper process (incl. start-up and joining)':<46}{wall:>9.2f}")


if __name__ == "__main__":
    main()
