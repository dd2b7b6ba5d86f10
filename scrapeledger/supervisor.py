"""``scrapeledger up``: the whole service on one machine, as separate processes.

Each component runs as its own process (as in production, so a crash of one is a crash of one),
with its output prefixed by its name. ``up`` announces "scrapeledger is up" only once every
child's ``/readyz`` answers 200; a child that exits before that is reported by name with its last
log line and ``up`` exits 1 (a port taken by another program does not go away by restarting).
A child that dies later is restarted with back-off.

Children run in their own process group, so a terminal's Ctrl-C reaches ``up`` alone, which
then stops them in order with the signal it got: the edge first (it drains while the processors
still run), then the processors, then the broker (which they need until they have committed).
Every child is spawned with a parent-death signal (:mod:`scrapeledger.children`), so a SIGKILLed
``up`` leaves nothing running.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from .children import spawn
from .errors import ScrapeledgerError

log = logging.getLogger(__name__)

PROCESSORS = ("state", "validator", "scraper")
COMPONENTS = (*PROCESSORS, "edge")
DEFAULT_METRICS_BASE = 9100
"""``up``'s processors serve /metrics on 9100 (state), 9101 (validator), 9102 (scraper): the same
per-component defaults each has when started on its own (``Settings.metrics_port_for``)."""

_EDGE_PORT = re.compile(r"listening on port (\d+)")
_BROKER_READY = re.compile(r"broker ready at (\S+)")


class StartFailed(ScrapeledgerError):
    """A child exited before it was ready (internal: turned into a report and exit code 1)."""


@dataclass
class Child:
    name: str
    argv: list[str]
    env: dict[str, str]
    proc: subprocess.Popen[str] | None = None
    restarts: int = 0
    started: float = field(default=0.0)
    tail: deque[str] = field(default_factory=lambda: deque(maxlen=20))
    port: int | None = None
    """Where its /readyz is: the metrics port (processors) or the edge's port (from its log)."""
    seen: threading.Event = field(default_factory=threading.Event)
    """Set by the output pump when a line matching ``watch`` arrives."""
    watch: re.Pattern[str] | None = None
    match: re.Match[str] | None = None
    pump: threading.Thread | None = None

    def start(self) -> None:
        self.seen.clear()
        self.proc = spawn(
            self.argv, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            bufsize=1, start_new_session=True,  # a terminal's Ctrl-C reaches `up`, not every child
        )
        self.started = time.monotonic()
        assert self.proc.stdout is not None
        self.pump = threading.Thread(target=self._pump, args=(self.proc.stdout,), daemon=True)
        self.pump.start()

    def drained(self) -> None:
        """Wait (briefly) until an exited child's output has all been read."""
        if self.pump is not None:
            self.pump.join(timeout=2)

    def _pump(self, stream: IO[str]) -> None:
        for line in stream:
            sys.stdout.write(f"{self.name:>9} | {line}")
            sys.stdout.flush()
            if line.strip():
                self.tail.append(line.rstrip())
            if self.watch is not None and not self.seen.is_set() and (m := self.watch.search(line)):
                self.match = m
                self.seen.set()

    def exited(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def last_line(self) -> str:
        """Its last output line; the last ``error:`` line if it printed one (a client library
        may log after the process's own error, on the way out)."""
        errors = [line for line in self.tail if line.startswith("error:")]
        return errors[-1] if errors else (self.tail[-1] if self.tail else "(no output)")

    def signal(self, sig: int) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)

    def wait(self, timeout: float) -> None:
        if self.proc is None:
            return
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            log.warning("%s did not stop in %.0fs; killing it", self.name, timeout)
            self.proc.kill()
            self.proc.wait()


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "scrapeledger.cli", *args]


def _ready(host: str, port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://{host}:{port}/readyz", timeout=2) as resp:
            return int(resp.status) == 200
    except (urllib.error.URLError, OSError):
        return False


def _probe_host(env: dict[str, str]) -> str:
    host = env.get("METRICS_HOST", "127.0.0.1")
    return "127.0.0.1" if host in ("", "0.0.0.0", "::") else host


def metrics_ports(base: int) -> dict[str, int]:
    """Each processor's metrics port: ``base``, ``base + 1``, ...; ``0`` picks free ports."""
    from .broker import free_port

    return {name: (base + i if base else free_port()) for i, name in enumerate(PROCESSORS)}


class Stack:
    """The children of one ``up`` and the order they start and stop in."""

    def __init__(self, *, edge_port: int, kafka_port: int, metrics_base: int, data_dir: Path) -> None:
        env = dict(os.environ)
        env.setdefault("SCRAPELEDGER_STATE_DIR", str(data_dir / "state"))
        env["EDGE_PORT"] = str(edge_port)
        env["PYTHONUNBUFFERED"] = "1"  # children's lines reach the terminal as they are written
        self.env = env
        self.stopping = threading.Event()
        self.signum = signal.SIGTERM
        self.broker: Child | None = None
        if not env.get("KAFKA_BOOTSTRAP_SERVERS"):
            self.broker = Child(
                "broker", _cli("broker", "--port", str(kafka_port), "--data-dir", str(data_dir / "kafka")),
                env, watch=_BROKER_READY,
            )
        ports = metrics_ports(metrics_base)
        self.processors = [Child(n, _cli(n), {**env, "METRICS_PORT": str(ports[n])}, port=ports[n])
                           for n in PROCESSORS]
        self.edge = Child("edge", _cli("edge"), env, watch=_EDGE_PORT)
        self.probe_host = _probe_host(env)

    @property
    def children(self) -> list[Child]:
        return [*self.processors, self.edge]

    def on_signal(self, signum: int, frame: object) -> None:
        self.signum = signal.Signals(signum)
        self.stopping.set()

    def _check_alive(self, children: list[Child]) -> None:
        for child in children:
            code = child.exited()
            if code is not None:
                child.drained()  # its last lines are printed (and in the tail) before the report
                raise StartFailed(f"{child.name} exited with code {code} before it was ready: "
                                  f"{child.last_line()}")

    def _wait(self, check: list[Child], done: Callable[[], bool], deadline: float) -> bool:
        """Poll ``done`` until it holds (True), a stop is asked (False); raise if a child died."""
        while not self.stopping.is_set():
            self._check_alive(check)
            if done():
                return True
            if time.monotonic() > deadline:
                raise StartFailed("not ready in time: " + ", ".join(
                    f"{c.name} ({c.last_line()})" for c in check if not self._child_ready(c)))
            self.stopping.wait(0.25)
        return False

    def _child_ready(self, child: Child) -> bool:
        if child is self.broker:
            return child.seen.is_set()
        if child is self.edge and child.port is None:
            if not child.seen.is_set() or child.match is None:
                return False
            child.port = int(child.match.group(1))
        assert child.port is not None
        return _ready(self.probe_host, child.port)

    def start(self, timeout: float) -> bool:
        """Start everything; True once all are ready, False if a stop signal came first."""
        deadline = time.monotonic() + timeout
        if self.broker is not None:
            self.broker.start()
            if not self._wait([self.broker], self.broker.seen.is_set, deadline):
                return False
            assert self.broker.match is not None
            bootstrap = self.broker.match.group(1)  # the real port, also for --kafka-port 0
            for child in self.children:
                child.env["KAFKA_BOOTSTRAP_SERVERS"] = bootstrap
            self.env["KAFKA_BOOTSTRAP_SERVERS"] = bootstrap
        for child in self.children:
            child.start()
        everyone = [*([self.broker] if self.broker else []), *self.children]
        return self._wait(everyone, lambda: all(self._child_ready(c) for c in self.children), deadline)

    def supervise(self) -> None:
        """Restart children that die (with back-off) until a stop signal or the broker dies."""
        while not self.stopping.wait(0.5):
            if self.broker is not None and self.broker.exited() is not None:
                log.error("the broker exited with %d: %s; stopping", self.broker.exited(),
                          self.broker.last_line())
                self.stopping.set()
                break
            for child in self.children:
                code = child.exited()
                if code is None:
                    continue
                if time.monotonic() - child.started > 60:
                    child.restarts = 0
                pause = min(30.0, 2.0 ** min(child.restarts, 5))
                log.warning("%s exited with %d (%s); restarting in %.0fs", child.name, code,
                            child.last_line(), pause)
                if self.stopping.wait(pause):
                    break
                child.restarts += 1
                if child is self.edge:
                    self.edge.env["EDGE_PORT"] = str(self.edge.port or self.env["EDGE_PORT"])
                child.start()

    def stop(self) -> None:
        """Edge, then processors, then broker: each one waits for the ones before it."""
        sig = self.signum
        self.edge.signal(sig)
        self.edge.wait(float(self.env.get("EDGE_DRAIN_S", "10")) + 10)
        for child in self.processors:
            child.signal(sig)
        for child in self.processors:
            child.wait(30)
        if self.broker is not None:
            self.broker.signal(sig)
            self.broker.wait(60)


def run_stack(*, edge_port: int, kafka_port: int, data_dir: Path,
              metrics_base: int = DEFAULT_METRICS_BASE, timeout: float = 300.0) -> int:
    stack = Stack(edge_port=edge_port, kafka_port=kafka_port, metrics_base=metrics_base,
                  data_dir=data_dir)
    signal.signal(signal.SIGTERM, stack.on_signal)
    signal.signal(signal.SIGINT, stack.on_signal)
    code = 0
    try:
        if stack.start(timeout):
            prefix = stack.env.get("SCRAPELEDGER_TOPIC_PREFIX", "")
            log.info("scrapeledger is up: ws://127.0.0.1:%d (Kafka at %s, topic prefix %r)",
                     stack.edge.port, stack.env["KAFKA_BOOTSTRAP_SERVERS"], prefix)
            stack.supervise()
    except StartFailed as exc:
        log.error("scrapeledger could not start: %s", exc)
        code = 1
    stack.stop()
    if stack.broker is not None and stack.broker.exited() not in (0, None) and code == 0:
        code = 1
    return code
