"""What a local Kafka node is told before its JVM starts: ports, cluster id, KRaft config, JVM flags.

Everything here is written into (or read from) the node's data directory, so a node that was
stopped or killed starts again with the same address, the same cluster id and its log intact:
``scrapeledger-broker.json`` keeps a node's ports and cluster id, ``scrapeledger-cluster.json``
those of a whole :class:`~scrapeledger.broker.LocalCluster`, ``server.properties`` is rewritten
on every start, and ``logs/meta.properties`` (written once by Kafka's storage format) is the
cluster id the log really belongs to.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import socket
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import LocalBrokerError
from ._classpath import kafka_classpath, require_java, resource

# one logger for the whole launcher, as when it was one module: lines keep their name
log = logging.getLogger("scrapeledger.broker")

BROKER_STATE_FILE = "scrapeledger-broker.json"
CLUSTER_STATE_FILE = "scrapeledger-cluster.json"

BROKER_JVM_OPTS = "-XX:TieredStopAtLevel=1 -XX:+UseG1GC -XX:MaxGCPauseMillis=20"
"""The local broker's JVM tuning flags; ``SCRAPELEDGER_BROKER_JVM_OPTS`` replaces them.

C1 only: this broker lives for a dev session or a test run on a 2-core machine, where C2 kept
compiling for minutes (40-50 % of the broker's CPU 40 s after start, ~6 % of a core when idle).
Measured with bench/compare.py (docs/benchmarks.md): idle broker 9.5 -> 3.8 % of a core, C=8
7.8 -> 5.0 ms/job; at saturation C1's code costs ~25 % more (0.96 -> 1.22 ms/job). Production
brokers (Strimzi) keep their own JVM settings."""

_FORMAT_TIMEOUT = 120

_SERVER_PROPERTIES = """\
# written by scrapeledger.broker on every start; edits are overwritten
process.roles=broker,controller
node.id={node_id}
controller.quorum.voters={voters}
listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{cport}
advertised.listeners=PLAINTEXT://127.0.0.1:{port}
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs={logs}
# internal topics: replicated on every node of a cluster (1 on a single node), few partitions
num.partitions=1
default.replication.factor={rf}
min.insync.replicas={min_isr}
offsets.topic.replication.factor={rf}
offsets.topic.num.partitions=1
transaction.state.log.replication.factor={rf}
transaction.state.log.min.isr={min_isr}
transaction.state.log.num.partitions=1
share.coordinator.state.topic.replication.factor={rf}
share.coordinator.state.topic.min.isr={min_isr}
share.coordinator.state.topic.num.partitions=1
# the first consumer group joins at once instead of after 3 s
group.initial.rebalance.delay.ms=0
# every process creates its topics with explicit configs; a typo must not create a topic
auto.create.topics.enable=false
message.max.bytes=8388608
replica.fetch.max.bytes=8388608
# a small machine shared with tests: fewer threads, a small cleaner buffer (default 128 MiB)
num.network.threads=2
num.io.threads=4
log.cleaner.dedupe.buffer.size=16777216
log.segment.bytes=104857600
"""


@dataclass(frozen=True)
class ClusterNode:
    """What one node of a :class:`LocalCluster` shares with the others."""

    node_id: int
    controller_port: int
    voters: str
    """``controller.quorum.voters``: every node is a voter (combined broker+controller)."""
    cluster_id: str
    size: int


# --- ports and ids ----------------------------------------------------------------------------


def free_port() -> int:
    """A loopback port nothing listens on right now (Kafka cannot advertise port 0 itself)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def check_port_free(port: int, what: str) -> None:
    """Fail fast and clearly: otherwise Kafka dies on bind, or a probe reaches someone else's broker."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the JVM does: TIME_WAIT is fine
        try:
            s.bind(("127.0.0.1", port))
        except OSError as exc:
            raise LocalBrokerError(
                f"the {what} port 127.0.0.1:{port} is already in use ({exc.strerror}); "
                "is another broker running? pick another port (port=0 chooses a free one)"
            ) from exc


def if_free(port: int) -> int:
    """``port`` if nothing listens on it now, else 0."""
    if not port:
        return 0
    try:
        check_port_free(port, "client")
    except LocalBrokerError:
        return 0
    return port


def new_cluster_id() -> str:
    """Kafka's ``Uuid`` text form (base64url of 16 random bytes, never a leading '-'), without a JVM."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not text.startswith("-"):
            return text


# --- state kept in a data dir -----------------------------------------------------------------


def read_state(path: Path) -> dict[str, Any]:
    """A state file's contents; empty if it is missing or unreadable (a fresh data dir)."""
    try:
        loaded = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return loaded if isinstance(loaded, dict) else {}


def write_state(path: Path, state: dict[str, Any]) -> None:
    """Write then rename: a node killed mid-write leaves the previous state, never half of one."""
    pending = path.with_name(f"{path.name}.tmp")
    pending.write_text(json.dumps(state, indent=1))
    pending.replace(path)


# --- what the JVM reads -----------------------------------------------------------------------


def server_properties(port: int, cport: int, logs: Path, node: ClusterNode | None) -> str:
    """``server.properties`` for one node: alone (its own single voter) or one of a cluster.

    Internal topics are replicated on up to three nodes, and writes need two in-sync replicas
    once there are three, so a cluster keeps taking writes with any one node down."""
    size = node.size if node is not None else 1
    return _SERVER_PROPERTIES.format(
        port=port, cport=cport, logs=logs, node_id=node.node_id if node is not None else 1,
        voters=node.voters if node is not None else f"1@127.0.0.1:{cport}",
        rf=min(size, 3), min_isr=2 if size >= 3 else 1,
    )


def jvm_command(data_dir: Path, heap: str, *, short_lived: bool = False) -> list[str]:
    """The ``java`` command line up to the main class.

    A short-lived tool (the storage format) runs with the C1 compiler only and the serial
    collector: it finishes before C2 or G1 would pay off, and the 2-core machines this runs on
    feel every compiler thread. The broker runs :data:`BROKER_JVM_OPTS`.
    """
    java = require_java()
    libs = kafka_classpath()
    tuning = (
        ["-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC"]
        if short_lived
        else os.environ.get("SCRAPELEDGER_BROKER_JVM_OPTS", BROKER_JVM_OPTS).split()
    )
    return [
        java, f"-Xms{heap}", f"-Xmx{heap}", *tuning,
        "-XX:+ExitOnOutOfMemoryError", f"-XX:ErrorFile={data_dir}/hs_err_pid%p.log",
        "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={resource('log4j2.properties')}",
        "-cp", f"{libs}/*",
    ]


# --- the KRaft storage ------------------------------------------------------------------------


def formatted_cluster_id(logs: Path) -> str | None:
    """The cluster id in ``meta.properties`` if the log dir is formatted, else None."""
    try:
        text = (logs / "meta.properties").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "cluster.id":
            return value.strip()
    return None


def format_storage(jvm: list[str], props: Path, cluster_id: str) -> None:
    """``kafka-storage.sh format``: writes meta.properties and the bootstrap metadata."""
    command = [*jvm, "kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(props)]
    try:
        fmt = subprocess.run(command, capture_output=True, text=True, check=False, timeout=_FORMAT_TIMEOUT)
    except subprocess.TimeoutExpired as exc:
        raise LocalBrokerError(f"formatting Kafka storage took over {_FORMAT_TIMEOUT}s") from exc
    if fmt.returncode != 0:
        raise LocalBrokerError(
            f"formatting Kafka storage in {props.parent} failed (exit {fmt.returncode}):\n"
            f"{(fmt.stdout + fmt.stderr).strip()}"
        )
    log.debug("formatted %s: %s", props.parent, fmt.stdout.strip())
