"""``up`` killed hard leaves nothing running: its children and the broker's JVM end by themselves."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from tests.support.procs import ROOT
from tests.support.stack import Proc


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def _descendants(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        for child in _children(todo.pop()):
            out.append(child)
            todo.append(child)
    return out


def _alive(pid: int) -> bool:
    try:
        return (Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]) != "Z"
    except OSError:
        return False


def test_a_sigkilled_up_leaves_no_process_behind(tmp_path: Path) -> None:
    # after SIGKILL of up, its broker JVM, state and validator kept running with parent 1
    env = {k: v for k, v in os.environ.items() if k not in ("KAFKA_BOOTSTRAP_SERVERS", "METRICS_PORT")}
    popen = subprocess.Popen(
        [sys.executable, "-m", "scrapeledger.cli", "up", "--port", "0", "--kafka-port", "0",
         "--metrics-port", "0", "--data-dir", str(tmp_path)],
        cwd=ROOT, env={**env, "PYTHONUNBUFFERED": "1"}, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, bufsize=1,
    )
    up = Proc("up", popen)
    def pump() -> None:
        assert popen.stdout is not None
        for line in popen.stdout:
            up.lines.append(line)
            up.events.put(line)

    up.pump = threading.Thread(target=pump, daemon=True)
    up.pump.start()
    left: list[int] = []
    try:
        up.wait_for(r"scrapeledger is up", timeout=240)
        family = _descendants(popen.pid)
        broker = next(p for p in _children(popen.pid)
                      if b"broker" in Path(f"/proc/{p}/cmdline").read_bytes())
        jvm = _children(broker)
        assert jvm and b"kafka.Kafka" in Path(f"/proc/{jvm[0]}/cmdline").read_bytes()
        assert len(family) >= 6  # broker (+ its JVM), state, validator, scraper, edge
        # the broker's Python dies at once too: its JVM must go by its own parent-death signal
        os.kill(broker, signal.SIGKILL)
        os.kill(popen.pid, signal.SIGKILL)
        popen.wait(10)
        deadline = time.monotonic() + 60
        while (left := [p for p in family if _alive(p)]) and time.monotonic() < deadline:
            time.sleep(0.2)  # polling for the processes' exit, bounded by the deadline
        assert not left, [Path(f"/proc/{p}/cmdline").read_bytes() for p in left if _alive(p)]
    finally:
        if popen.poll() is None:
            popen.terminate()
            popen.wait(60)
        for pid in left:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        up.close()
