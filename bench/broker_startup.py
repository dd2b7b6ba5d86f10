"""Start-up time of the local Apache Kafka broker (``scrapeledger broker``), median of N.

One warm-up start resolves the Maven cache (if needed) and warms the page cache; then N starts
on fresh data directories, each timed from process launch until a client has created a topic.

    .venv/bin/python bench/broker_startup.py --runs 3
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from scrapeledger.broker import KAFKA_VERSION, LocalBroker, kafka_classpath


def timed_start(data_dir: Path) -> float:
    broker = LocalBroker(port=0, data_dir=data_dir)
    began = time.perf_counter()
    try:
        broker.start()
        return time.perf_counter() - began
    finally:
        broker.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    t0 = time.perf_counter()
    kafka_classpath()
    print(f"Maven cache ready in {time.perf_counter() - t0:.1f}s (0 when already cached)")
    with tempfile.TemporaryDirectory() as tmp:
        timed_start(Path(tmp) / "warmup")
        times = [timed_start(Path(tmp) / f"run{i}") for i in range(args.runs)]
    print(f"Apache Kafka {KAFKA_VERSION} start-up (format + start + first topic created):")
    for i, t in enumerate(times, 1):
        print(f"  run {i}: {t:.2f}s")
    print(f"median of {args.runs}: {statistics.median(times):.2f}s")


if __name__ == "__main__":
    main()
