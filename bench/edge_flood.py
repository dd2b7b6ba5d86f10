"""Edge under many connections: RSS with idle WebSockets, and behaviour at the connection cap.

Runs, in one go on this machine: the real broker (``KAFKA_BOOTSTRAP_SERVERS`` or a local one)
and one edge process (no processors: neither phase submits a job), then two phases:

1. **Idle.** ``--idle`` WebSocket connections (from ``--idle-addresses`` loopback addresses, so
   the per-address cap does not apply) are opened and held; the edge's VmRSS is read from /proc
   before and after (and per connection), with ``/healthz`` latency while they are open.
   They are closed before phase 2.
2. **Flood.** With ``EDGE_MAX_CONNECTIONS=--cap``, ``--flood`` connections each send a half HTTP
   request (the head never ends) from ``--flood-addresses`` loopback addresses, ``--burst`` at
   a time, as in the finding (20,000 half-sent requests exhausted the old edge's descriptors).
   Each flood connection is counted by how it ended: ``503`` at once, closed by the header
   timeout, or an error. Meanwhile, from an address of its own, ``/healthz`` is asked every
   ``--probe-every`` seconds (latency percentiles, failures) and a new WebSocket client tries
   to connect every second (refused with 503 at the cap?). The edge's RSS, CPU (from /proc)
   and log growth over the flood are reported.

    .venv/bin/python bench/edge_flood.py
    .venv/bin/python bench/edge_flood.py --idle 10000 --flood 20000 --cap 5000

``ulimit -n`` must allow this process ``--idle`` (and ``--cap`` + lingering) sockets; it raises
its own soft limit to the hard one. The edge raises its own at start.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import resource
import signal
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from types import FrameType
from typing import Any

import orjson
from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest
from tornado.websocket import WebSocketClientConnection, websocket_connect

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.e2e import broker
from scrapeledger.settings import Settings
from tests.support.stack import Stack

MiB = 1024 * 1024
HALF = b"GET /ws HTTP/1.1\r\nHost: edge\r\nUser-Agent: flood\r\n"


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise LookupError(pid)


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))]


async def healthz(base: str, source: str) -> float:
    """Seconds for one ``/healthz`` on a fresh connection (raises on failure)."""
    client = AsyncHTTPClient(force_instance=True)
    try:
        start = time.perf_counter()
        resp = await client.fetch(HTTPRequest(f"{base}/healthz", network_interface=source,
                                              connect_timeout=5, request_timeout=5))
        assert resp.body == b"ok\n"
        return time.perf_counter() - start
    finally:
        client.close()


async def start_probe(url: str, every: float) -> asyncio.subprocess.Process:
    """The probe (``/healthz``, new WebSocket clients) in a process of its own: the driver's
    loop is busy with its own thousands of sockets, and its lag is not the edge's."""
    return await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--probe", url, "--probe-every", str(every),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)


async def stop_probe(probe: asyncio.subprocess.Process) -> dict[str, Any]:
    out, _ = await asyncio.wait_for(probe.communicate(b"stop\n"), 60)  # stdin closes: it ends
    result: dict[str, Any] = orjson.loads(out.strip().splitlines()[-1])
    return result


async def idle_phase(url: str, pid: int, args: argparse.Namespace) -> dict[str, float]:
    before = rss_mib(pid)
    conns: list[WebSocketClientConnection] = []
    sem = asyncio.Semaphore(200)

    async def one(i: int) -> None:
        source = f"127.0.1.{1 + i % args.idle_addresses}"
        async with sem:
            conns.append(await websocket_connect(HTTPRequest(url, network_interface=source,
                                                             connect_timeout=60)))

    start = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(args.idle)))
    opened = time.perf_counter() - start
    await asyncio.sleep(args.settle)  # let the edge's allocator settle before the sample
    after = rss_mib(pid)
    probe = await start_probe(url, args.probe_every)
    await asyncio.sleep(args.idle_probe_s)  # the probe's duration, not a readiness wait
    lat = (await stop_probe(probe))["lat"]
    held = fds(pid)
    for c in conns:
        c.close()
    await asyncio.sleep(2)  # close handshakes (not a readiness wait: nothing to poll for)
    return {"before": before, "after": after, "opened_s": opened, "fds": held,
            "p50": pct(lat, 50), "p99": pct(lat, 99), "max": max(lat, default=float("nan")),
            "n": len(lat), "closed": rss_mib(pid)}


async def flood_phase(url: str, stack: Stack, pid: int, args: argparse.Namespace) -> dict[str, object]:
    host, port = "127.0.0.1", int(url.rsplit(":", 1)[1].strip("/"))
    outcomes: dict[str, int] = {}
    sem = asyncio.Semaphore(args.burst)

    async def flooder(i: int) -> None:
        source = f"127.0.2.{1 + i % args.flood_addresses}"
        async with sem:
            try:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection(host, port, local_addr=(source, 0)), 30)
            except (OSError, TimeoutError) as exc:
                outcomes[f"connect error {type(exc).__name__}"] = outcomes.get(
                    f"connect error {type(exc).__name__}", 0) + 1
                return
        try:
            writer.write(HALF)
            data = await asyncio.wait_for(reader.read(64), args.header_timeout + 30)
            kind = ("503" if data.startswith(b"HTTP/1.1 503") else
                    "closed (header timeout)" if not data else f"other {data[:12]!r}")
        except (OSError, TimeoutError) as exc:
            kind = f"error {type(exc).__name__}"
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
        outcomes[kind] = outcomes.get(kind, 0) + 1

    edge = stack.procs["edge-a"]
    log_before = sum(len(line) for line in edge.lines)
    rss_before, cpu_before = rss_mib(pid), cpu_s(pid)
    peak_rss, peak_fds = rss_before, fds(pid)
    # the probe runs in a process of its own: this one's loop is busy opening the flood
    probe = await start_probe(url, args.probe_every)
    start = time.perf_counter()
    flood = asyncio.ensure_future(asyncio.gather(*(flooder(i) for i in range(args.flood))))
    while not flood.done():
        await asyncio.wait({flood}, timeout=0.5)
        peak_rss, peak_fds = max(peak_rss, rss_mib(pid)), max(peak_fds, fds(pid))
    flood.result()
    seconds = time.perf_counter() - start
    result = await stop_probe(probe)
    probe_lat, probe_fail, ws_tries = result["lat"], result["fail"], result["ws"]
    return {
        "seconds": seconds, "outcomes": outcomes, "probe": probe_lat, "probe_fail": probe_fail,
        "ws": ws_tries, "rss_before": rss_before, "rss_peak": peak_rss, "rss_after": rss_mib(pid),
        "fds_peak": peak_fds, "cpu": cpu_s(pid) - cpu_before,
        "log_bytes": sum(len(line) for line in edge.lines) - log_before,
        "alive": edge.popen.poll() is None,
    }


async def probe_main(url: str, every: float) -> None:
    """The probe process: ``/healthz`` every ``every`` seconds and a new WebSocket client every
    second, until stdin closes; prints one JSON line with the latencies and outcomes."""
    base = url.replace("ws://", "http://").rstrip("/")
    lat: list[float] = []
    fail: list[str] = []
    ws: dict[str, int] = {}
    loop = asyncio.get_running_loop()
    stop = loop.run_in_executor(None, sys.stdin.read)

    async def prober() -> None:
        while not stop.done():
            try:
                lat.append(await healthz(base, "127.0.0.1"))
            except Exception as exc:
                fail.append(repr(exc)[:80])
            await asyncio.sleep(every)  # pacing of the probe, as a kubelet's period

    async def newcomer() -> None:
        while not stop.done():
            try:
                c = await websocket_connect(HTTPRequest(url, network_interface="127.0.0.9",
                                                        connect_timeout=5, request_timeout=5))
                c.close()
                kind = "connected"
            except HTTPClientError as exc:
                kind = f"HTTP {exc.code}"
            except Exception as exc:
                kind = type(exc).__name__
            ws[kind] = ws.get(kind, 0) + 1
            await asyncio.sleep(1.0)  # one new client per second

    await asyncio.gather(prober(), newcomer())
    print(orjson.dumps({"lat": lat, "fail": fail, "ws": ws}).decode(), flush=True)


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--probe":
        every = float(sys.argv[sys.argv.index("--probe-every") + 1])
        asyncio.run(probe_main(sys.argv[2], every))
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--idle", type=int, default=10_000, help="idle WebSocket connections (phase 1)")
    ap.add_argument("--idle-addresses", type=int, default=50)
    ap.add_argument("--flood", type=int, default=20_000, help="half-sent requests (phase 2)")
    ap.add_argument("--flood-addresses", type=int, default=100)
    ap.add_argument("--burst", type=int, default=2000, help="flood connections opening at once")
    ap.add_argument("--cap", type=int, default=5000, help="EDGE_MAX_CONNECTIONS in phase 2")
    ap.add_argument("--header-timeout", type=float, default=10.0, help="EDGE_HEADER_TIMEOUT_S")
    ap.add_argument("--probe-every", type=float, default=0.1)
    ap.add_argument("--settle", type=float, default=2.0)
    ap.add_argument("--idle-probe-s", type=float, default=20.0,
                    help="how long /healthz is probed with the idle connections open")
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, _exit_on_signal)
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    with broker() as bootstrap, tempfile.TemporaryDirectory() as tmp:
        settings = Settings(bootstrap_servers=bootstrap, topic_prefix=f"bench-{uuid.uuid4().hex[:8]}-",
                            state_dir=f"{tmp}/state")
        stack = Stack(settings, Path(tmp))
        try:
            url = stack.edge("edge-a", EDGE_MAX_CONNECTIONS=str(args.idle + 1000))
            pid = stack.procs["edge-a"].popen.pid
            idle = asyncio.run(idle_phase(url, pid, args))
            stack.terminate("edge-a")
            url = stack.edge("edge-a", EDGE_MAX_CONNECTIONS=str(args.cap),
                             EDGE_HEADER_TIMEOUT_S=str(args.header_timeout))
            pid = stack.procs["edge-a"].popen.pid
            flood = asyncio.run(flood_phase(url, stack, pid, args))
        finally:
            stack.stop_all()
    report(idle, flood, args)


def _exit_on_signal(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(f"stopped by signal {signum}")


def report(idle: dict[str, float], flood: dict[str, object], args: argparse.Namespace) -> None:
    per = (idle["after"] - idle["before"]) * MiB / args.idle
    print(f"\nidle: {args.idle:,} WebSocket connections opened in {idle['opened_s']:.1f} s; edge RSS "
          f"{idle['before']:.1f} -> {idle['after']:.1f} MiB ({per / 1024:.1f} KiB per connection), "
          f"{idle['fds']:.0f} fds; after closing {idle['closed']:.1f} MiB; /healthz ({idle['n']:.0f}) "
          f"p50 {idle['p50'] * 1000:.1f} ms p99 {idle['p99'] * 1000:.1f} ms max {idle['max'] * 1000:.1f} ms")
    probe = flood["probe"]
    assert isinstance(probe, list)
    print(f"flood: {args.flood:,} half-sent requests from {args.flood_addresses} addresses, "
          f"{args.burst} at a time, cap {args.cap:,}, header timeout {args.header_timeout:.0f} s: "
          f"{flood['seconds']:.1f} s")
    print(f"  flood connections: {flood['outcomes']}")
    print(f"  new WebSocket clients during the flood (1/s): {flood['ws']}")
    print(f"  /healthz every {args.probe_every:.1f} s: {len(probe)} answered, "
          f"{len(flood['probe_fail'])} failed {flood['probe_fail'][:3]}; "  # type: ignore[arg-type, index]
          f"p50 {pct(probe, 50) * 1000:.1f} ms, p95 {pct(probe, 95) * 1000:.1f} ms, "
          f"p99 {pct(probe, 99) * 1000:.1f} ms, max {max(probe, default=float('nan')) * 1000:.1f} ms"
          + (f", mean {statistics.fmean(probe) * 1000:.1f} ms" if probe else ""))
    print(f"  edge RSS {flood['rss_before']:.1f} -> peak {flood['rss_peak']:.1f} -> "
          f"{flood['rss_after']:.1f} MiB; peak fds {flood['fds_peak']}; CPU {flood['cpu']:.1f} s; "
          f"log grew {flood['log_bytes']:,} bytes; edge alive: {flood['alive']}")


if __name__ == "__main__":
    main()
