"""Resume latency: reconnect to an edge and get a finished job's result, p50/p99.

Runs ``--jobs`` jobs to completion, then for each one opens a *new* connection to a *different*
edge pod and sends ``resume``: the time from connecting to holding the result frame is what a
client that lost its connection waits. The baseline, in the same run, is the same fresh
connection answered by the edge alone (a malformed frame and its ``error`` reply, no Kafka):
the difference is the ledger round trip (``ClientAttached`` -> materializer -> delivery).

    .venv/bin/python bench/resume.py --jobs 300
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import orjson
from tornado.websocket import websocket_connect

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.e2e import broker, pct
from scrapeledger.settings import Settings
from tests.support.stack import Stack, start_pages


async def run_jobs(url: str, pages: str, n: int) -> list[str]:
    conn = await websocket_connect(url)
    for i in range(n):
        await conn.write_message(orjson.dumps({"event": "job", "message": f"{pages}/page/{i}"}).decode())
    ids, done = [], 0
    while done < n:
        frame = orjson.loads(await conn.read_message() or b"{}")
        if frame["event"] == "accepted":
            ids.append(frame["job_id"])
        elif frame["event"] == "result":
            done += 1
    conn.close()
    return ids


async def timed(url: str, frame: dict[str, object], expect: str) -> float:
    start = time.perf_counter()
    conn = await websocket_connect(url, max_message_size=64 * 1024 * 1024)
    await conn.write_message(orjson.dumps(frame).decode())
    reply = orjson.loads(await conn.read_message() or b"{}")
    elapsed = time.perf_counter() - start
    conn.close()
    assert reply["event"] == expect, reply
    return elapsed


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", type=int, default=300)
    args = ap.parse_args()
    with broker() as bootstrap, tempfile.TemporaryDirectory() as tmp, start_pages() as pages:
        settings = Settings(bootstrap_servers=bootstrap, topic_prefix=f"rs-{uuid.uuid4().hex[:8]}-",
                            state_dir=f"{tmp}/state")
        stack = Stack(settings, Path(tmp), env={"SCRAPELEDGER_LOG_LEVEL": "WARNING"})
        try:
            stack.processors()
            first, second = stack.edge("edge-a"), stack.edge("edge-b")

            async def go() -> tuple[list[float], list[float]]:
                ids = await run_jobs(first, pages, args.jobs)
                base, resume = [], []
                for job_id in ids:  # interleaved, so both see the same machine load
                    base.append(await timed(second, {"event": "nonsense"}, "error"))
                    resume.append(await timed(second, {"event": "resume", "job_id": job_id}, "result"))
                return base, resume

            base, resume = asyncio.run(go())
        finally:
            stack.stop_all()
    print(f"{args.jobs} finished jobs, each resumed on another pod over a fresh connection")
    print(f"{'run':<44}{'p50 ms':>9}{'p99 ms':>9}{'mean ms':>9}")
    for label, xs in (("baseline: connect + error frame (no Kafka)", base),
                      ("connect + resume -> result", resume)):
        print(f"{label:<44}{pct(xs, 50) * 1000:>9.1f}{pct(xs, 99) * 1000:>9.1f}"
              f"{statistics.mean(xs) * 1000:>9.1f}")
    print(f"ratio of p50: {pct(resume, 50) / pct(base, 50):.1f}x")


if __name__ == "__main__":
    main()
