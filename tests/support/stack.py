"""Run Scrapeledger components as real processes against the test broker.

Each component is the production entry point (``python -m scrapeledger.cli <name>``) in its own
process, so tests can SIGTERM or SIGKILL any of them. Readiness is read from the process output
(the edge prints ``edge <pod> ready on port N``), never guessed with a sleep.
"""

from __future__ import annotations

import contextlib
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from scrapeledger.children import spawn
from scrapeledger.settings import Settings

from .procs import spawn_listening

T = TypeVar("T")

READY = re.compile(r"edge (\S+) ready on port (\d+)")


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[str]
    lines: list[str] = field(default_factory=list)
    events: queue.Queue[str] = field(default_factory=queue.Queue)
    pump: threading.Thread | None = None

    def wait_for(self, pattern: str, timeout: float = 60.0) -> re.Match[str]:
        rx = re.compile(pattern)
        for line in self.lines:
            if m := rx.search(line):
                return m
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self.events.get(timeout=left)
            except queue.Empty:
                break
            if m := rx.search(line):
                return m
        tail = "".join(self.lines[-30:])
        raise AssertionError(f"{self.name}: no line matching {pattern!r} in {timeout}s:\n{tail}")

    def close(self) -> None:
        if self.popen.poll() is not None and self.pump is not None:
            self.pump.join(timeout=5)
            if self.popen.stdout is not None:
                self.popen.stdout.close()

    def output(self) -> str:
        return "".join(self.lines)


class Stack:
    """Components of one test's deployment (one topic prefix), started and stopped on demand."""

    def __init__(self, settings: Settings, workdir: Path, env: Mapping[str, str] | None = None) -> None:
        self.settings = settings
        self.workdir = workdir
        self.env = {
            **os.environ,
            "KAFKA_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
            "SCRAPELEDGER_TOPIC_PREFIX": settings.topic_prefix,
            "SCRAPELEDGER_STATE_DIR": str(workdir / "state"),
            "SCRAPELEDGER_PARTITIONS": str(settings.partitions),
            "SCRAPELEDGER_DELIVERY_PARTITIONS": str(settings.delivery_partitions),
            "SCRAPER_ALLOW_PRIVATE": "1",
            "SCRAPER_BACKOFF_BASE_S": "0.05",
            "SCRAPER_BACKOFF_MAX_S": "0.5",
            "SCRAPER_TIMEOUT_S": "3",
            "SCRAPELEDGER_COMMIT_INTERVAL_S": "0.2",
            "EDGE_DRAIN_S": "2",
            "METRICS_PORT": "0",  # off; tests that read /metrics give each process a port
            "PYTHONUNBUFFERED": "1",
            "SCRAPELEDGER_SECRET_KEYS": ",".join(k.get_secret_value() for k in settings.secret_keys),
            **(env or {}),
        }
        if not self.env["SCRAPELEDGER_SECRET_KEYS"]:
            del self.env["SCRAPELEDGER_SECRET_KEYS"]  # the processes share the local key file
        self.procs: dict[str, Proc] = {}

    def start(self, component: str, *, name: str | None = None, port: int = 0, **env: str) -> Proc:
        name = name or component
        argv = [sys.executable, "-m", "scrapeledger.cli", component]
        if component == "edge":
            argv += ["--port", str(port)]
        popen = spawn(  # ends with this test process, however it ends
            argv,
            env={**self.env, "POD_NAME": env.pop("POD_NAME", name), **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
            start_new_session=True,
        )
        proc = Proc(name, popen)
        proc.pump = threading.Thread(target=self._pump, args=(proc,), daemon=True)
        proc.pump.start()
        self.procs[name] = proc
        return proc

    def processors(self) -> None:
        for component in ("state", "validator", "scraper"):
            self.start(component)

    def edge(self, pod: str = "edge-a", *, port: int = 0, **env: str) -> str:
        """Start an edge pod (on ``port``, or any free one); return its WebSocket URL once ready."""
        proc = self.start("edge", name=pod, port=port, POD_NAME=pod, **env)
        listening = proc.wait_for(READY.pattern, timeout=90).group(2)
        return f"ws://127.0.0.1:{listening}/"

    @staticmethod
    def _pump(proc: Proc) -> None:
        assert proc.popen.stdout is not None
        for line in proc.popen.stdout:
            proc.lines.append(line)
            proc.events.put(line)

    def kill(self, name: str) -> None:
        self.procs[name].popen.send_signal(signal.SIGKILL)
        self.procs[name].popen.wait(10)
        self.procs[name].close()

    def terminate(self, name: str, timeout: float = 30.0) -> int:
        """SIGTERM one component and return its exit code; fail, with what it printed, if it
        is still running after ``timeout`` seconds (``stop_all`` kills it then)."""
        popen = self.procs[name].popen
        popen.send_signal(signal.SIGTERM)
        try:
            code = popen.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{name} still running {timeout:g} s after SIGTERM:\n"
                                 f"{self.procs[name].output()[-3000:]}") from None
        self.procs[name].close()
        return code

    def cpu_seconds(self) -> dict[str, float]:
        """CPU time (user + system) each running component has used so far."""
        ticks = os.sysconf("SC_CLK_TCK")
        out = {}
        for name, proc in self.procs.items():
            try:
                fields = Path(f"/proc/{proc.popen.pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            out[name] = (int(fields[11]) + int(fields[12])) / ticks
        return out

    def rss_mib(self, name: str) -> float:
        """Resident memory of a running component, in MiB."""
        for line in Path(f"/proc/{self.procs[name].popen.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise LookupError(f"no VmRSS for {name}")

    def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.popen.poll() is None:
                proc.popen.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.popen.wait(30)
            except subprocess.TimeoutExpired:
                proc.popen.kill()
                proc.popen.wait()
            proc.close()


@contextlib.contextmanager
def start_pages() -> Iterator[str]:
    """Run the local page server (tests/support/pages.py) as a process; yield its base URL."""
    with spawn_listening("tests.support.pages", banner="pages listening on") as port:
        yield f"http://127.0.0.1:{port}"


def eventually(
    check: Callable[[], T], *, timeout: float = 60.0, what: str = "condition", interval: float = 0.0
) -> T:
    """Poll ``check`` until it returns something truthy; fail with ``what`` after ``timeout``.

    Each call of ``check`` is a real round trip (a Kafka read), so no sleep is needed between;
    ``interval`` spaces out checks that are too cheap to poll flat out (a metadata or HTTP probe
    while a broker starts on the same cores).
    """
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        if interval:
            time.sleep(interval)  # pacing between polls of a condition, not a readiness guess
