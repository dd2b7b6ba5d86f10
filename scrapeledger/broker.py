"""A real Apache Kafka (KRaft, single combined node) from Maven Central jars, without Docker.

Tests, CI and ``scrapeledger up`` all need a real broker on machines that have Java and Maven
but no container engine. Maven resolves ``org.apache.kafka:kafka_2.13`` (plus the log4j backend
the release tarball adds) from the ``pom.xml`` shipped beside this module, once; the jars are
cached under ``$SCRAPELEDGER_CACHE_DIR`` (default ``~/.cache/scrapeledger``). The broker is then
``java -cp <jars> kafka.Kafka server.properties`` after ``kafka.tools.StorageTool format``.

"Ready" means a client really created a topic, not that a port opened or a log line appeared.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
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
from importlib import resources
from pathlib import Path
from types import TracebackType

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from .errors import LocalBrokerError

log = logging.getLogger(__name__)

KAFKA_VERSION = "4.1.1"


def cache_root() -> Path:
    return Path(os.environ.get("SCRAPELEDGER_CACHE_DIR", Path.home() / ".cache" / "scrapeledger"))


def _resource(name: str) -> Path:
    return Path(str(resources.files("scrapeledger").joinpath("kafka", name)))


def kafka_classpath(cache_dir: Path | None = None) -> Path:
    """The directory of Kafka's jars, resolved by Maven on first use and cached after."""
    libs = (cache_dir or cache_root()) / f"kafka-{KAFKA_VERSION}" / "libs"
    marker = libs.parent / "resolved"
    if marker.exists():
        return libs
    if shutil.which("mvn") is None:
        raise LocalBrokerError(
            "Maven (mvn) is not on PATH: it is needed once to fetch Apache Kafka's jars "
            "(apt-get install maven), or point KAFKA_BOOTSTRAP_SERVERS at a running cluster"
        )
    libs.parent.mkdir(parents=True, exist_ok=True)
    with open(libs.parent / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two processes resolving at once: one does the work
        if marker.exists():
            return libs
        log.info("resolving Apache Kafka %s from Maven Central into %s", KAFKA_VERSION, libs)
        started = time.monotonic()
        proc = subprocess.run(
            [
                "mvn", "-B", "-q", "-f", str(_resource("pom.xml")),
                "dependency:copy-dependencies", f"-DoutputDirectory={libs}",
                "-DincludeScope=runtime", f"-Dkafka.version={KAFKA_VERSION}",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
            raise LocalBrokerError(f"Maven could not resolve Apache Kafka {KAFKA_VERSION}:\n{tail}")
        marker.write_text(f"{time.monotonic() - started:.1f}s\n")
        log.info("resolved Kafka jars in %.1fs", time.monotonic() - started)
    return libs


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def new_cluster_id() -> str:
    """Kafka's ``Uuid`` text form: base64url of 16 random bytes, never starting with '-'."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not text.startswith("-"):
            return text


SERVER_PROPERTIES = """\
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:{cport}
listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{cport}
advertised.listeners=PLAINTEXT://127.0.0.1:{port}
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs={logs}
num.partitions=1
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
message.max.bytes=8388608
replica.fetch.max.bytes=8388608
log.segment.bytes=104857600
log.cleaner.dedupe.buffer.size=16777216
log.retention.check.interval.ms=60000
"""


class LocalBroker:
    """One local Kafka node. ``with LocalBroker(port=0) as b: use(b.bootstrap)``.

    The data directory keeps the log, the formatted metadata and the chosen controller port, so
    a broker stopped or killed can be started again on the same directory and port with its
    records intact (tests use that to take the broker away and bring it back).
    """

    def __init__(self, port: int = 9092, data_dir: Path | None = None, heap: str = "384m") -> None:
        self._temp: tempfile.TemporaryDirectory[str] | None = None
        if data_dir is None:
            self._temp = tempfile.TemporaryDirectory(prefix="scrapeledger-kafka-")
            data_dir = Path(self._temp.name)
        self.data_dir = Path(data_dir)
        self.port = port or self._remembered("port") or free_port()
        self.heap = heap
        self._proc: subprocess.Popen[str] | None = None
        self._pumper: threading.Thread | None = None
        self._log: deque[str] = deque(maxlen=200)
        self.started_in: float | None = None

    # --- state kept in the data dir -----------------------------------------------------------

    def _remembered(self, name: str) -> int | None:
        path = self.data_dir / f"{name}.txt"
        return int(path.read_text()) if path.exists() else None

    def _remember(self, name: str, value: int) -> None:
        (self.data_dir / f"{name}.txt").write_text(str(value))

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    # --- lifecycle -----------------------------------------------------------------------------

    def _java(self) -> list[str]:
        java = shutil.which("java")
        if java is None:
            raise LocalBrokerError(
                "Java is not on PATH: Apache Kafka 4.x needs Java 17+ "
                "(apt-get install openjdk-17-jre-headless)"
            )
        libs = kafka_classpath()
        return [
            java, f"-Xms{self.heap}", f"-Xmx{self.heap}", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20",
            "-XX:+ExitOnOutOfMemoryError", "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={_resource('log4j2.properties')}",
            "-cp", f"{libs}/*",
        ]

    def start(self, timeout: float = 120.0) -> str:
        """Format (first time), start, and return the bootstrap address once a topic can be created."""
        if self.running():
            return self.bootstrap
        began = time.monotonic()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        java = self._java()
        self._remember("port", self.port)
        cport = self._remembered("controller_port") or free_port()
        self._remember("controller_port", cport)
        props = self.data_dir / "server.properties"
        props.write_text(
            SERVER_PROPERTIES.format(port=self.port, cport=cport, logs=self.data_dir / "logs")
        )
        if not (self.data_dir / "logs" / "meta.properties").exists():
            fmt = subprocess.run(
                [*java, "kafka.tools.StorageTool", "format", "-t", new_cluster_id(), "-c", str(props)],
                capture_output=True, text=True, check=False,
            )
            if fmt.returncode != 0:
                raise LocalBrokerError(f"formatting Kafka storage failed:\n{fmt.stdout}{fmt.stderr}")
        self._log.clear()
        self._close_pipe()
        self._proc = subprocess.Popen(
            [*java, "kafka.Kafka", str(props)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # our own process group: a Ctrl-C of a test runner reaches us once
        )
        self._pumper = threading.Thread(target=self._pump, name="kafka-log", daemon=True)
        self._pumper.start()
        try:
            self._wait_ready(began + timeout)
        except BaseException:
            self.kill()
            raise
        self.started_in = time.monotonic() - began
        log.info("broker ready at %s in %.1fs", self.bootstrap, self.started_in)
        return self.bootstrap

    def _pump(self) -> None:
        proc = self._proc
        assert proc is not None and proc.stdout is not None
        for line in proc.stdout:
            self._log.append(line.rstrip())
            if " ERROR " in line or " FATAL " in line:
                log.warning("kafka: %s", line.rstrip())

    def _wait_ready(self, deadline: float) -> None:
        admin = AdminClient({"bootstrap.servers": self.bootstrap, "log_level": 0})
        probe = "__scrapeledger_ready"
        while True:
            if self._proc is not None and self._proc.poll() is not None:
                raise LocalBrokerError(
                    f"Kafka exited with code {self._proc.returncode}:\n" + "\n".join(list(self._log)[-25:])
                )
            if time.monotonic() > deadline:
                tail = "\n".join(list(self._log)[-25:])
                raise LocalBrokerError(f"Kafka did not become ready in time:\n{tail}")
            try:
                topics = admin.list_topics(timeout=2).topics
                if probe in topics:
                    return
                futures = admin.create_topics([NewTopic(probe, 1, 1)], operation_timeout=10)
                futures[probe].result(timeout=15)
                return
            except KafkaException as exc:
                err = exc.args[0] if exc.args else None
                if err is not None and hasattr(err, "code") and err.code() == 36:  # TOPIC_ALREADY_EXISTS
                    return
            except Exception as exc:
                log.debug("broker not ready yet: %r", exc)
            time.sleep(0.25)  # poll interval between readiness checks, bounded by the deadline

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM (Kafka shuts down cleanly), SIGKILL after ``timeout``; returns the exit code."""
        proc = self._proc
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                log.warning("Kafka did not stop in %.0fs; killing it", timeout)
                proc.kill()
                proc.wait()
        self._close_pipe()
        return proc.returncode

    def _close_pipe(self) -> None:
        """Close the finished process's output pipe once its reader has drained it."""
        proc = self._proc
        if proc is None or proc.poll() is None:
            return
        if self._pumper is not None:
            self._pumper.join(timeout=5)
        if proc.stdout is not None:
            proc.stdout.close()

    def kill(self) -> None:
        """SIGKILL: the broker disappears as in a crash; ``start()`` brings it back."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        self._close_pipe()

    def close(self) -> None:
        self.stop()
        if self._temp is not None:
            self._temp.cleanup()
            self._temp = None

    def __enter__(self) -> LocalBroker:
        self.start()
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def run_foreground(port: int, data_dir: Path | None) -> int:
    """``scrapeledger broker``: run until SIGTERM/SIGINT; print ``broker ready at ...`` when usable."""
    broker = LocalBroker(port=port, data_dir=data_dir)
    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        broker.start()
    except LocalBrokerError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        broker.close()
        return 2
    print(
        f"broker ready at {broker.bootstrap} (Apache Kafka {KAFKA_VERSION}, KRaft, "
        f"started in {broker.started_in:.1f}s, data in {broker.data_dir})",
        flush=True,
    )
    code = 0
    while not stop.wait(0.5):
        if not broker.running():
            print(f"error: Kafka exited with code {broker.stop()}", file=sys.stderr, flush=True)
            code = 1
            break
    with contextlib.suppress(Exception):
        broker.close()
    return code


def _main(argv: list[str]) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m scrapeledger.broker")
    ap.add_argument("--port", type=int, default=9092)
    ap.add_argument("--data-dir", type=Path, default=None)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return run_foreground(args.port, args.data_dir)


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
