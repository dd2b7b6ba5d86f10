"""The client processes of bench/compare.py, each in its own process so its CPU is its own.

``aiohttp``: the baseline, an aiohttp ``ClientSession`` fetching the pages directly at
``--concurrency`` in flight (after a warm-up), via bench/http_transports.py's ``drive``.

``ws``: the neutral closed-loop driver of the stack. ``--connections`` WebSocket connections, each
keeping ``--window`` jobs in flight: send ``{"event":"job","message":URL,"ref":i}``, match the
``accepted`` frame by ``ref`` and the ``result`` by ``job_id``, check the HTML (size and title),
record submit-to-result latency, send the next. ``--window 1`` is the closed loop of one job per
connection; a larger window pipelines (saturation). Stops after ``--jobs`` jobs or ``--seconds``
(whichever is given first), letting the jobs in flight finish.

Both print ``measuring`` when setup is done (imports, connections, warm-up) and the measurement
starts, then one JSON line with the figures when it ends; bench/compare.py reads the other
processes' CPU at those two lines.

    python -m bench.compare_clients ws --url ws://127.0.0.1:P/ --pages http://127.0.0.1:Q \\
        --tag c8 --connections 8 --window 1 --jobs 1500
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson
from tornado.websocket import WebSocketClientConnection, websocket_connect

START = "measuring"
"""The line a client prints when its measured part begins."""


def page_url(pages: str, tag: str, i: int, kb: int) -> str:
    return f"{pages}/page/{tag}-{i}?kb={kb}"


def page_title(tag: str, i: int) -> str:
    """What the HTML of :func:`page_url` must contain (tests/support/pages.py's ``page_html``)."""
    return f"<title>page {tag}-{i}</title>"


def emit(figures: dict[str, Any]) -> None:
    sys.stdout.write(orjson.dumps(figures).decode() + "\n")
    sys.stdout.flush()


def mark_start() -> None:
    sys.stdout.write(START + "\n")
    sys.stdout.flush()


# --- aiohttp baseline ------------------------------------------------------------------------


async def aiohttp_baseline(args: argparse.Namespace) -> dict[str, Any]:
    # here, not at the top: bench/scrapy_pages.py imports this module and needs none of that
    from bench.http_transports import drive

    urls = [page_url(args.pages, args.tag, i, args.kb) for i in range(args.pages_n)]
    warm = [page_url(args.pages, f"{args.tag}-warm", i, args.kb) for i in range(args.warmup)]
    connector = aiohttp.TCPConnector(limit=args.concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def get(url: str) -> int:
            async with session.get(url) as resp:
                return len(await resp.read())

        await drive(get, warm, args.concurrency, args.kb * 1024)
        mark_start()
        started, cpu = time.perf_counter(), time.process_time()
        await drive(get, urls, args.concurrency, args.kb * 1024)  # checks every body's size
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    return {"pages": len(urls), "seconds": seconds, "cpu_s": cpu, "bad": 0}


# --- WebSocket driver ------------------------------------------------------------------------


@dataclass
class DriverState:
    pages: str
    tag: str
    kb: int
    jobs: int
    """Jobs to send in all (0: no limit, ``deadline`` decides)."""
    deadline: float
    """perf_counter after which no new job is sent (inf: none)."""
    sent: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    accepted_ms: list[float] = field(default_factory=list)
    bad: list[str] = field(default_factory=list)

    def take(self) -> int | None:
        """The index of the next job to send, or None when the run's budget is spent."""
        if (self.jobs and self.sent >= self.jobs) or time.perf_counter() >= self.deadline:
            return None
        self.sent += 1
        return self.sent - 1

    def check(self, frame: dict[str, Any], i: int) -> None:
        if frame.get("status") != "succeeded":
            self.bad.append(f"job {i}: {frame.get('status')} {frame.get('error')}")
            return
        html = frame.get("html")
        if not isinstance(html, str) or len(html) != self.kb * 1024 or page_title(self.tag, i) not in html:
            size = len(html) if isinstance(html, str) else None
            self.bad.append(f"job {i}: wrong html ({size} chars, expected {self.kb * 1024} "
                            f"with {page_title(self.tag, i)!r})")


async def connection(conn: WebSocketClientConnection, st: DriverState, window: int, stall_s: float) -> None:
    """Keep ``window`` jobs in flight on one connection until the budget is spent."""
    sent_at: dict[int, float] = {}  # ref -> submit time, until accepted
    by_job: dict[str, tuple[int, float]] = {}  # job id -> (ref, submit time), until the result
    early: set[int] = set()  # refs whose result came before their accepted frame
    try:
        while True:
            while len(sent_at) + len(by_job) < window and (i := st.take()) is not None:
                sent_at[i] = time.perf_counter()
                url = page_url(st.pages, st.tag, i, st.kb)
                await conn.write_message(orjson.dumps({"event": "job", "message": url, "ref": i}).decode())
            if not sent_at and not by_job:
                return
            try:
                raw = await asyncio.wait_for(conn.read_message(), stall_s)
            except TimeoutError:
                raise SystemExit(f"no frame for {stall_s:.0f}s with {len(sent_at) + len(by_job)} "
                                 "jobs outstanding on this connection") from None
            if raw is None:
                raise SystemExit(f"edge closed the connection: {conn.close_code} {conn.close_reason}")
            frame = orjson.loads(raw)
            now = time.perf_counter()
            event = frame.get("event")
            if event == "accepted":
                ref = frame["ref"]
                if ref in early:
                    early.discard(ref)
                    continue
                submitted = sent_at.pop(ref)
                st.accepted_ms.append((now - submitted) * 1000)
                by_job[frame["job_id"]] = (ref, submitted)
            elif event == "result":
                if frame["job_id"] in by_job:
                    ref, submitted = by_job.pop(frame["job_id"])
                else:  # the result overtook its accepted frame: match it by ref
                    ref = frame["ref"]
                    submitted = sent_at.pop(ref)
                    early.add(ref)
                st.latencies_ms.append((now - submitted) * 1000)
                st.check(frame, ref)
            else:
                raise SystemExit(f"unexpected frame: {frame}")
    finally:
        conn.close()


async def ws_driver(args: argparse.Namespace) -> dict[str, Any]:
    # every connection is open before the measurement starts (connecting is not a job's cost)
    conns = await asyncio.gather(*(websocket_connect(args.url, max_message_size=64 * 1024 * 1024)
                                   for _ in range(args.connections)))
    st = DriverState(args.pages, args.tag, args.kb, args.jobs, float("inf"))
    mark_start()
    started, cpu = time.perf_counter(), time.process_time()
    if args.seconds:
        st.deadline = started + args.seconds
    await asyncio.gather(*(connection(c, st, args.window, args.stall_s) for c in conns))
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    return {"jobs": len(st.latencies_ms), "seconds": seconds, "cpu_s": cpu,
            "latency_ms": [round(v, 3) for v in st.latencies_ms],
            "accepted_ms": [round(v, 3) for v in st.accepted_ms],
            "bad": len(st.bad), "bad_examples": st.bad[:5]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="client", required=True)
    base = argparse.ArgumentParser(add_help=False)
    base.add_argument("--pages", required=True, help="page server base URL")
    base.add_argument("--tag", required=True, help="names the pages of this run (distinct URLs)")
    base.add_argument("--kb", type=int, default=47)
    a = sub.add_parser("aiohttp", parents=[base])
    a.add_argument("--pages-n", type=int, default=3000)
    a.add_argument("--concurrency", type=int, default=64)
    a.add_argument("--warmup", type=int, default=300)
    w = sub.add_parser("ws", parents=[base])
    w.add_argument("--url", required=True, help="edge WebSocket URL")
    w.add_argument("--connections", type=int, default=8)
    w.add_argument("--window", type=int, default=1, help="jobs in flight per connection")
    w.add_argument("--jobs", type=int, default=0, help="jobs in all (0: until --seconds)")
    w.add_argument("--seconds", type=float, default=0.0, help="stop sending after this long (0: no limit)")
    w.add_argument("--stall-s", type=float, default=60.0, help="give up when no frame comes for this long")
    args = ap.parse_args()
    if args.client == "ws" and not (args.jobs or args.seconds):
        ap.error("ws needs --jobs or --seconds")
    run = aiohttp_baseline if args.client == "aiohttp" else ws_driver
    emit(asyncio.run(run(args)))


if __name__ == "__main__":
    main()
