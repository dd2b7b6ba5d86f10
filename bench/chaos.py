"""The chaos test, long form: several runs in a row, figures for docs/benchmarks.md.

Each run starts the whole service (state, validator, scraper, two edges) as real processes on
the real broker, then has clients submit ``--jobs`` jobs while dropping their connections at
random and resuming, and SIGKILLs one process every ``--kill-every`` seconds (every kind in each
round of five) and restarts it. A run passes when no job is lost, every job has exactly one
terminal state, no job used more attempts than the limit, and ``replay rebuild`` reproduces
``job-state`` exactly (tests/support/chaos.py has the checks). Exits non-zero if any run fails.

    .venv/bin/python bench/chaos.py --runs 3 --jobs 5000 --clients 30 --rate 60 --kill-every 2

``--broker-kills`` runs on a broker of its own and kills it too: the single node (killed, then
started again on its data dir and port after ``--broker-down`` seconds), or with ``--nodes 3``
one node of a three-node cluster at a time:

    .venv/bin/python bench/chaos.py --broker-kills --runs 1 --jobs 3000
    .venv/bin/python bench/chaos.py --broker-kills --nodes 3 --runs 1 --jobs 3000
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.e2e import broker
from scrapeledger.broker import LocalBroker, LocalCluster
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
    ap.add_argument("--broker-kills", action="store_true",
                    help="run on an own broker and SIGKILL it too (one node at a time)")
    ap.add_argument("--nodes", type=int, default=1, help="with --broker-kills: cluster size")
    ap.add_argument("--broker-down", type=float, default=3.0, help="seconds a killed node stays dead")
    args = ap.parse_args()
    failed = 0
    with contextlib.ExitStack() as resources:
        owned: LocalBroker | LocalCluster | None = None
        if args.broker_kills:
            data = Path(resources.enter_context(tempfile.TemporaryDirectory(prefix="chaos-kafka-")))
            owned = LocalCluster(args.nodes, port=0, data_dir=data) if args.nodes > 1 else (
                LocalBroker(port=0, data_dir=data))
            bootstrap = owned.start()
            resources.callback(owned.stop)
        else:
            bootstrap = resources.enter_context(broker())
        pages = resources.enter_context(start_pages())
        for run in range(1, args.runs + 1):
            cfg = ChaosConfig(
                jobs=args.jobs, clients=args.clients, rate=args.rate, kill_every=args.kill_every,
                disconnect_every=args.disconnect_every, deadline_s=args.deadline, seed=run,
                broker_down_s=args.broker_down,
            )
            settings = Settings(
                bootstrap_servers=bootstrap, topic_prefix=f"chaos-{uuid.uuid4().hex[:8]}.",
                partitions=3, delivery_partitions=8,
            )
            with tempfile.TemporaryDirectory() as tmp:
                report = run_chaos(settings, Path(tmp), pages, cfg, owned)
            problems = report.problems()
            failed += bool(problems)
            print(f"run {run}: {'PASS' if not problems else 'FAIL'}: {report.summary()}", flush=True)
            for p in problems:
                print(f"  - {p}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
