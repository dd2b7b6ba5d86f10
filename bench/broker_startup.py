"""Start-up time of the local Apache Kafka broker (``scrapeledger.broker.LocalBroker``), median of N.

Start-up cost is paid by every test session and every ``scrapeledger up``, so it is worth tracking.
One warm-up start resolves the Maven cache (if needed) and warms the page cache; then N starts on
fresh data directories, each timed from ``start()`` (storage format included) until a client has
created a topic. With ``--cold-maven`` it first times a resolve from Maven Central into an empty
Maven repository and an empty jar cache (both temporary; the real caches are not touched).
The result replaces the "## Local broker start-up" section of docs/benchmarks.md.

    .venv/bin/python bench/broker_startup.py --runs 3 [--cold-maven]
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import re
import statistics
import tempfile
import time
from pathlib import Path

from scrapeledger.broker import KAFKA_VERSION, LocalBroker, kafka_classpath

DOC = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"
HEADING = "## Local broker start-up"


def timed_start(data_dir: Path) -> float:
    broker = LocalBroker(port=0, data_dir=data_dir)
    began = time.perf_counter()
    try:
        broker.start()
        return time.perf_counter() - began
    finally:
        broker.stop()


def cold_resolve() -> tuple[float, int]:
    """Seconds and jar count for a first-ever resolve: empty ~/.m2 stand-in, empty jar cache."""
    with tempfile.TemporaryDirectory(prefix="bench-m2-") as tmp:
        saved = os.environ.get("MAVEN_OPTS")
        os.environ["MAVEN_OPTS"] = f"{saved or ''} -Dmaven.repo.local={tmp}/m2".strip()
        try:
            began = time.perf_counter()
            libs = kafka_classpath(Path(tmp) / "cache")
            return time.perf_counter() - began, len(list(libs.glob("*.jar")))
        finally:
            if saved is None:
                del os.environ["MAVEN_OPTS"]
            else:
                os.environ["MAVEN_OPTS"] = saved


def write_section(body: str) -> None:
    """Replace (or append) this benchmark's section, leaving every other section as it is."""
    text = DOC.read_text() if DOC.exists() else "# Benchmarks\n"
    section = f"{HEADING}\n\n{body.strip()}\n"
    pattern = re.compile(rf"^{re.escape(HEADING)}\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(text):
        text = pattern.sub(lambda _: section + "\n", text, count=1).rstrip() + "\n"
    else:
        text = text.rstrip() + "\n\n" + section
    DOC.parent.mkdir(parents=True, exist_ok=True)
    DOC.write_text(text)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--cold-maven", action="store_true", help="also time a resolve into empty caches")
    ap.add_argument("--no-write", action="store_true", help="print only; leave docs/benchmarks.md alone")
    args = ap.parse_args()

    cold: tuple[float, int] | None = None
    if args.cold_maven:
        cold = cold_resolve()
        print(f"cold Maven resolve (empty repository and jar cache): {cold[0]:.1f}s, {cold[1]} jars")
    libs, warmup, times = measure(args.runs)
    for i, t in enumerate(times, 1):
        print(f"run {i}: {t:.2f}s")
    print(f"median of {args.runs}: {statistics.median(times):.2f}s")
    if args.no_write:
        return
    write_section(section(libs, warmup, times, cold))
    print(f"wrote the {HEADING!r} section of {DOC}")


def measure(runs: int) -> tuple[Path, float, list[float]]:
    """The jar cache (resolved if needed), then one warm-up start and ``runs`` timed ones."""
    t0 = time.perf_counter()
    libs = kafka_classpath()
    print(f"jar cache {libs} ready in {time.perf_counter() - t0:.1f}s (about 0 when already cached)")
    with tempfile.TemporaryDirectory(prefix="bench-kafka-") as tmp:
        warmup = timed_start(Path(tmp) / "warmup")
        print(f"warm-up: {warmup:.2f}s")
        times = [timed_start(Path(tmp) / f"run{i}") for i in range(1, runs + 1)]
    return libs, warmup, times


def section(libs: Path, warmup: float, times: list[float], cold: tuple[float, int] | None) -> str:
    """The docs/benchmarks.md section: the runs, the machine they ran on, the command to redo them."""
    runs, median = len(times), statistics.median(times)
    jars = list(libs.glob("*.jar"))
    size_mb = sum(j.stat().st_size for j in jars) / 1e6
    load = os.getloadavg()[0]
    rows = "\n".join(f"| {i} | {t:.2f} |" for i, t in enumerate(times, 1))
    command = "`.venv/bin/python bench/broker_startup.py --runs {}{}`".format(
        runs, " --cold-maven" if cold is not None else ""
    )
    cold_text = (
        f"The first resolve on a machine (empty `~/.m2`; {cold[1]} jars, {size_mb:.0f} MB from Maven\n"
        f"Central) took {cold[0]:.1f} s. "
        if cold is not None
        else ""
    )
    shown = str(libs).replace(str(Path.home()), "~", 1)
    cores, py, osname = os.cpu_count(), platform.python_version(), platform.system()
    return f"""
Command: {command} ({datetime.date.today().isoformat()})

Apache Kafka {KAFKA_VERSION}, KRaft, one combined broker+controller node, heap 384 MiB; {cores} cores,
Python {py}, {osname}; 1-minute load average {load:.1f} when the runs ended (other work
shares the machine). Timed from `LocalBroker.start()`, storage format included, until an
AdminClient has created a probe topic; a fresh data dir each run, after one warm-up start
({warmup:.2f} s):

| run | seconds |
|---|---|
{rows}
| **median of {runs}** | **{median:.2f}** |

{cold_text}The jars are then kept in `{shown}`
(`$SCRAPELEDGER_CACHE_DIR`, default `~/.cache/scrapeledger`), so later starts do not run Maven.
"""


if __name__ == "__main__":
    main()
