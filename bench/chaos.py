"""The chaos test, long form: several runs in a row, figures for docs/benchmarks.md.

Each run starts the whole service (state, validator, scraper, two edges) as real processes on
the real broker, then has clients submit ``--jobs`` jobs while dropping their connections at
random and resuming, and SIGKILLs one process every ``--kill-every`` seconds (every kind in each
round of five) and restarts it. A run passes when no job is lost, every job has exactly one
terminal state, no job used more attempts than the limit, and ``replay rebuild`` reproduces
``job-state`` exactly (tests/support/chaos.py has the checks). Exits non-zero if any run fails.

    .venv/bin/python bench/chaos.py --runs 3 --jobs 5000 --clients 30 --rate 60 --kill-every 2
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.e2e import broker
from scrapeledger.settings import Settings
from tests.support.chaos import ChaosConfig, run_chaos
from tests.support.stack import start_pages


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--jobs", type=int, default=5000)
    ap.add_argument("--clients", type=int, default=30)
    ap.add_argument("--rate", type=float, default=60.0, help="submits per second, all clients together")
    ap.add_argument("--kill-every", type=float, default=2.0, help="mean seconds between SIGKILLs")
    ap.add_argument("--disconnect-every", type=float, default=4.0, help="mean seconds per client")
    ap.add_argument("--deadline", type=float, default=1800.0)
    args = ap.parse_args()
    failed = 0
    with broker() as bootstrap, start_pages() as pages:
        for run in range(1, args.runs + 1):
            cfg = ChaosConfig(
                jobs=args.jobs, clients=args.clients, rate=args.rate, kill_every=args.kill_every,
                disconnect_every=args.disconnect_every, deadline_s=args.deadline, seed=run,
            )
            settings = Settings(
                bootstrap_servers=bootstrap, topic_prefix=f"chaos-{uuid.uuid4().hex[:8]}.",
                partitions=3, delivery_partitions=8,
            )
            with tempfile.TemporaryDirectory() as tmp:
                report = run_chaos(settings, Path(tmp), pages, cfg)
            problems = report.problems()
            failed += bool(problems)
            print(f"run {run}: {'PASS' if not problems else 'FAIL'}: {report.summary()}", flush=True)
            for p in problems:
                print(f"  - {p}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
