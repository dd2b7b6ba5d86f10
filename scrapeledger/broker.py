"""A real Apache Kafka (KRaft, one combined broker+controller node) from Maven Central jars.

Tests, CI and ``scrapeledger up`` need a real broker on machines that have Java and Maven but no
container engine, and a mock would hide exactly the behaviour the ledger depends on. Maven
resolves ``org.apache.kafka:kafka_2.13`` (plus the log4j backend the release tarball adds but the
POM omits) from the ``pom.xml`` beside this module, once; the jars are cached under
``$SCRAPELEDGER_CACHE_DIR/kafka-<version>/libs`` (default ``~/.cache/scrapeledger``). The broker
is then ``java -cp <jars> kafka.Kafka server.properties`` after ``kafka.tools.StorageTool format``,
which is all ``bin/kafka-server-start.sh`` boils down to.

"Ready" means *this* cluster (its cluster id) accepted a topic creation (validated, not
written), not that a port opened or a log line appeared: a port can accept connections while the
controller is still electing itself.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import fcntl
import hashlib
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, TypeVar

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from .children import spawn
from .clusters import record_local
from .errors import LocalBrokerError

log = logging.getLogger(__name__)

KAFKA_VERSION = "4.1.1"
"""The Apache Kafka release the local broker runs (``kafka_2.13`` on Maven Central)."""

_STATE_FILE = "scrapeledger-broker.json"
_LOG_TAIL = 40
_MAVEN_TIMEOUT = 900.0
_T = TypeVar("_T")


class BrokerStartAborted(LocalBrokerError):
    """``start()`` was asked to give up (SIGTERM/SIGINT during ``scrapeledger broker`` start-up)."""


def cache_root() -> Path:
    """Where resolved jars live: shared by every checkout and venv on the machine, so they download once."""
    configured = os.environ.get("SCRAPELEDGER_CACHE_DIR")
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "scrapeledger"


def _resource(name: str) -> Path:
    """A file shipped in ``scrapeledger/kafka`` (declared as package data, so installs carry it)."""
    return Path(str(resources.files("scrapeledger").joinpath("kafka", name)))


def _require(tool: str, why: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise LocalBrokerError(
            f"{tool} is not on PATH: {why}; or set KAFKA_BOOTSTRAP_SERVERS to use a running cluster"
        )
    return path


def _require_java() -> str:
    return _require("java", "Apache Kafka 4.x needs Java 17+ (apt-get install openjdk-17-jre-headless)")


def _pom_stamp(pom: Path) -> str:
    """Identifies what a cached ``libs`` dir was resolved from, so an edited pom re-resolves."""
    return hashlib.sha256(pom.read_bytes() + KAFKA_VERSION.encode()).hexdigest()


def _is_resolved(marker: Path, libs: Path, stamp: str) -> bool:
    try:
        recorded = json.loads(marker.read_text())
    except (OSError, ValueError):
        return False
    return (
        isinstance(recorded, dict)
        and recorded.get("pom_sha256") == stamp
        and (libs / f"kafka_2.13-{KAFKA_VERSION}.jar").is_file()
    )


def kafka_classpath(cache_dir: Path | None = None) -> Path:
    """The directory holding Kafka's jars (use as ``-cp DIR/*``), resolved by Maven on first use.

    The result is marked complete only after Maven succeeded, and an ``fcntl`` lock makes a second
    process that starts resolving at the same moment (two test sessions, ``up`` and a test) wait
    for the first instead of copying jars over each other.
    """
    home = (cache_dir if cache_dir is not None else cache_root()) / f"kafka-{KAFKA_VERSION}"
    libs = home / "libs"
    marker = home / "resolved.json"
    pom = _resource("pom.xml")
    stamp = _pom_stamp(pom)
    if _is_resolved(marker, libs, stamp):
        return libs
    _require_java()  # Maven needs it too, and says so less clearly
    mvn = _require("mvn", "Maven fetches Apache Kafka's jars once (apt-get install maven)")
    home.mkdir(parents=True, exist_ok=True)
    with (home / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _is_resolved(marker, libs, stamp):  # another process resolved while we waited
            return libs
        shutil.rmtree(libs, ignore_errors=True)  # jars of an older pom must not linger
        log.info("resolving Apache Kafka %s from Maven Central into %s", KAFKA_VERSION, libs)
        began = time.monotonic()
        command = [
            mvn, "-B", "-q", "-f", str(pom), "dependency:copy-dependencies",
            f"-DoutputDirectory={libs}", "-DincludeScope=runtime", f"-Dkafka.version={KAFKA_VERSION}",
        ]
        try:
            proc = subprocess.run(
                command, capture_output=True, text=True, check=False, timeout=_MAVEN_TIMEOUT
            )
        except subprocess.TimeoutExpired as exc:
            raise LocalBrokerError(
                f"Maven did not resolve Apache Kafka {KAFKA_VERSION} within {_MAVEN_TIMEOUT:.0f}s "
                "(is Maven Central reachable?)"
            ) from exc
        output = (proc.stdout + proc.stderr).strip().splitlines()
        if proc.returncode != 0:
            tail = "\n".join(output[-20:]) or "(no output)"
            raise LocalBrokerError(
                f"Maven could not resolve Apache Kafka {KAFKA_VERSION} (exit {proc.returncode}; "
                f"command: {' '.join(command)}):\n{tail}"
            )
        jars = sorted(libs.glob("*.jar"))
        if not (libs / f"kafka_2.13-{KAFKA_VERSION}.jar").is_file():
            raise LocalBrokerError(
                f"Maven succeeded but {libs} has no kafka_2.13-{KAFKA_VERSION}.jar "
                f"({len(jars)} jars):\n" + "\n".join(output[-20:])
            )
        seconds = time.monotonic() - began
        pending = marker.with_suffix(".tmp")
        pending.write_text(json.dumps({"pom_sha256": stamp, "jars": len(jars), "seconds": round(seconds, 1)}))
        pending.replace(marker)
        log.info("resolved %d Kafka jars in %.1fs", len(jars), seconds)
    return libs


def free_port() -> int:
    """A loopback port nothing listens on right now (Kafka cannot advertise port 0 itself)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _check_port_free(port: int, what: str) -> None:
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


def _if_free(port: int) -> int:
    """``port`` if nothing listens on it now, else 0."""
    if not port:
        return 0
    try:
        _check_port_free(port, "client")
    except LocalBrokerError:
        return 0
    return port


def new_cluster_id() -> str:
    """Kafka's ``Uuid`` text form (base64url of 16 random bytes, never a leading '-'), without a JVM."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not text.startswith("-"):
            return text


BROKER_JVM_OPTS = "-XX:TieredStopAtLevel=1 -XX:+UseG1GC -XX:MaxGCPauseMillis=20"
"""The local broker's JVM tuning flags; ``SCRAPELEDGER_BROKER_JVM_OPTS`` replaces them.

C1 only: this broker lives for a dev session or a test run on a 2-core machine, where C2 kept
compiling for minutes (40-50 % of the broker's CPU 40 s after start, ~6 % of a core when idle).
Measured with bench/compare.py (docs/benchmarks.md): idle broker 9.5 -> 3.8 % of a core, C=8
7.8 -> 5.0 ms/job; at saturation C1's code costs ~25 % more (0.96 -> 1.22 ms/job). Production
brokers (Strimzi) keep their own JVM settings."""

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


class LocalBroker:
    """One local Kafka node: ``with LocalBroker(port=0) as broker: use(broker.bootstrap)``.

    The data directory keeps the log, the formatted metadata (with its cluster id) and both ports,
    so a broker that was stopped or killed starts again on the same directory and address with its
    records intact; tests use that to take the broker away and bring it back. Without a data
    directory a temporary one is used and removed by ``stop()``.
    """

    def __init__(
        self, port: int = 9092, data_dir: Path | None = None, heap: str = "384m",
        node: ClusterNode | None = None,
    ) -> None:
        """``node`` makes this broker one node of a :class:`LocalCluster`."""
        if not 0 <= port <= 65535:
            raise ValueError(f"port must be 0..65535, not {port}")
        self.node = node
        self._owns_dir = data_dir is None
        self.data_dir = Path(data_dir) if data_dir is not None else self._make_temp_dir()
        self.heap = heap
        # port 0: the port this data dir used before (a restart keeps its address), unless
        # something else holds it now; then any free one
        self.port = port or _if_free(int(self._state().get("port") or 0)) or free_port()
        self.started_in: float | None = None
        """Seconds the last ``start()`` took, from call to a topic being created."""
        self._proc: subprocess.Popen[str] | None = None
        self._pumper: threading.Thread | None = None
        self._log: deque[str] = deque(maxlen=400)
        self._abort = threading.Event()

    # --- state kept in the data dir -----------------------------------------------------------

    @staticmethod
    def _make_temp_dir() -> Path:
        path = Path(tempfile.mkdtemp(prefix="scrapeledger-kafka-"))
        _TEMP_DIRS.add(path)
        return path

    def _state(self) -> dict[str, int | str]:
        try:
            loaded = json.loads((self.data_dir / _STATE_FILE).read_text())
        except (OSError, ValueError):
            return {}
        return loaded if isinstance(loaded, dict) else {}

    def _save_state(self, state: dict[str, int | str]) -> None:
        pending = self.data_dir / f"{_STATE_FILE}.tmp"
        pending.write_text(json.dumps(state, indent=1))
        pending.replace(self.data_dir / _STATE_FILE)

    # --- what callers read ---------------------------------------------------------------------

    @property
    def bootstrap(self) -> str:
        """``bootstrap.servers`` for clients; stable across restarts on the same data dir."""
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        """The JVM's pid while it runs (it leads its own process group), else None."""
        return self._proc.pid if self.running() and self._proc is not None else None

    def running(self) -> bool:
        """Whether the JVM process is alive (not whether it is ready)."""
        return self._proc is not None and self._proc.poll() is None

    def log_tail(self, lines: int = _LOG_TAIL) -> str:
        """The broker's last output lines (WARN and up, plus start-up), for error messages."""
        return "\n".join(list(self._log)[-lines:])

    # --- lifecycle -----------------------------------------------------------------------------

    def _jvm(self, heap: str, *, short_lived: bool = False) -> list[str]:
        """The ``java`` command line up to the main class.

        A short-lived tool (the storage format) runs with the C1 compiler only and the serial
        collector: it finishes before C2 or G1 would pay off, and the 2-core machines this runs on
        feel every compiler thread. The broker runs :data:`BROKER_JVM_OPTS`.
        """
        java = _require_java()
        libs = kafka_classpath()
        tuning = (
            ["-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC"]
            if short_lived
            else os.environ.get("SCRAPELEDGER_BROKER_JVM_OPTS", BROKER_JVM_OPTS).split()
        )
        return [
            java, f"-Xms{heap}", f"-Xmx{heap}", *tuning,
            "-XX:+ExitOnOutOfMemoryError", f"-XX:ErrorFile={self.data_dir}/hs_err_pid%p.log",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={_resource('log4j2.properties')}",
            "-cp", f"{libs}/*",
        ]

    def _check_abort(self) -> None:
        if self._abort.is_set():
            raise BrokerStartAborted("start-up of the local broker was interrupted")

    def start(self, timeout: float = 120.0) -> str:
        """Format storage (first time only), start the JVM, return the bootstrap once usable.

        Raises :class:`LocalBrokerError` (with the broker's last log lines) if Java or Maven is
        missing, the JVM exits, or no topic could be created within ``timeout`` seconds.
        """
        if self.running():
            return self.bootstrap
        began = time.monotonic()
        self._abort.clear()
        if self._owns_dir and not self.data_dir.exists():  # stop() removed the previous temp dir
            self.data_dir = self._make_temp_dir()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        try:
            self._start(began + timeout)
        except BaseException:
            self.stop(timeout=10)  # a caller's `with` never reaches __exit__ when start() raises
            raise
        self.started_in = time.monotonic() - began
        log.info("Kafka %s usable at %s after %.1fs (data in %s)",
                 KAFKA_VERSION, self.bootstrap, self.started_in, self.data_dir)
        return self.bootstrap

    def _start(self, deadline: float) -> None:
        """Everything ``start()`` does that may fail and then needs cleaning up."""
        cluster_id = self.launch()
        self._wait_ready(deadline, cluster_id)

    def launch(self) -> str:
        """Format (first time only) and start the JVM without waiting; returns the cluster id.

        :class:`LocalCluster` launches every node before it waits for any: a node is usable
        only once a majority of the controller quorum runs."""
        jvm = self._jvm(self.heap)
        self._check_abort()
        state = self._state()
        node = self.node
        cport = node.controller_port if node is not None else int(state.get("controller_port") or 0)
        while cport in (0, self.port):
            cport = free_port()
        cluster_id = node.cluster_id if node is not None else str(state.get("cluster_id") or new_cluster_id())
        _check_port_free(self.port, "client")  # before saving: a taken port is not this dir's
        _check_port_free(cport, "controller")
        self._save_state({"port": self.port, "controller_port": cport, "cluster_id": cluster_id})
        logs = self.data_dir / "logs"
        props = self.data_dir / "server.properties"
        size = node.size if node is not None else 1
        props.write_text(_SERVER_PROPERTIES.format(
            port=self.port, cport=cport, logs=logs, node_id=node.node_id if node is not None else 1,
            voters=node.voters if node is not None else f"1@127.0.0.1:{cport}",
            rf=min(size, 3), min_isr=2 if size >= 3 else 1,
        ))
        formatted = _formatted_cluster_id(logs)
        if formatted is None:
            self._format(self._jvm("128m", short_lived=True), props, cluster_id)
        elif formatted != cluster_id:  # a dir formatted elsewhere: its metadata wins
            cluster_id = formatted
            self._save_state({"port": self.port, "controller_port": cport, "cluster_id": cluster_id})
        self._check_abort()
        self._launch(jvm, props)
        return cluster_id

    def wait_ready(self, timeout: float = 120.0) -> None:
        """After :meth:`launch`: wait until this node creates a topic (see :meth:`start`)."""
        state = self._state()
        began = time.monotonic()
        self._wait_ready(began + timeout, str(state.get("cluster_id") or ""))
        self.started_in = time.monotonic() - began

    def _format(self, jvm: list[str], props: Path, cluster_id: str) -> None:
        """``kafka-storage.sh format``: writes meta.properties and the bootstrap metadata."""
        command = [*jvm, "kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(props)]
        try:
            fmt = subprocess.run(command, capture_output=True, text=True, check=False, timeout=120)
        except subprocess.TimeoutExpired as exc:
            raise LocalBrokerError("formatting Kafka storage took over 120s") from exc
        if fmt.returncode != 0:
            raise LocalBrokerError(
                f"formatting Kafka storage in {props.parent} failed (exit {fmt.returncode}):\n"
                f"{(fmt.stdout + fmt.stderr).strip()}"
            )
        log.debug("formatted %s: %s", props.parent, fmt.stdout.strip())

    def _launch(self, jvm: list[str], props: Path) -> None:
        self._release()
        self._log.clear()
        # the JVM gets SIGTERM (a controlled shutdown) when this process dies, even by SIGKILL,
        # instead of running on with parent 1 and holding the port
        self._proc = spawn(
            [*jvm, "kafka.Kafka", str(props)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            encoding="utf-8",
            errors="replace",
            # own session and process group: a terminal's Ctrl-C reaches our Python process, which
            # then shuts the broker down in order, instead of hitting the JVM mid-way
            start_new_session=True,
        )
        _RUNNING.add(self._proc)
        self._pumper = threading.Thread(
            target=self._pump, args=(self._proc,), name=f"kafka-{self.port}-log", daemon=True
        )
        self._pumper.start()
        log.debug("started Kafka pid %d on %s", self._proc.pid, self.bootstrap)

    def _pump(self, proc: subprocess.Popen[str]) -> None:
        """Drain the JVM's output (a full pipe would block it) and keep a tail for error messages."""
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = raw.rstrip()
            self._log.append(line)
            if " ERROR " in line or " FATAL " in line:
                log.warning("kafka: %s", line)

    def _check_progress(self, deadline: float) -> None:
        """Raise if start-up cannot succeed any more: the JVM exited, time ran out, or an abort came."""
        self._check_abort()
        proc = self._proc
        if proc is None or proc.poll() is not None:
            code = proc.returncode if proc is not None else None
            self._release()
            raise LocalBrokerError(
                f"Kafka exited with code {code} while starting on {self.bootstrap}:\n{self.log_tail()}"
            )
        if time.monotonic() > deadline:
            raise LocalBrokerError(
                f"Kafka on {self.bootstrap} was not usable within the timeout:\n{self.log_tail()}"
            )

    def _await(self, future: Future[_T], deadline: float) -> _T:
        """A client future's result, noticing a dead JVM or an abort within a fraction of a second."""
        while True:
            try:
                return future.result(timeout=0.25)
            except TimeoutError:
                self._check_progress(deadline)

    def _wait_ready(self, deadline: float, cluster_id: str) -> None:
        """Poll until this cluster accepts a topic creation (validated only, nothing created).

        ``validate_only`` goes through the controller's full checks, replica placement on a
        registered, unfenced broker included, without writing a topic: a real probe topic had
        to be deleted again, and deleting it made the group coordinator log
        ``ERROR Could not delete offsets for deleted partitions`` on every start.
        """
        admin = AdminClient({
            "bootstrap.servers": self.bootstrap,
            "log_level": 0,  # connection refused is expected while the JVM starts
            "socket.connection.setup.timeout.ms": 3000,
            "reconnect.backoff.max.ms": 250,
        })
        probe = f"__scrapeledger-probe-{uuid.uuid4().hex[:12]}"
        while True:
            self._check_progress(deadline)
            try:
                seen = self._await(admin.describe_cluster(request_timeout=10), deadline)
                if seen.cluster_id != cluster_id:
                    raise LocalBrokerError(
                        f"{self.bootstrap} is served by another Kafka cluster ({seen.cluster_id}, "
                        f"ours is {cluster_id})"
                    )
                created = admin.create_topics(
                    [NewTopic(probe, 1, 1)], operation_timeout=10, request_timeout=15,
                    validate_only=True,
                )
                self._await(created[probe], deadline)
                record_local(self.bootstrap, cluster_id)  # components on the default address trust it
                return
            except KafkaException as exc:
                log.debug("Kafka on %s not usable yet: %s", self.bootstrap, exc)
            time.sleep(0.2)  # pause between polls of a condition; the deadline bounds it

    def _signal(self, sig: signal.Signals) -> None:
        proc = self._proc
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM (Kafka's controlled shutdown), SIGKILL after ``timeout`` s; returns the exit code.

        A JVM stopped by SIGTERM exits with 143 (128 + 15). Removes the data dir if it is a
        temporary one this broker made.
        """
        proc = self._proc
        code: int | None = None
        if proc is not None:
            if proc.poll() is None:
                self._signal(signal.SIGTERM)
                try:
                    proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    log.warning("Kafka on %s did not stop within %.0fs; killing it", self.bootstrap, timeout)
                    self._signal(signal.SIGKILL)
                    proc.wait()
            code = proc.returncode
            self._release()
        if self._owns_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)
            _TEMP_DIRS.discard(self.data_dir)
        return code

    def close(self) -> None:
        """Same as :meth:`stop`, for ``contextlib.closing`` and older callers."""
        self.stop()

    def kill(self) -> None:
        """SIGKILL: the broker disappears as in a crash; ``start()`` brings it back, data intact."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            self._signal(signal.SIGKILL)
            proc.wait()
        self._release()

    def _release(self) -> None:
        """Forget a finished process: join its output reader, close the pipe."""
        proc = self._proc
        if proc is None or proc.poll() is None:
            return
        if self._pumper is not None:
            self._pumper.join(timeout=5)
            self._pumper = None
        if proc.stdout is not None:
            proc.stdout.close()
        _RUNNING.discard(proc)

    def __enter__(self) -> LocalBroker:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


_CLUSTER_FILE = "scrapeledger-cluster.json"


class LocalCluster:
    """Several local Kafka nodes in one cluster: ``scrapeledger broker --nodes 3``.

    Every node is a combined broker+controller (``process.roles=broker,controller``) and a voter
    of a static quorum, so three JVMs (not six) give a cluster that survives the loss of any one
    node: the controller quorum keeps its majority and every topic (replication factor 3,
    ``min.insync.replicas=2``) keeps taking writes. Node *i* lives in ``DATA_DIR/node-i`` with its
    own ports; the ports and the cluster id are kept in ``DATA_DIR``, so a killed node comes back
    on the same address with its log (:meth:`kill` / :meth:`restart`).
    """

    def __init__(
        self, nodes: int = 3, port: int = 9092, data_dir: Path | None = None, heap: str = "256m"
    ) -> None:
        if nodes < 2:
            raise ValueError("a cluster has at least 2 nodes; use LocalBroker for one")
        if port and not 0 < port <= 65535 - nodes:
            raise ValueError(f"ports {port}..{port + nodes - 1} are not all valid")
        self._owns_dir = data_dir is None
        self.data_dir = Path(data_dir) if data_dir is not None else LocalBroker._make_temp_dir()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        state = self._state()
        if not state:
            taken: set[int] = set()

            def pick(wanted: int) -> int:
                chosen = wanted
                while not chosen or chosen in taken:
                    chosen = free_port()
                taken.add(chosen)
                return chosen

            ports = [pick(port + i if port else 0) for i in range(nodes)]
            state = {
                "cluster_id": new_cluster_id(),
                "ports": ports,
                "controller_ports": [pick(0) for _ in range(nodes)],
            }
            pending = self.data_dir / f"{_CLUSTER_FILE}.tmp"
            pending.write_text(json.dumps(state, indent=1))
            pending.replace(self.data_dir / _CLUSTER_FILE)
        ports, cports = list(state["ports"]), list(state["controller_ports"])
        if len(ports) != nodes:
            raise LocalBrokerError(f"{self.data_dir} holds a {len(ports)}-node cluster, not {nodes}")
        voters = ",".join(f"{i + 1}@127.0.0.1:{cp}" for i, cp in enumerate(cports))
        self.brokers = [
            LocalBroker(
                port=ports[i], data_dir=self.data_dir / f"node-{i + 1}", heap=heap,
                node=ClusterNode(i + 1, cports[i], voters, str(state["cluster_id"]), nodes),
            )
            for i in range(nodes)
        ]
        self.started_in: float | None = None

    def _state(self) -> dict[str, Any]:
        try:
            loaded = json.loads((self.data_dir / _CLUSTER_FILE).read_text())
        except (OSError, ValueError):
            return {}
        return loaded if isinstance(loaded, dict) else {}

    @property
    def bootstrap(self) -> str:
        """Every node's address: clients keep working while any one of them is down."""
        return ",".join(b.bootstrap for b in self.brokers)

    @property
    def _abort(self) -> threading.Event:
        return self.brokers[0]._abort

    def running(self) -> bool:
        """Whether every node's JVM is alive."""
        return all(b.running() for b in self.brokers)

    def log_tail(self, lines: int = _LOG_TAIL) -> str:
        return "\n".join(f"[node {b.node.node_id if b.node else '?'}]\n{b.log_tail(lines // 2)}"
                         for b in self.brokers)

    def start(self, timeout: float = 180.0) -> str:
        """Launch every node, then wait until each one is usable; returns the bootstrap."""
        began = time.monotonic()
        try:
            for b in self.brokers:
                b._abort = self._abort  # one abort (a signal during start-up) for every node
                if not b.running():
                    b.data_dir.mkdir(parents=True, exist_ok=True)
                    b.launch()
            for b in self.brokers:
                b.wait_ready(max(1.0, began + timeout - time.monotonic()))
        except BaseException:
            self.stop(timeout=10)
            raise
        self.started_in = time.monotonic() - began
        log.info("Kafka %s cluster of %d nodes usable at %s after %.1fs",
                 KAFKA_VERSION, len(self.brokers), self.bootstrap, self.started_in)
        return self.bootstrap

    def kill(self, index: int) -> None:
        """SIGKILL node ``index`` (0-based); the others carry on."""
        self.brokers[index].kill()

    def restart(self, index: int, timeout: float = 120.0) -> None:
        """Start node ``index`` again on its directory and ports; returns once it is usable."""
        self.brokers[index].start(timeout)

    def stop(self, timeout: float = 30.0) -> int | None:
        """Stop every node (SIGTERM, all at once); returns the first non-clean exit code or 0."""
        for b in self.brokers:
            b._signal(signal.SIGTERM)
        worst: int | None = 0
        for b in self.brokers:
            code = b.stop(timeout)
            if code not in (0, 143, -signal.SIGTERM, None) and worst == 0:
                worst = code
        if self._owns_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)
            _TEMP_DIRS.discard(self.data_dir)
        return worst

    def __enter__(self) -> LocalCluster:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _formatted_cluster_id(logs: Path) -> str | None:
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


# Safety net for callers that forget stop(): the JVM runs in its own session, so nothing else
# would end it when this Python process exits.
_RUNNING: set[subprocess.Popen[str]] = set()
_TEMP_DIRS: set[Path] = set()


@atexit.register
def _reap_at_exit() -> None:
    for proc in list(_RUNNING):
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    for path in list(_TEMP_DIRS):
        shutil.rmtree(path, ignore_errors=True)


def run_foreground(port: int, data_dir: Path | None, nodes: int = 1) -> int:
    """``scrapeledger broker``: start, print one ``broker ready at HOST:PORT ...`` line, run until signalled.

    Other processes (``scrapeledger up``, tests) read stdout for that line instead of guessing with
    sleeps, so it is printed only once the broker is usable and is the only line on stdout.
    SIGTERM/SIGINT stop the broker cleanly and return 0; a broker that dies returns 1.
    """
    broker: LocalBroker | LocalCluster = (
        LocalBroker(port=port, data_dir=data_dir) if nodes == 1
        else LocalCluster(nodes, port=port, data_dir=data_dir)
    )
    stopping = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        log.info("%s: stopping the broker", signal.Signals(signum).name)
        stopping.set()
        broker._abort.set()  # a start-up still waiting gives up at its next poll

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        try:
            broker.start()
        except LocalBrokerError as exc:
            broker.stop(timeout=10)
            if stopping.is_set():
                return 0
            print(f"error: {exc}", file=sys.stderr, flush=True)
            return 1
        # one write, so no log line from another thread can split it (PYTHONUNBUFFERED)
        sys.stdout.write(
            f"broker ready at {broker.bootstrap} "
            f"(Apache Kafka {KAFKA_VERSION}{f', {nodes} nodes' if nodes > 1 else ''}, "
            f"started in {broker.started_in or 0.0:.1f} s)\n"
        )
        sys.stdout.flush()
        while not stopping.wait(0.5):
            if not broker.running():
                code = broker.stop()
                print(f"error: Kafka exited with code {code}\n{broker.log_tail()}",
                      file=sys.stderr, flush=True)
                return 1
        code = broker.stop()
        if code not in (0, 143, -signal.SIGTERM):
            print(f"error: Kafka did not shut down cleanly (exit {code})", file=sys.stderr, flush=True)
            return 1
        log.info("broker stopped")
        return 0
    finally:
        broker.stop(timeout=10)  # no-op unless something above raised
        for sig, handler in previous.items():
            signal.signal(sig, handler)


_USAGE = "usage: python -m scrapeledger.broker [--port PORT] [--data-dir DIR] [--nodes N]"


def _parse_args(argv: list[str]) -> tuple[int, Path | None, int]:
    """``--port N`` / ``--port=N``, ``--data-dir D`` and ``--nodes N``; the CLI proper is
    ``scrapeledger broker``."""
    port, data_dir, nodes = 9092, None, 1
    args = iter(argv)
    for arg in args:
        if arg in ("-h", "--help"):
            print(_USAGE)
            raise SystemExit(0)
        name, has_value, value = arg.partition("=")
        if name not in ("--port", "--data-dir", "--nodes"):
            raise SystemExit(f"{_USAGE}\nunknown argument: {arg}")
        if not has_value:
            value = next(args, "")
            if not value:
                raise SystemExit(f"{_USAGE}\n{name} needs a value")
        if name in ("--port", "--nodes"):
            try:
                number = int(value)
            except ValueError:
                raise SystemExit(f"{_USAGE}\n{name} needs a number, not {value!r}") from None
            if name == "--port":
                port = number
            else:
                nodes = number
        else:
            data_dir = Path(value)
    if nodes < 1:
        raise SystemExit(f"{_USAGE}\n--nodes needs at least 1")
    return port, data_dir, nodes


def _main(argv: list[str]) -> int:
    port, data_dir, nodes = _parse_args(argv)
    logging.basicConfig(
        level=os.environ.get("SCRAPELEDGER_LOG_LEVEL", "INFO"),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    return run_foreground(port, data_dir, nodes)


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
