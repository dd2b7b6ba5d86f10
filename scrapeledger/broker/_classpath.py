"""Apache Kafka's jars, resolved by Maven from Maven Central once and cached for every checkout.

The project ships no Kafka tarball: Maven resolves ``org.apache.kafka:kafka_2.13`` (plus the
log4j backend the release tarball adds but the POM omits) from ``scrapeledger/kafka/pom.xml``.
The jars land in ``$SCRAPELEDGER_CACHE_DIR/kafka-<version>/libs`` (default
``~/.cache/scrapeledger``) with a ``resolved.json`` marker naming the pom they came from, so an
edited pom resolves again and an interrupted download is never mistaken for a complete one.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import shutil
import subprocess
import time
from importlib import resources
from pathlib import Path

from ..errors import LocalBrokerError

# one logger for the whole launcher, as when it was one module: lines keep their name
log = logging.getLogger("scrapeledger.broker")

KAFKA_VERSION = "4.1.1"
"""The Apache Kafka release the local broker runs (``kafka_2.13`` on Maven Central)."""

_MAVEN_TIMEOUT = 900.0
_OUTPUT_TAIL = 20
"""Lines of Maven's output an error message carries: enough for the failing artifact."""


def cache_root() -> Path:
    """Where resolved jars live: shared by every checkout and venv on the machine, so they download once."""
    configured = os.environ.get("SCRAPELEDGER_CACHE_DIR")
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "scrapeledger"


def resource(name: str) -> Path:
    """A file shipped in ``scrapeledger/kafka`` (declared as package data, so installs carry it)."""
    return Path(str(resources.files("scrapeledger").joinpath("kafka", name)))


def _require(tool: str, why: str) -> str:
    """``tool``'s path, or an error saying what it is for and how to do without it."""
    path = shutil.which(tool)
    if path is None:
        raise LocalBrokerError(
            f"{tool} is not on PATH: {why}; or set KAFKA_BOOTSTRAP_SERVERS to use a running cluster"
        )
    return path


def require_java() -> str:
    """The ``java`` binary; Kafka (and Maven) need it, and say so less clearly than this."""
    return _require("java", "Apache Kafka 4.x needs Java 17+ (apt-get install openjdk-17-jre-headless)")


def _pom_stamp(pom: Path) -> str:
    """Identifies what a cached ``libs`` dir was resolved from, so an edited pom re-resolves."""
    return hashlib.sha256(pom.read_bytes() + KAFKA_VERSION.encode()).hexdigest()


def _kafka_jar(libs: Path) -> Path:
    """The jar whose presence shows a resolution produced Kafka itself, not just its dependencies."""
    return libs / f"kafka_2.13-{KAFKA_VERSION}.jar"


def _is_resolved(marker: Path, libs: Path, stamp: str) -> bool:
    """Whether ``libs`` is a complete resolution of the current pom (the marker is written last)."""
    try:
        recorded = json.loads(marker.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(recorded, dict) and recorded.get("pom_sha256") == stamp and _kafka_jar(libs).is_file()


def kafka_classpath(cache_dir: Path | None = None) -> Path:
    """The directory holding Kafka's jars (use as ``-cp DIR/*``), resolved by Maven on first use.

    The result is marked complete only after Maven succeeded, and an ``fcntl`` lock makes a second
    process that starts resolving at the same moment (two test sessions, ``up`` and a test) wait
    for the first instead of copying jars over each other.
    """
    home = (cache_dir if cache_dir is not None else cache_root()) / f"kafka-{KAFKA_VERSION}"
    libs = home / "libs"
    marker = home / "resolved.json"
    pom = resource("pom.xml")
    stamp = _pom_stamp(pom)
    if _is_resolved(marker, libs, stamp):
        return libs
    require_java()  # Maven needs it too, and says so less clearly
    mvn = _require("mvn", "Maven fetches Apache Kafka's jars once (apt-get install maven)")
    home.mkdir(parents=True, exist_ok=True)
    with (home / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _is_resolved(marker, libs, stamp):  # another process resolved while we waited
            return libs
        _resolve(mvn, pom, libs, marker, stamp)
    return libs


def _resolve(mvn: str, pom: Path, libs: Path, marker: Path, stamp: str) -> None:
    """Run Maven into an emptied ``libs``, check it produced Kafka, then write the marker."""
    shutil.rmtree(libs, ignore_errors=True)  # jars of an older pom must not linger
    log.info("resolving Apache Kafka %s from Maven Central into %s", KAFKA_VERSION, libs)
    began = time.monotonic()
    output = _run_maven(mvn, pom, libs)
    jars = sorted(libs.glob("*.jar"))
    if not _kafka_jar(libs).is_file():
        raise LocalBrokerError(
            f"Maven succeeded but {libs} has no kafka_2.13-{KAFKA_VERSION}.jar "
            f"({len(jars)} jars):\n" + "\n".join(output[-_OUTPUT_TAIL:])
        )
    seconds = time.monotonic() - began
    pending = marker.with_suffix(".tmp")  # write then rename: a reader never sees half a marker
    pending.write_text(json.dumps({"pom_sha256": stamp, "jars": len(jars), "seconds": round(seconds, 1)}))
    pending.replace(marker)
    log.info("resolved %d Kafka jars in %.1fs", len(jars), seconds)


def _run_maven(mvn: str, pom: Path, libs: Path) -> list[str]:
    """``mvn dependency:copy-dependencies`` into ``libs``; its output lines, or an error with their tail."""
    command = [
        mvn, "-B", "-q", "-f", str(pom), "dependency:copy-dependencies",
        f"-DoutputDirectory={libs}", "-DincludeScope=runtime", f"-Dkafka.version={KAFKA_VERSION}",
    ]
    try:
        proc = subprocess.run(command, capture_output=True, text=True, check=False, timeout=_MAVEN_TIMEOUT)
    except subprocess.TimeoutExpired as exc:
        raise LocalBrokerError(
            f"Maven did not resolve Apache Kafka {KAFKA_VERSION} within {_MAVEN_TIMEOUT:.0f}s "
            "(is Maven Central reachable?)"
        ) from exc
    output = (proc.stdout + proc.stderr).strip().splitlines()
    if proc.returncode != 0:
        tail = "\n".join(output[-_OUTPUT_TAIL:]) or "(no output)"
        raise LocalBrokerError(
            f"Maven could not resolve Apache Kafka {KAFKA_VERSION} (exit {proc.returncode}; "
            f"command: {' '.join(command)}):\n{tail}"
        )
    return output
