"""End-to-end throughput and latency: WebSocket clients -> Kafka pipeline -> results.

Runs, in one go on this machine: a local page server, the real broker (``KAFKA_BOOTSTRAP_SERVERS``
or a local one), state + validator + scraper + one edge as separate processes, then

* the baseline: the same pages fetched directly by aiohttp (the fastest client measured in
  notes/http-clients.md) at 64 in flight, and
* the service: ``--jobs`` jobs from ``--clients`` WebSocket connections, each keeping
  ``--window`` jobs outstanding, timing every job from submit to result.

It prints jobs/s, p50/p99 submit-to-result latency, and the ratio to the baseline run in the same
invocation (machines here are noisy; only same-run ratios mean much).

    .venv/bin/python bench/e2e.py --jobs 5000 --clients 20 --window 50
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import orjson
from tornado.websocket import websocket_connect

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scrapeledger.settings import Settings
from tests.support.stack import Stack, start_pages


@contextlib.contextmanager
def broker() -> Iterator[str]:
    import os

    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        yield os.environ["KAFKA_BOOTSTRAP_SERVERS"]
        return
    from scrapeledger.broker import LocalBroker

    with LocalBroker(port=0) as b:
        yield b.bootstrap


async def baseline(urls: list[str], in_flight: int = 64) -> float:
    sem = asyncio.Semaphore(in_flight)
    async with aiohttp.ClientSession() as session:

        async def one(u: str) -> None:
            async with sem, session.get(u) as resp:
                await resp.read()

        start = time.perf_counter()
        await asyncio.gather(*(one(u) for u in urls))
        return len(urls) / (time.perf_counter() - start)


async def service(ws_url: str, urls: list[str], clients: int, window: int) -> tuple[float, list[float]]:
    latencies: list[float] = []
    chunks = [urls[i::clients] for i in range(clients)]

    async def client(chunk: list[str]) -> None:
        conn = await websocket_connect(ws_url, max_message_size=64 * 1024 * 1024)
        sent: dict[int, float] = {}
        by_job: dict[str, float] = {}
        next_i = 0
        done = 0
        while done < len(chunk):
            while next_i < len(chunk) and len(sent) + len(by_job) < window:
                sent[next_i] = time.perf_counter()
                await conn.write_message(
                    orjson.dumps({"event": "job", "message": chunk[next_i], "ref": next_i}).decode()
                )
                next_i += 1
            raw = await conn.read_message()
            assert raw is not None, "edge closed the connection"
            frame = orjson.loads(raw)
            if frame["event"] == "accepted":
                by_job[frame["job_id"]] = sent.pop(frame["ref"])
            elif frame["event"] == "result":
                if frame["status"] != "succeeded":
                    raise SystemExit(f"job failed: {frame}")
                latencies.append(time.perf_counter() - by_job.pop(frame["job_id"]))
                done += 1
        conn.close()

    start = time.perf_counter()
    await asyncio.gather(*(client(c) for c in chunks))
    return len(urls) / (time.perf_counter() - start), latencies


def bench_stack(bootstrap: str, tmp: str, concurrency: int) -> tuple[Settings, Stack]:
    """Settings with a fresh topic prefix, and a stack whose scraper fetches ``concurrency`` at once.

    Every page is on one host here: the per-host cap is lifted to the process's concurrency, as
    the baselines have no per-host cap either.
    """
    settings = Settings(
        bootstrap_servers=bootstrap, topic_prefix=f"bench-{uuid.uuid4().hex[:8]}-",
        state_dir=f"{tmp}/state",
    )
    stack = Stack(settings, Path(tmp), env={"SCRAPELEDGER_LOG_LEVEL": "WARNING",
                                            "SCRAPER_PER_HOST": str(concurrency),
                                            "SCRAPER_CONCURRENCY": str(concurrency)})
    return settings, stack


def stage_latencies(settings: Settings) -> dict[str, float]:
    """Median time between consecutive ledger events of a job, per step (from their ``at``)."""
    import ledger
    from replay import read_to_end
    from scrapeledger import topics

    firsts: dict[str, dict[str, float]] = {}
    for msg in read_to_end(settings, settings.topic(topics.LEDGER)):
        e = ledger.decode_event(msg.value())
        firsts.setdefault(e.job_id, {}).setdefault(e.TYPE, e.at)
    steps = [("JobSubmitted", "JobValidated"), ("JobValidated", "ScrapeSucceeded"),
             ("ScrapeSucceeded", "ResultDelivered")]
    out = {}
    for a, b in steps:
        deltas = [t[b] - t[a] for t in firsts.values() if a in t and b in t]
        if deltas:
            out[f"{a}->{b}"] = statistics.median(deltas) * 1000
    return out


def cpu_busy() -> tuple[float, float]:
    """(busy, total) jiffies of the whole machine, from /proc/stat."""
    fields = [float(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields)


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1] if len(values) > 1 else values[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jobs", type=int, default=5000)
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--window", type=int, default=50, help="outstanding jobs per connection")
    ap.add_argument("--page-kb", type=int, default=47)
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument("--concurrency", type=int, default=64, help="scraper fetches in flight")
    args = ap.parse_args()

    with broker() as bootstrap, tempfile.TemporaryDirectory() as tmp, start_pages() as pages:
        settings, stack = bench_stack(bootstrap, tmp, args.concurrency)
        try:
            stack.processors()
            ws_url = stack.edge()
            page = f"{pages}/page/{{n}}?kb={args.page_kb}"
            warm = [page.format(n=i) for i in range(args.warmup)]
            urls = [page.format(n=i) for i in range(args.jobs)]
            asyncio.run(service(ws_url, warm, min(args.clients, 10), args.window))
            base = asyncio.run(baseline(urls))
            rss0 = stack.rss_mib("edge-a")
            cpu0 = stack.cpu_seconds()
            busy0, total0 = cpu_busy()
            rate, lat = asyncio.run(service(ws_url, urls, args.clients, args.window))
            busy1, total1 = cpu_busy()
            cpu = {k: v - cpu0.get(k, 0.0) for k, v in stack.cpu_seconds().items()}
            stages = stage_latencies(settings)
            rss1 = stack.rss_mib("edge-a")
        finally:
            stack.stop_all()
    print(f"jobs={args.jobs} clients={args.clients} window={args.window} page={args.page_kb}KB")
    print(f"{'run':<34}{'jobs/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'ratio':>8}")
    print(f"{'baseline: aiohttp direct, 64 in flight':<34}{base:>10.0f}{'':>10}{'':>10}{1.0:>8.2f}")
    print(f"{'scrapeledger end to end':<34}{rate:>10.0f}{pct(lat, 50) * 1000:>10.0f}"
          f"{pct(lat, 99) * 1000:>10.0f}{rate / base:>8.2f}")
    print("median ms between ledger events: " + ", ".join(f"{k} {v:.0f}" for k, v in stages.items()))
    print(f"edge RSS before/after the run: {rss0:.1f} / {rss1:.1f} MiB "
          f"({(rss1 - rss0) * 100_000 / args.jobs:+.1f} MiB per 100,000 jobs, extrapolated)")
    print(f"machine CPU busy during the run: {(busy1 - busy0) / (total1 - total0):.0%} of 2 cores")
    print("CPU ms per job: " + ", ".join(f"{k} {v * 1000 / args.jobs:.2f}" for k, v in cpu.items()))


if __name__ == "__main__":
    main()
