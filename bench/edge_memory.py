"""Edge pod memory per 100,000 finished jobs: steady growth, separated from the peak working set.

Runs, in one go on this machine: a local page server, the real broker (``KAFKA_BOOTSTRAP_SERVERS``
or a local one), state + validator + scraper + one edge as separate processes (as bench/e2e.py),
then ``--clients`` WebSocket connections that stay open for the whole run, each keeping
``--window`` jobs outstanding, in steps of ``--step`` jobs:

* one step of warm-up (imports, pools, allocator arenas, Kafka client buffers all reach size);
* then ``--jobs`` more, in steps. After each step every result has been received, so the edge is
  quiescent (no job waiting, only the open sockets); the bench then reads the edge's VmRSS,
  RssAnon and VmHWM (the kernel's peak RSS) from /proc, its ``/metrics`` (open connections,
  jobs submitted, results sent, open fds) and the other processes' VmRSS.

Growth is the slope of a least-squares line through the post-warm-up RSS samples (MiB per
100,000 finished jobs, and bytes per job); the peak is VmHWM, the most the edge held at any
moment, working set under load included. A last sample after the clients disconnect shows what
the sockets themselves held. If a component exits, or no result arrives for ``--stall`` seconds,
the run stops and names the jobs still waiting with their ledger events; everything started is
stopped in any case (SIGTERM included).

    .venv/bin/python bench/edge_memory.py
    .venv/bin/python bench/edge_memory.py --clients 20 --window 50 --page-kb 47   # e2e.py's load
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import signal
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

import orjson
from tornado.httpclient import AsyncHTTPClient
from tornado.websocket import WebSocketClientConnection, websocket_connect

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.e2e import bench_stack, broker
from scrapeledger.settings import Settings
from tests.support.stack import Stack, start_pages

MiB = 1024 * 1024
OTHERS = ("state", "validator", "scraper")
EDGE = "edge-a"


@dataclass(frozen=True)
class Sample:
    jobs: int
    """Jobs finished since the warm-up ended (the warm-up sample is 0)."""
    seconds: float
    rss: float
    anon: float
    hwm: float
    connections: float
    outstanding: float
    """Jobs submitted minus result frames sent, from the edge's counters: jobs it still waits for."""
    fds: float
    others: dict[str, float]


def proc_status(pid: int) -> dict[str, float]:
    """VmRSS, RssAnon and VmHWM of a process, in MiB."""
    out: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "RssAnon", "VmHWM"):
            out[key] = int(value.split()[0]) / 1024
    return out


async def metrics(base: str) -> dict[str, float]:
    """The edge's Prometheus exposition as {name: value} (unlabelled series only)."""
    resp = await AsyncHTTPClient().fetch(f"{base}/metrics")
    out: dict[str, float] = {}
    for line in resp.body.decode().splitlines():
        if line and not line.startswith("#") and "{" not in line:
            name, _, value = line.partition(" ")
            out[name] = float(value)
    return out


class Client:
    """One long-lived WebSocket connection that runs batches of jobs with a window."""

    def __init__(self, conn: WebSocketClientConnection, window: int) -> None:
        self.conn = conn
        self.window = window
        self.finished = 0
        self.accepted: dict[str, float] = {}
        """Jobs accepted and not finished yet, and when (named when a run stalls)."""

    async def run(self, urls: list[str]) -> None:
        outstanding = 0
        next_i = 0
        done = 0
        while done < len(urls):
            while next_i < len(urls) and outstanding < self.window:
                frame = {"event": "job", "message": urls[next_i], "ref": f"r{next_i}"}
                await self.conn.write_message(orjson.dumps(frame).decode())
                next_i += 1
                outstanding += 1
            raw = await self.conn.read_message()
            if raw is None:
                raise SystemExit("edge closed the connection")
            msg = orjson.loads(raw)
            if msg["event"] == "result":
                if msg["status"] != "succeeded":
                    raise SystemExit(f"job failed: {msg}")
                self.accepted.pop(msg["job_id"], None)
                outstanding -= 1
                done += 1
                self.finished += 1
            elif msg["event"] == "accepted":
                self.accepted[msg["job_id"]] = time.perf_counter()
            else:
                raise SystemExit(f"unexpected frame: {msg}")


class Run:
    """The clients of one measurement, the steps they run and the samples taken between steps."""

    def __init__(self, stack: Stack, ws_url: str, page: str, args: argparse.Namespace,
                 conns: list[WebSocketClientConnection]) -> None:
        self.stack, self.page, self.args = stack, page, args
        self.base = ws_url.replace("ws://", "http://").rstrip("/")
        self.edge_pid = stack.procs[EDGE].popen.pid
        self.numbers = itertools.count()
        self.clients = [Client(c, args.window) for c in conns]
        self.start = time.perf_counter()

    async def step(self, n: int) -> None:
        """Run ``n`` jobs to their results; stop the run if a component dies or nothing finishes
        for ``--stall`` seconds (a dead processor would otherwise leave the clients waiting)."""
        urls = [self.page.format(n=next(self.numbers)) for _ in range(n)]
        clients = self.clients
        task = asyncio.ensure_future(
            asyncio.gather(*(c.run(urls[i :: len(clients)]) for i, c in enumerate(clients)))
        )
        seen, since = -1, time.monotonic()
        while not task.done():
            await asyncio.wait({task}, timeout=2.0)
            dead = [name for name, proc in self.stack.procs.items() if proc.popen.poll() is not None]
            progress = sum(c.finished for c in clients)
            if progress != seen:
                seen, since = progress, time.monotonic()
            if dead or time.monotonic() - since > self.args.stall:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
                raise SystemExit(self.stalled(dead, progress))
        task.result()

    def stalled(self, dead: list[str], progress: int) -> str:
        """Why the run stopped: who exited (or how long nothing came), their last lines, and the
        jobs still waiting with their ledger events."""
        why = f"{', '.join(dead)} exited" if dead else f"no result for {self.args.stall:.0f} s"
        tails = "".join(f"--- {name} (last lines):\n{''.join(proc.lines[-15:])}"
                        for name, proc in self.stack.procs.items() if name in dead or not dead)
        stuck = {j: t - self.start for c in self.clients for j, t in c.accepted.items()}
        return (f"run stopped after {progress:,} results in all: {why}\n{tails}"
                f"--- accepted jobs without a result, and their ledger events:\n"
                f"{ledger_of(self.stack.settings, stuck)}")

    async def sample(self, jobs: int) -> Sample:
        """The edge's memory and counters once it is quiescent, and the other processes' RSS."""
        await asyncio.sleep(self.args.settle)
        m = await metrics(self.base)
        st = proc_status(self.edge_pid)
        return Sample(
            jobs=jobs,
            seconds=time.perf_counter() - self.start,
            rss=st["VmRSS"],
            anon=st["RssAnon"],
            hwm=st["VmHWM"],
            connections=m.get("scrapeledger_websocket_connections", float("nan")),
            outstanding=m.get("scrapeledger_jobs_submitted_total", float("nan"))
            - m.get("scrapeledger_results_sent_total", float("nan")),
            fds=m.get("process_open_fds", float("nan")),
            others={name: self.stack.rss_mib(name) for name in OTHERS},
        )


async def measure(stack: Stack, ws_url: str, page: str, args: argparse.Namespace) -> list[Sample]:
    """A warm-up step, then ``--jobs`` in steps with a sample after each, then one without clients."""
    conns = [
        await websocket_connect(ws_url, max_message_size=64 * MiB) for _ in range(args.clients)
    ]
    run = Run(stack, ws_url, page, args, conns)
    await run.step(args.step)  # warm-up
    samples = [await run.sample(0)]
    print(f"warm-up of {args.step:,} jobs done in {samples[0].seconds:.0f} s", flush=True)
    finished = 0
    while finished < args.jobs:
        n = min(args.step, args.jobs - finished)
        await run.step(n)
        finished += n
        s = await run.sample(finished)
        samples.append(s)
        print(f"  {finished:>9,} jobs  {s.seconds:6.0f} s  edge RSS {s.rss:6.1f} MiB", flush=True)
    for c in conns:
        c.close()
    await asyncio.sleep(1.0)
    samples.append(await run.sample(-1))  # after the clients left
    return samples


def ledger_of(settings: Settings, jobs: dict[str, float], most: int = 20) -> str:
    """For a stalled run's report: each job's ledger partition (by key), when it was accepted and
    its ledger event types in order; then every ledger partition's records read and watermarks."""
    from confluent_kafka import TopicPartition

    import ledger
    from scrapeledger import topics
    from scrapeledger.partitioner import partition_for
    from scrapeledger.reader import consumer, read_to_end

    topic = settings.topic(topics.LEDGER)
    history: dict[str, list[str]] = {j: [] for j in jobs}
    per_partition: dict[int, int] = {}
    for msg in read_to_end(settings, topic):
        per_partition[msg.partition()] = per_partition.get(msg.partition(), 0) + 1
        event = ledger.decode_event(msg.value())
        if event.job_id in history:
            history[event.job_id].append(f"{event.TYPE}@p{msg.partition()}")
    lines = [f"{j} (key -> p{partition_for(j, settings.partitions)}, accepted at {jobs[j]:.1f} s): "
             f"{' '.join(h) or '(none)'}\n" for j, h in sorted(history.items())[:most]]
    c = consumer(settings)
    try:
        for p in sorted(per_partition):
            low, high = c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            lines.append(f"ledger p{p}: {per_partition[p]:,} records read, watermarks {low}..{high}\n")
    finally:
        c.close()
    return "".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jobs", type=int, default=100_000, help="jobs after the warm-up")
    ap.add_argument("--step", type=int, default=10_000, help="jobs between samples (and the warm-up)")
    ap.add_argument("--clients", type=int, default=10, help="WebSocket connections, open all run")
    ap.add_argument("--window", type=int, default=20, help="outstanding jobs per connection")
    ap.add_argument("--page-kb", type=int, default=2, help="size of each page (pages.py /page/<n>)")
    ap.add_argument("--concurrency", type=int, default=64, help="scraper fetches in flight")
    ap.add_argument("--settle", type=float, default=0.5, help="seconds idle before each sample")
    ap.add_argument("--stall", type=float, default=120.0, help="give up after this long without a result")
    args = ap.parse_args()
    # SIGTERM (e.g. from ``timeout``) unwinds like Ctrl-C, so the components and the broker stop
    signal.signal(signal.SIGTERM, _exit_on_signal)

    with broker() as bootstrap, tempfile.TemporaryDirectory() as tmp, start_pages() as pages:
        _settings, stack = bench_stack(bootstrap, tmp, args.concurrency)
        try:
            stack.processors()
            ws_url = stack.edge(EDGE)
            page = f"{pages}/page/{{n}}?kb={args.page_kb}"
            samples = asyncio.run(measure(stack, ws_url, page, args))
        finally:
            stack.stop_all()
    report(samples, args)


def _exit_on_signal(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(f"stopped by signal {signum}")


def report(samples: list[Sample], args: argparse.Namespace) -> None:
    run = [s for s in samples if s.jobs >= 0]
    after = samples[-1]
    warm, end = run[0], run[-1]
    fit = statistics.linear_regression([s.jobs for s in run], [s.rss for s in run])
    fit_anon = statistics.linear_regression([s.jobs for s in run], [s.anon for s in run])
    rate = end.jobs / (end.seconds - warm.seconds)
    print()
    print(f"jobs={args.jobs:,} after a {args.step:,}-job warm-up; clients={args.clients} "
          f"window={args.window} page={args.page_kb}KB; {rate:.0f} jobs/s")
    head = (f"{'jobs':>9}{'s':>6}{'RSS':>8}{'anon':>8}{'HWM':>8}{'conns':>7}{'waiting':>9}{'fds':>6}"
            + "".join(f"{n:>11}" for n in OTHERS))
    print(head)
    for s in samples:
        label = f"{s.jobs:>9,}" if s.jobs >= 0 else f"{'closed':>9}"
        print(f"{label}{s.seconds:>6.0f}{s.rss:>8.1f}{s.anon:>8.1f}{s.hwm:>8.1f}{s.connections:>7.0f}"
              f"{s.outstanding:>9.0f}{s.fds:>6.0f}" + "".join(f"{s.others[n]:>11.1f}" for n in OTHERS))
    print("(MiB; RSS/anon/HWM are the edge's VmRSS/RssAnon/VmHWM; conns and waiting from its /metrics)")
    per_100k = fit.slope * 100_000
    print(f"edge RSS after warm-up: {warm.rss:.1f} MiB; at the end: {end.rss:.1f} MiB "
          f"({end.rss - warm.rss:+.1f} over {end.jobs:,} jobs); after the clients left: {after.rss:.1f} MiB")
    print(f"edge growth per 100,000 finished jobs (least squares over {len(run)} samples): "
          f"{per_100k:+.2f} MiB ({fit.slope * MiB:+.1f} bytes/job); anonymous memory "
          f"{fit_anon.slope * 100_000:+.2f} MiB")
    top = max(s.rss for s in samples)
    print(f"edge peak RSS (VmHWM): {after.hwm:.1f} MiB; highest sampled (quiescent) RSS: {top:.1f} MiB")
    for name in OTHERS:
        other = statistics.linear_regression([s.jobs for s in run], [s.others[name] for s in run])
        print(f"{name}: {warm.others[name]:.1f} -> {end.others[name]:.1f} MiB "
              f"({other.slope * 100_000:+.1f} MiB per 100,000 jobs)")


if __name__ == "__main__":
    main()
