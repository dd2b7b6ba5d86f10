"""Scrapeledger against its baselines, in one invocation: jobs/s, latency, CPU per job, ratios.

Starts, on this machine: a broker (``KAFKA_BOOTSTRAP_SERVERS``, or a local one), the page server
(bench/compare_pages.py: tests/support/pages.py's ~47 KB page, optionally answering after
``--page-delay-ms``), and ``scrapeledger validator``, ``scraper``, ``state`` and ``edge`` as
separate processes with a fresh topic prefix, on ports picked here, each ready when its
``/readyz`` answers 200. Right after the edge's ``/readyz`` turns 200 one job is submitted, and
whether the edge accepted it is reported ("ready means ready"). Then, ``--rounds`` times, in
alternation (every client in its own process, so its CPU is its own):

* the idle stack: each process's CPU over ``--idle-seconds``, as % of one core;
* closed loop C=8: 8 WebSocket connections, one job in flight each (bench/compare_clients.py);
* baseline: aiohttp ``ClientSession`` fetching the pages directly, ``--concurrency`` in flight;
* closed loop C=64;
* baseline: Scrapy (bench/scrapy_pages.py), ``CONCURRENT_REQUESTS=--concurrency``, with
  ``CONCURRENT_ITEMS=1`` and (unless ``--no-scrapy-defaults``) at Scrapy's default 100;
* saturation: ``--sat-connections`` connections each pipelining ``--sat-window`` jobs.

For every stack mode: jobs/s, p50/p99 submit-to-result latency, and the CPU each process of the
stack (broker JVM, validator, scraper, state, edge; read from /proc/<pid>/stat) and the page server
spent per job. The report is the median over rounds, ratios taken within a round, and the
Performance issue's goals with PASS/FAIL; ``--json FILE`` writes every figure.

    .venv/bin/python bench/compare.py                 # ./dev bench compare; ~2-3 min on 2 cores
    .venv/bin/python bench/compare.py --rounds 3 --json /tmp/compare.json
    .venv/bin/python bench/compare.py --seconds 10    # each stack mode for 10 s instead of N jobs
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from types import FrameType
from typing import Any

import orjson
from tornado.websocket import websocket_connect

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.compare_clients import START, page_title, page_url
from bench.e2e import cpu_busy, pct
from scrapeledger.broker import KAFKA_VERSION, LocalBroker, free_port
from scrapeledger.settings import Settings
from tests.support.procs import ROOT, http_get, spawn_listening
from tests.support.stack import Stack, eventually

STACK = ("broker", "validator", "scraper", "state", "edge")
"""The processes whose CPU is the stack's (the page server and the clients are not)."""
PROCESSORS = ("validator", "scraper", "state")
TICKS = os.sysconf("SC_CLK_TCK")
Flat = dict[str, float]
"""One round's figures, flat: ``"c64.jobs_s"``, ``"c64.cpu.edge"``, ``"idle.stack"``..."""


@dataclass(frozen=True)
class Mode:
    key: str
    label: str
    connections: int
    window: int
    jobs: int


@dataclass(frozen=True)
class Goal:
    label: str
    key: str
    op: str  # ">=" or "<="
    limit: float

    def met(self, value: float) -> bool:
        return value >= self.limit if self.op == ">=" else value <= self.limit


GOALS = (
    Goal("C=64 jobs/s / aiohttp-direct pages/s", "ratio.c64_vs_aiohttp", ">=", 0.2),
    Goal("saturation jobs/s / Scrapy pages/s", "ratio.sat_vs_scrapy", ">=", 3.0),
    Goal("C=8 p50 latency, ms", "c8.p50_ms", "<=", 25.0),
    Goal("C=8 p99 latency, ms", "c8.p99_ms", "<=", 60.0),
    Goal("C=64 stack CPU, ms/job", "c64.cpu.stack", "<=", 3.0),
    Goal("saturation stack CPU, ms/job", "sat.cpu.stack", "<=", 2.0),
    Goal("idle stack CPU, % of one core", "idle.stack", "<=", 3.0),
)


# --- processes ---------------------------------------------------------------------------------


def cpu_seconds(pids: dict[str, int]) -> dict[str, float]:
    """utime + stime of each process (all its threads) so far, from /proc/<pid>/stat."""
    out = {}
    for name, pid in pids.items():
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        out[name] = (int(fields[11]) + int(fields[12])) / TICKS
    return out


@contextlib.contextmanager
def kafka() -> Iterator[tuple[str, int | None]]:
    """Bootstrap servers and the broker JVM's pid (None for an external cluster)."""
    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        yield os.environ["KAFKA_BOOTSTRAP_SERVERS"], None
        return
    with LocalBroker(port=0) as broker:
        yield broker.bootstrap, broker.pid


@contextlib.contextmanager
def page_server(delay_ms: float) -> Iterator[tuple[str, int]]:
    """bench/compare_pages.py as a process: its base URL and pid."""
    with spawn_listening("bench.compare_pages", "--delay-ms", str(delay_ms),
                         banner="pages listening on") as port:
        base = f"http://127.0.0.1:{port}"
        status, body = http_get(f"{base}/pid")
        if status != 200:
            raise RuntimeError(f"page server: /pid answered {status} {body!r}")
        yield base, int(body)


def free_ports(n: int) -> list[int]:
    ports: list[int] = []
    while len(ports) < n:
        if (port := free_port()) not in ports:
            ports.append(port)
    return ports


def wait_ready(stack: Stack, name: str, url: str, timeout: float = 180.0) -> float:
    """Poll ``url`` (a ``/readyz``) until 200; fail at once if the process exits. Returns when."""
    proc = stack.procs[name]

    def ready() -> bool:
        if proc.popen.poll() is not None:
            raise RuntimeError(f"{name} exited ({proc.popen.returncode}):\n{proc.output()[-4000:]}")
        return http_get(url)[0] == 200

    eventually(ready, timeout=timeout, what=f"{name} {url}", interval=0.05)
    return time.perf_counter()


def check_alive(stack: Stack) -> None:
    for name, proc in stack.procs.items():
        if proc.popen.poll() is not None:
            raise RuntimeError(f"{name} exited ({proc.popen.returncode}):\n{proc.output()[-4000:]}")


@dataclass
class Run:
    figures: dict[str, Any]
    """The client's own JSON line (its ``cpu_s`` included)."""
    cpu_s: dict[str, float]
    """CPU seconds each watched process used between the client's two lines."""
    machine_busy: float
    """The whole machine's busy fraction (all cores) meanwhile, from /proc/stat."""


def run_client(argv: list[str], watched: dict[str, int]) -> Run:
    """Run one client process; read the watched processes' CPU when it starts and ends measuring."""
    with tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=err, text=True)
        assert proc.stdout is not None
        try:
            started = proc.stdout.readline().strip() == START
            before, (busy0, total0) = cpu_seconds(watched), cpu_busy()
            line = proc.stdout.readline() if started else ""
            after, (busy1, total1) = cpu_seconds(watched), cpu_busy()
            code = proc.wait(120) if line else proc.wait(10)
            if not line or code != 0:
                err.seek(0)
                raise RuntimeError(f"{' '.join(argv[1:4])} failed (exit {code}):\n{err.read()[-4000:]}")
        finally:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            proc.stdout.close()
    busy = (busy1 - busy0) / max(total1 - total0, 1.0)
    return Run(json.loads(line), {k: after[k] - before[k] for k in watched}, busy)


# --- the bench ---------------------------------------------------------------------------------


class Bench:
    """The running stack, its page server and broker, and the measurements taken on them."""

    def __init__(self, args: argparse.Namespace, stack: Stack, pids: dict[str, int], pages: str,
                 ws_url: str) -> None:
        self.args = args
        self.stack = stack
        self.pids = pids
        """Every watched process: the stack's (broker when local) and ``pages``."""
        self.pages = pages
        self.ws_url = ws_url
        self.modes = (
            Mode("c8", "closed loop C=8", 8, 1, args.c8_jobs),
            Mode("c64", "closed loop C=64", 64, 1, args.c64_jobs),
            Mode("sat", f"saturation {args.sat_connections}x{args.sat_window}", args.sat_connections,
                 args.sat_window, args.sat_jobs),
        )

    def ws(self, tag: str, connections: int, window: int, jobs: int, seconds: float = 0.0) -> Run:
        argv = [sys.executable, "-m", "bench.compare_clients", "ws", "--url", self.ws_url,
                "--pages", self.pages, "--tag", tag, "--kb", str(self.args.page_kb),
                "--connections", str(connections), "--window", str(window)]
        argv += ["--seconds", str(seconds)] if seconds else ["--jobs", str(jobs)]
        run = run_client(argv, self.pids)
        check_alive(self.stack)
        if run.figures["bad"]:
            raise RuntimeError(f"{tag}: {run.figures['bad']} bad results, e.g. {run.figures['bad_examples']}")
        return run

    def mode(self, rnd: int, mode: Mode) -> Flat:
        run = self.ws(f"r{rnd}-{mode.key}", mode.connections, mode.window, mode.jobs, self.args.seconds)
        f = run.figures
        jobs = f["jobs"]
        out: Flat = {
            "jobs": jobs, "seconds": f["seconds"], "jobs_s": jobs / f["seconds"],
            "p50_ms": pct(f["latency_ms"], 50), "p99_ms": pct(f["latency_ms"], 99),
            "accepted_p50_ms": pct(f["accepted_ms"], 50),
            "cpu.driver": f["cpu_s"] * 1000 / jobs, "machine_busy_pct": run.machine_busy * 100,
        }
        out.update({f"cpu.{k}": v * 1000 / jobs for k, v in run.cpu_s.items()})
        out["cpu.stack"] = sum(out[f"cpu.{k}"] for k in STACK if k in self.pids)
        print(f"round {rnd}: {mode.label:<22}{out['jobs_s']:>8.0f} jobs/s  p50 {out['p50_ms']:.0f} ms  "
              f"p99 {out['p99_ms']:.0f} ms  stack CPU {out['cpu.stack']:.2f} ms/job", file=sys.stderr)
        return {f"{mode.key}.{k}": v for k, v in out.items()}

    def baseline(self, rnd: int, key: str, argv: list[str], label: str) -> Flat:
        run = run_client(argv, {"pages": self.pids["pages"]})
        f = run.figures
        if f["bad"]:
            raise RuntimeError(f"{label}: {f['bad']} bad pages, e.g. {f.get('bad_examples')}")
        n = f["pages"]
        out = {"pages_s": n / f["seconds"], "cpu.client": f["cpu_s"] * 1000 / n,
               "cpu.pages": run.cpu_s["pages"] * 1000 / n, "machine_busy_pct": run.machine_busy * 100}
        print(f"round {rnd}: {label:<22}{out['pages_s']:>8.0f} pages/s client CPU "
              f"{out['cpu.client']:.2f} ms/page", file=sys.stderr)
        return {f"{key}.{k}": v for k, v in out.items()}

    def aiohttp(self, rnd: int) -> Flat:
        a = self.args
        argv = [sys.executable, "-m", "bench.compare_clients", "aiohttp", "--pages", self.pages,
                "--tag", f"r{rnd}-aiohttp", "--kb", str(a.page_kb), "--pages-n", str(a.pages_n),
                "--concurrency", str(a.concurrency), "--warmup", str(a.warmup_pages)]
        return self.baseline(rnd, "aiohttp", argv, "aiohttp direct")

    def scrapy(self, rnd: int, concurrent_items: int) -> Flat:
        a = self.args
        key = "scrapy" if concurrent_items else "scrapy_defaults"
        argv = [sys.executable, str(ROOT / "bench" / "scrapy_pages.py"), "--pages", self.pages,
                "--tag", f"r{rnd}-{key}", "--kb", str(a.page_kb), "--pages-n", str(a.pages_n),
                "--concurrency", str(a.concurrency), "--warmup", str(a.warmup_pages),
                "--concurrent-items", str(concurrent_items)]
        return self.baseline(rnd, key, argv, key.replace("_", " "))

    def idle(self, rnd: int) -> Flat:
        time.sleep(self.args.settle_seconds)  # let the last jobs' trailing events pass, then measure
        before, started = cpu_seconds(self.pids), time.perf_counter()
        time.sleep(self.args.idle_seconds)
        after, seconds = cpu_seconds(self.pids), time.perf_counter() - started
        out = {f"idle.{k}": (after[k] - before[k]) / seconds * 100 for k in self.pids}
        out["idle.stack"] = sum(out[f"idle.{k}"] for k in STACK if k in self.pids)
        print(f"round {rnd}: idle stack {out['idle.stack']:.1f} % of a core", file=sys.stderr)
        return out

    def round(self, rnd: int) -> Flat:
        """One round, baselines and stack modes alternating; ratios within the round."""
        c8, c64, sat = self.modes
        fig = self.idle(rnd)
        fig |= self.mode(rnd, c8)
        fig |= self.aiohttp(rnd)
        fig |= self.mode(rnd, c64)
        if importlib.util.find_spec("scrapy") is not None:
            fig |= self.scrapy(rnd, concurrent_items=1)
            if self.args.scrapy_defaults:
                fig |= self.scrapy(rnd, concurrent_items=0)
        fig |= self.mode(rnd, sat)
        fig["ratio.c64_vs_aiohttp"] = fig["c64.jobs_s"] / fig["aiohttp.pages_s"]
        scrapy = max((fig[k] for k in ("scrapy.pages_s", "scrapy_defaults.pages_s") if k in fig),
                     default=None)
        if scrapy is not None:
            fig["ratio.sat_vs_scrapy"] = fig["sat.jobs_s"] / scrapy
        return fig


# --- ready means ready -------------------------------------------------------------------------


async def submit_once(ws_url: str, url: str) -> tuple[str, float, Any]:
    """Connect, submit one job, read one frame: (outcome, ms, connection when accepted)."""
    started = time.perf_counter()
    try:
        conn = await websocket_connect(ws_url, max_message_size=64 * 1024 * 1024)
    except OSError as exc:
        return f"connect failed: {exc}", (time.perf_counter() - started) * 1000, None
    await conn.write_message(orjson.dumps({"event": "job", "message": url, "ref": 0}).decode())
    raw = await asyncio.wait_for(conn.read_message(), 30)
    ms = (time.perf_counter() - started) * 1000
    if raw is None:
        return f"closed {conn.close_code} {conn.close_reason!r}", ms, None
    frame = orjson.loads(raw)
    if frame.get("event") != "accepted":
        conn.close()
        return f"{frame.get('event')} frame: {frame}", ms, None
    return "accepted", ms, conn


async def ready_check(
    ws_url: str, url: str, title: str, processors: dict[str, str], result_timeout: float = 60.0
) -> dict[str, Any]:
    """The first submit, sent as soon as the edge's /readyz turned 200; then retries (every 0.2 s)
    until one is accepted, and that job's result (which needs the processors too)."""
    ready_at = time.perf_counter()
    first, first_ms, conn = await submit_once(ws_url, url)
    report: dict[str, Any] = {
        "first_submit": first, "first_submit_ms": first_ms, "rejected_submits": 0,
        "processors_ready": {n: http_get(u)[0] == 200 for n, u in processors.items()},
    }
    deadline = time.monotonic() + 60
    while conn is None and time.monotonic() < deadline:
        report["rejected_submits"] += 1
        await asyncio.sleep(0.2)  # pacing between attempts, not a readiness guess
        _, _, conn = await submit_once(ws_url, url)
    if conn is None:
        raise RuntimeError(f"the edge accepted no submit within 60 s of /readyz: {first}")
    accepted = time.perf_counter()
    report["accepted_after_readyz_s"] = accepted - ready_at
    try:
        raw = await asyncio.wait_for(conn.read_message(), result_timeout)
    except TimeoutError:
        raw = None
    conn.close()
    frame = orjson.loads(raw) if raw is not None else {}
    report["result_ms"] = (time.perf_counter() - accepted) * 1000 if raw is not None else None
    report["result"] = (
        "ok" if frame.get("status") == "succeeded" and title in (frame.get("html") or "")
        else f"WRONG: {str(frame)[:300]}" if raw is not None
        else f"none within {result_timeout:.0f} s"
    )
    return report


# --- report ------------------------------------------------------------------------------------


def medians(rounds: list[Flat]) -> Flat:
    keys = dict.fromkeys(k for r in rounds for k in r)
    return {k: statistics.median(r[k] for r in rounds if k in r) for k in keys}


def cell(med: Flat, key: str, fmt: str = ".2f", width: int = 10) -> str:
    """One right-aligned figure of the report, or n/a where the run did not measure it."""
    return f"{med[key]:>{width}{fmt}}" if key in med else f"{'n/a':>{width}}"


def report(args: argparse.Namespace, med: Flat, ready: dict[str, Any], info: dict[str, Any],
           names: list[str]) -> list[dict[str, Any]]:
    """Print every table, in order; the goals with their verdicts (for ``--json``)."""
    report_header(args, info)
    report_ready(ready)
    report_baselines(args, med, info)
    modes = stack_modes(args)
    report_modes(med, modes)
    report_cpu(args, med, names, modes)
    return report_goals(med)


def report_header(args: argparse.Namespace, info: dict[str, Any]) -> None:
    """What was measured, on what: the page, the machine, the versions."""
    print(f"\nScrapeledger vs baselines: median of {args.rounds} round(s); {args.page_kb} KB page, "
          f"page delay {args.page_delay_ms:g} ms; {info['cores']} cores, load average "
          f"{info['load_start']:.1f} at start, {info['load_end']:.1f} at end")
    print(f"Python {info['python']}, aiohttp {info['aiohttp']}, Scrapy {info['scrapy'] or 'n/a'}, "
          f"tornado {info['tornado']}, Kafka {info['kafka']}; scraper {args.concurrency} in flight")


def report_ready(ready: dict[str, Any]) -> None:
    """Whether the first submit right after the edge's /readyz was accepted, and its result."""
    print("\nready means ready (first submit right after the edge's /readyz turned 200):")
    print(f"  edge /readyz 200 {ready['edge_ready_s']:.1f} s after start; first submit: "
          f"{ready['first_submit']} ({ready['first_submit_ms']:.0f} ms)")
    if ready["rejected_submits"]:
        print(f"  NOT READY: {ready['rejected_submits']} more submits refused; the first accepted "
              f"{ready['accepted_after_readyz_s']:.2f} s after /readyz")
    not_ready = [n for n, ok in ready["processors_ready"].items() if not ok]
    after = f" {ready['result_ms']:.0f} ms after accepted" if ready["result_ms"] is not None else ""
    print(f"  processors not yet ready then: {', '.join(not_ready) or 'none'}; "
          f"its result: {ready['result']}{after}")


def report_baselines(args: argparse.Namespace, med: Flat, info: dict[str, Any]) -> None:
    """The baselines' table: pages/s and CPU per page of aiohttp and Scrapy."""
    print(f"\n{'baseline (own process)':<46}{'pages/s':>10}{'client CPU ms/page':>20}"
          f"{'page server ms/page':>21}{'machine busy':>14}")
    scrapy_v = info["scrapy"] or "(not installed)"
    rows = [("aiohttp", f"aiohttp ClientSession, {args.concurrency} in flight"),
            ("scrapy", f"Scrapy {scrapy_v}, {args.concurrency} conc., CONCURRENT_ITEMS=1"),
            ("scrapy_defaults", f"Scrapy {scrapy_v}, {args.concurrency} conc., defaults")]
    for key, label in rows:
        if key == "scrapy_defaults" and not args.scrapy_defaults:
            continue
        if f"{key}.pages_s" not in med:
            print(f"{label:<46}  skipped: Scrapy is not installed; pip install -e '.[bench]'")
            continue
        print(f"{label:<46}{cell(med, key + '.pages_s', ',.0f')}{cell(med, key + '.cpu.client', '.3f', 20)}"
              f"{cell(med, key + '.cpu.pages', '.3f', 21)}{cell(med, key + '.machine_busy_pct', '.0f', 13)}%")


def stack_modes(args: argparse.Namespace) -> list[tuple[str, str]]:
    """The stack modes' keys and labels, in report order."""
    return [("c8", "closed loop C=8 (8 conns x 1)"), ("c64", "closed loop C=64 (64 conns x 1)"),
            ("sat", f"saturation ({args.sat_connections} x {args.sat_window} = "
                    f"{args.sat_connections * args.sat_window} out)")]


def report_modes(med: Flat, modes: list[tuple[str, str]]) -> None:
    """The stack modes' table: jobs/s and latencies."""
    print(f"\n{'stack mode (driver in own process)':<36}{'jobs':>7}{'jobs/s':>9}{'p50 ms':>9}{'p99 ms':>9}"
          f"{'accepted p50 ms':>17}{'machine busy':>14}")
    for key, label in modes:
        print(f"{label:<36}{cell(med, key + '.jobs', ',.0f', 7)}{cell(med, key + '.jobs_s', ',.0f', 9)}"
              f"{cell(med, key + '.p50_ms', '.1f', 9)}{cell(med, key + '.p99_ms', '.1f', 9)}"
              f"{cell(med, key + '.accepted_p50_ms', '.1f', 17)}"
              f"{cell(med, key + '.machine_busy_pct', '.0f', 13)}%")


def report_cpu(args: argparse.Namespace, med: Flat, names: list[str], modes: list[tuple[str, str]]) -> None:
    """CPU per job of every process in every stack mode, then the idle stack's."""
    stack_names = [n for n in STACK if n in names]
    cols = [*stack_names, "stack", "pages", "driver"]
    head = "".join(f"{c:>10}" for c in cols)
    print(f"\n{'CPU ms per job':<24}{head}")
    for key, label in modes:
        print(f"{label.split(' (')[0]:<24}" + "".join(cell(med, f"{key}.cpu.{c}") for c in cols))
    note = "" if "broker" in names else " (external broker: not measured)"
    print(f"stack = {' + '.join(stack_names)}{note}")
    print(f"\n{'idle stack, % of one core':<24}" + "".join(f"{c:>10}" for c in cols[:-1]))
    print(f"{f'over {args.idle_seconds:g} s':<24}" + "".join(cell(med, f"idle.{c}") for c in cols[:-1]))


def report_goals(med: Flat) -> list[dict[str, Any]]:
    """The Performance issue's goals with PASS/FAIL; returned for ``--json`` too."""
    print(f"\n{'goal (issue: Performance)':<40}{'value':>10}{'goal':>10}")
    goals = []
    for g in GOALS:
        value = med.get(g.key)
        verdict = "n/a" if value is None else ("PASS" if g.met(value) else "FAIL")
        shown = f"{value:>10.2f}" if value is not None else f"{'n/a':>10}"
        print(f"{g.label:<40}{shown}{g.op + ' ' + f'{g.limit:g}':>10}  {verdict}")
        goals.append({"goal": g.label, "key": g.key, "value": value, "op": g.op, "limit": g.limit,
                      "verdict": verdict})
    if "ratio.sat_vs_scrapy" in med:
        print("(Scrapy pages/s in the ratio: the faster Scrapy run of the round)")
    return goals


# --- main --------------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--pages-n", type=int, default=3000, help="pages each baseline fetches")
    ap.add_argument("--c8-jobs", type=int, default=1500)
    ap.add_argument("--c64-jobs", type=int, default=3000)
    ap.add_argument("--sat-jobs", type=int, default=4000)
    ap.add_argument("--seconds", type=float, default=0.0,
                    help="run each stack mode this long instead of a number of jobs")
    ap.add_argument("--sat-connections", type=int, default=20)
    ap.add_argument("--sat-window", type=int, default=50, help="jobs in flight per connection")
    ap.add_argument("--page-kb", type=int, default=47)
    ap.add_argument("--page-delay-ms", type=float, default=0.0, help="the page server answers after this")
    ap.add_argument("--concurrency", type=int, default=64,
                    help="baselines' requests in flight, and the scraper's (SCRAPER_CONCURRENCY/PER_HOST)")
    ap.add_argument("--warmup-jobs", type=int, default=3000,
                    help="jobs run before measuring: the broker JVM compiles (C2) for its first minute or so")
    ap.add_argument("--warmup-pages", type=int, default=300)
    ap.add_argument("--idle-seconds", type=float, default=10.0)
    ap.add_argument("--settle-seconds", type=float, default=3.0, help="pause before the idle measurement")
    ap.add_argument("--no-scrapy-defaults", dest="scrapy_defaults", action="store_false",
                    help="skip Scrapy at its default CONCURRENT_ITEMS (the slower of the two)")
    ap.add_argument("--log-level", default="WARNING", help="SCRAPELEDGER_LOG_LEVEL of the stack")
    ap.add_argument("--json", type=Path, help="write every figure to this file")
    return ap.parse_args()


def start_stack(stack: Stack) -> tuple[int, dict[str, str], float]:
    """Start the four components at once, each on ports of its own; wait for the edge's /readyz.

    Returns the edge's port, the processors' /readyz URLs, and the edge's start-up seconds."""
    edge_port, edge_metrics, *metrics = free_ports(2 + len(PROCESSORS))
    readyz = {name: f"http://127.0.0.1:{port}/readyz" for name, port in zip(PROCESSORS, metrics, strict=True)}
    started = time.perf_counter()
    for name, port in zip(PROCESSORS, metrics, strict=True):
        stack.start(name, METRICS_PORT=str(port))
    stack.start("edge", port=edge_port, POD_NAME="edge", METRICS_PORT=str(edge_metrics))
    wait_ready(stack, "edge", f"http://127.0.0.1:{edge_port}/readyz")
    return edge_port, readyz, time.perf_counter() - started


def main() -> int:
    args = parse_args()
    signal.signal(signal.SIGTERM, _exit_on_signal)
    signal.signal(signal.SIGHUP, _exit_on_signal)
    scrapy_version = find_scrapy()
    load_start = os.getloadavg()[0]
    began = time.perf_counter()
    rounds, ready, pids = run_rounds(args, began)
    med = medians(rounds)
    info = {"cores": os.cpu_count(), "load_start": load_start, "load_end": os.getloadavg()[0],
            "python": platform.python_version(), "aiohttp": version("aiohttp"),
            "tornado": version("tornado"), "scrapy": scrapy_version, "kafka": KAFKA_VERSION,
            "broker": "local" if "broker" in pids else "external",
            "wall_s": time.perf_counter() - began}
    goals = report(args, med, ready, info, list(pids))
    print(f"\n(whole run {info['wall_s']:.0f} s)")
    if args.json:
        args.json.write_text(json.dumps({
            "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
            "info": info, "ready": ready, "rounds": rounds, "median": med, "goals": goals,
        }, indent=1))
    return 0


def find_scrapy() -> str | None:
    """Scrapy's version, or None (and a note) when it is not installed: its baseline is skipped."""
    if importlib.util.find_spec("scrapy") is not None:
        return version("scrapy")
    print("Scrapy baseline: skipped, Scrapy is not installed; pip install -e '.[bench]'", file=sys.stderr)
    return None


def run_rounds(args: argparse.Namespace, began: float) -> tuple[list[Flat], dict[str, Any], dict[str, int]]:
    """Broker, page server and stack up; the ready check, the warm-up, then every round.

    Returns the rounds' figures, the ready check's report and the measured processes' pids; all
    processes are stopped again when it returns (or raises)."""
    with contextlib.ExitStack() as cleanup:  # unwinds: stack processes, page server, broker
        bootstrap, broker_pid = cleanup.enter_context(kafka())
        tmp = Path(cleanup.enter_context(tempfile.TemporaryDirectory()))
        pages, pages_pid = cleanup.enter_context(page_server(args.page_delay_ms))
        settings = Settings(bootstrap_servers=bootstrap, topic_prefix=f"cmp-{uuid.uuid4().hex[:8]}-",
                            state_dir=str(tmp / "state"))
        stack = Stack(settings, tmp, env=stack_env(args))
        cleanup.callback(stack.stop_all)
        edge_port, readyz, edge_ready_s = start_stack(stack)
        ws_url = f"ws://127.0.0.1:{edge_port}/"
        ready = asyncio.run(ready_check(ws_url, page_url(pages, "ready", 0, args.page_kb),
                                        page_title("ready", 0), readyz))
        ready["edge_ready_s"] = edge_ready_s
        for name, url in readyz.items():
            wait_ready(stack, name, url)
        pids = {name: stack.procs[name].popen.pid for name in ("validator", "scraper", "state", "edge")}
        pids |= {"pages": pages_pid} | ({"broker": broker_pid} if broker_pid is not None else {})
        bench = Bench(args, stack, pids, pages, ws_url)
        print(f"stack up in {time.perf_counter() - began:.0f} s; warming up with {args.warmup_jobs} jobs",
              file=sys.stderr)
        bench.ws("warm", 20, 25, args.warmup_jobs)
        return [bench.round(rnd) for rnd in range(1, args.rounds + 1)], ready, pids


def stack_env(args: argparse.Namespace) -> dict[str, str]:
    """The stack's environment: production timings, and the scraper as wide as the baselines."""
    return {
        "SCRAPELEDGER_LOG_LEVEL": args.log_level,
        # every page is on one host: the per-host cap at the process's concurrency, as the
        # baselines have none
        "SCRAPER_CONCURRENCY": str(args.concurrency), "SCRAPER_PER_HOST": str(args.concurrency),
        # Stack's test timings replaced by the production defaults
        "SCRAPELEDGER_COMMIT_INTERVAL_S": str(Settings.model_fields["commit_interval_s"].default),
        "SCRAPER_TIMEOUT_S": str(Settings.model_fields["scraper_timeout_s"].default),
    }


def _exit_on_signal(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(f"stopped by signal {signum}")


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # everything started is stopped by then (the with-blocks unwound)
        sys.exit("interrupted")
