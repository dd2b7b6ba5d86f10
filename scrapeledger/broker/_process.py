"""One local Kafka node as a JVM process: start it, know when it is usable, stop or kill it.

``start()`` is ``kafka.tools.StorageTool format`` (first time only) then ``java -cp <jars>
kafka.Kafka server.properties``, which is all ``bin/kafka-server-start.sh`` boils down to, then
:func:`~._readiness.wait_usable`. The JVM leads its own process session, so a safety net here
ends every JVM (and removes every temporary data dir) that a caller forgot to stop when this
Python process exits; nothing else would, since a terminal's signals no longer reach it.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections import deque
from pathlib import Path
from types import TracebackType
from typing import Self

from ..children import spawn
from ..errors import LocalBrokerError
from ._classpath import KAFKA_VERSION
from ._config import (
    BROKER_STATE_FILE,
    ClusterNode,
    check_port_free,
    format_storage,
    formatted_cluster_id,
    free_port,
    if_free,
    jvm_command,
    new_cluster_id,
    read_state,
    server_properties,
    write_state,
)
from ._readiness import wait_usable

# one logger for the whole launcher, as when it was one module: lines keep their name
log = logging.getLogger("scrapeledger.broker")

LOG_TAIL = 40
"""Lines of the broker's output an error message carries."""


class Running:
    """What a local node and a local cluster share: ``with`` starts it and always stops it."""

    def start(self) -> str:
        raise NotImplementedError

    def stop(self) -> int | None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class BrokerStartAborted(LocalBrokerError):
    """``start()`` was asked to give up (SIGTERM/SIGINT during ``scrapeledger broker`` start-up)."""


class LocalBroker(Running):
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
        self.data_dir = Path(data_dir) if data_dir is not None else make_temp_dir()
        self.heap = heap
        # port 0: the port this data dir used before (a restart keeps its address), unless
        # something else holds it now; then any free one
        self.port = port or if_free(int(self._state().get("port") or 0)) or free_port()
        self.started_in: float | None = None
        """Seconds the last ``start()`` took, from call to a topic being created."""
        self._proc: subprocess.Popen[str] | None = None
        self._pumper: threading.Thread | None = None
        self._log: deque[str] = deque(maxlen=400)
        self._abort = threading.Event()

    # --- state kept in the data dir -----------------------------------------------------------

    def _state(self) -> dict[str, int | str]:
        return read_state(self.data_dir / BROKER_STATE_FILE)

    def _save_state(self, state: dict[str, int | str]) -> None:
        write_state(self.data_dir / BROKER_STATE_FILE, state)

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

    def log_tail(self, lines: int = LOG_TAIL) -> str:
        """The broker's last output lines (WARN and up, plus start-up), for error messages."""
        return "\n".join(list(self._log)[-lines:])

    # --- start ---------------------------------------------------------------------------------

    def abort_start(self) -> None:
        """Make a start-up still waiting give up at its next poll (for a signal handler)."""
        self._abort.set()

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
            self.data_dir = make_temp_dir()
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
        jvm = jvm_command(self.data_dir, self.heap)
        self._check_abort()
        cport, cluster_id = self._identity()
        check_port_free(self.port, "client")  # before saving: a taken port is not this dir's
        check_port_free(cport, "controller")
        self._save_state({"port": self.port, "controller_port": cport, "cluster_id": cluster_id})
        logs = self.data_dir / "logs"
        props = self.data_dir / "server.properties"
        props.write_text(server_properties(self.port, cport, logs, self.node))
        formatted = formatted_cluster_id(logs)
        if formatted is None:
            format_storage(jvm_command(self.data_dir, "128m", short_lived=True), props, cluster_id)
        elif formatted != cluster_id:  # a dir formatted elsewhere: its metadata wins
            cluster_id = formatted
            self._save_state({"port": self.port, "controller_port": cport, "cluster_id": cluster_id})
        self._check_abort()
        self._launch(jvm, props)
        return cluster_id

    def _identity(self) -> tuple[int, str]:
        """The controller port and cluster id: the cluster's for a cluster node, else this data
        dir's from its last start, else new ones (a controller port never equal to the client's)."""
        state = self._state()
        node = self.node
        cport = node.controller_port if node is not None else int(state.get("controller_port") or 0)
        while cport in (0, self.port):
            cport = free_port()
        cluster_id = node.cluster_id if node is not None else str(state.get("cluster_id") or new_cluster_id())
        return cport, cluster_id

    def wait_ready(self, timeout: float = 120.0) -> None:
        """After :meth:`launch`: wait until this node creates a topic (see :meth:`start`)."""
        state = self._state()
        began = time.monotonic()
        self._wait_ready(began + timeout, str(state.get("cluster_id") or ""))
        self.started_in = time.monotonic() - began

    def _wait_ready(self, deadline: float, cluster_id: str) -> None:
        wait_usable(self.bootstrap, cluster_id, lambda: self._check_progress(deadline))

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

    # --- stop ----------------------------------------------------------------------------------

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
            remove_temp_dir(self.data_dir)
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


# Safety net for callers that forget stop(): the JVM runs in its own session, so nothing else
# would end it when this Python process exits.
_RUNNING: set[subprocess.Popen[str]] = set()
_TEMP_DIRS: set[Path] = set()


def make_temp_dir() -> Path:
    """A data dir for a broker or cluster given none; removed by its ``stop()`` or at exit."""
    path = Path(tempfile.mkdtemp(prefix="scrapeledger-kafka-"))
    _TEMP_DIRS.add(path)
    return path


def remove_temp_dir(path: Path) -> None:
    """Remove a data dir :func:`make_temp_dir` made (the exit safety net then forgets it)."""
    shutil.rmtree(path, ignore_errors=True)
    _TEMP_DIRS.discard(path)


@atexit.register
def _reap_at_exit() -> None:
    for proc in list(_RUNNING):
        if proc.poll() is None:
            _terminate(proc)
    for path in list(_TEMP_DIRS):
        shutil.rmtree(path, ignore_errors=True)


def _terminate(proc: subprocess.Popen[str]) -> None:
    """SIGTERM a left-over JVM's process group; SIGKILL it if it is still there after 15 s."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
