"""``scrapeledger up``: the whole service on one machine, as separate processes.

Each component runs as its own process (as in production, so a crash of one is a crash of one),
with its output prefixed by its name. A component that exits unexpectedly is restarted with
back-off; SIGTERM stops the edge first (so it drains), then the processors, then the broker.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

log = logging.getLogger(__name__)

COMPONENTS = ("state", "validator", "scraper", "edge")


@dataclass
class Child:
    name: str
    argv: list[str]
    env: dict[str, str]
    proc: subprocess.Popen[str] | None = None
    restarts: int = 0
    started: float = field(default=0.0)

    def start(self) -> None:
        self.proc = subprocess.Popen(
            self.argv, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            bufsize=1,
        )
        self.started = time.monotonic()
        assert self.proc.stdout is not None
        threading.Thread(target=_pump, args=(self.name, self.proc.stdout), daemon=True).start()

    def stop(self, timeout: float = 30.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            log.warning("%s did not stop in %.0fs; killing it", self.name, timeout)
            self.proc.kill()
            self.proc.wait()


def _pump(name: str, stream: IO[str]) -> None:
    for line in stream:
        sys.stdout.write(f"{name:>9} | {line}")
        sys.stdout.flush()


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "scrapeledger.cli", *args]


def start_broker(port: int, data_dir: Path, env: dict[str, str]) -> tuple[subprocess.Popen[str], str]:
    """Start ``scrapeledger broker`` and return it with its bootstrap address once it is ready."""
    proc = subprocess.Popen(
        _cli("broker", "--port", str(port), "--data-dir", str(data_dir / "kafka")),
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        sys.stdout.write(f"{'broker':>9} | {line}")
        if "broker ready" in line:
            threading.Thread(target=_pump, args=("broker", proc.stdout), daemon=True).start()
            return proc, f"127.0.0.1:{port}"
    raise SystemExit(f"the local broker exited with code {proc.wait()} before it was ready")


def run_stack(*, edge_port: int, kafka_port: int, data_dir: Path) -> int:
    env = dict(os.environ)
    env.setdefault("SCRAPELEDGER_STATE_DIR", str(data_dir / "state"))
    env["EDGE_PORT"] = str(edge_port)
    broker: subprocess.Popen[str] | None = None
    if not env.get("KAFKA_BOOTSTRAP_SERVERS"):
        broker, bootstrap = start_broker(kafka_port, data_dir, env)
        env["KAFKA_BOOTSTRAP_SERVERS"] = bootstrap
    # one metrics port each (state 9100, validator 9101, scraper 9102 by default)
    base = int(env.get("METRICS_PORT", "9100"))
    children = [
        Child(name, _cli(name), {**env, "METRICS_PORT": str(base + i) if base else "0"})
        for i, name in enumerate(COMPONENTS)
    ]
    stopping = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    for child in children:
        child.start()
    log.info("scrapeledger is up: ws://127.0.0.1:%d (Kafka at %s)", edge_port,
             env["KAFKA_BOOTSTRAP_SERVERS"])
    while not stopping.wait(0.5):
        for child in children:
            assert child.proc is not None
            code = child.proc.poll()
            if code is not None:
                pause = min(30.0, 2.0 ** min(child.restarts, 5))
                if time.monotonic() - child.started > 60:
                    child.restarts = 0
                log.warning("%s exited with %d; restarting in %.0fs", child.name, code, pause)
                if stopping.wait(pause):
                    break
                child.restarts += 1
                child.start()
        if broker is not None and broker.poll() is not None:
            log.error("the broker exited with %d; stopping", broker.returncode)
            stopping.set()
    for child in reversed(children):  # edge first: it drains while processors still run
        child.stop()
    if broker is not None and broker.poll() is None:
        broker.terminate()
        broker.wait(60)
    return 0
