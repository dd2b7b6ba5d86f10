"""A child spawned by :func:`scrapeledger.children.spawn` ends when its parent dies, even by SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

from tests.support.procs import ROOT

# the parent spawns its child from a thread that then ends: the child must outlive the thread
# (PDEATHSIG follows the forking thread) and die only with the process
PARENT = textwrap.dedent("""
    import sys, threading, time
    from scrapeledger.children import spawn
    box = []
    sleeper = [sys.executable, "-c", "import time; time.sleep(600)"]
    t = threading.Thread(target=lambda: box.append(spawn(sleeper)))
    t.start(); t.join()
    time.sleep(1.0)  # an absence check: a child signalled at the thread's exit would be gone
    print(box[0].pid, box[0].poll(), flush=True)
    time.sleep(600)
""")


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_a_child_outlives_the_spawning_thread_and_dies_with_its_killed_parent() -> None:
    parent = subprocess.Popen([sys.executable, "-c", PARENT], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        pid_text, poll = parent.stdout.readline().split()
        child = int(pid_text)
        assert poll == "None" and _alive(child)
        parent.send_signal(signal.SIGKILL)
        parent.wait(10)
        deadline = time.monotonic() + 10
        while _alive(child) and time.monotonic() < deadline:
            time.sleep(0.05)  # polling for the child's exit, bounded by the deadline
        assert not _alive(child), "the child kept running after its parent was SIGKILLed"
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        if parent.stdout is not None:
            parent.stdout.close()
        if "child" in locals() and _alive(child):
            os.kill(child, signal.SIGKILL)
