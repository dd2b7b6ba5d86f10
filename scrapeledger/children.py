"""Child processes that end when their parent dies, however it died.

``scrapeledger up``, the local broker and the test harness start processes of their own. A
parent that is SIGKILLed (or crashes) runs no clean-up, and its children used to keep running
with parent 1: a broker JVM holding a port, processors consuming. Linux's
``prctl(PR_SET_PDEATHSIG)`` makes the kernel signal a child when its parent goes away; the child
then shuts down as on any SIGTERM (the broker JVM does a controlled shutdown, processors commit).

The kernel fires the signal when the *thread* that forked the child exits, not the process, so a
child spawned from a short-lived thread (a test helper, a restart thread) would be signalled when
that thread finished. :func:`spawn` therefore forks every child from one daemon thread that lives
as long as the process.
"""

from __future__ import annotations

import ctypes
import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

_PR_SET_PDEATHSIG = 1
_LIBC: Any = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None

_requests: queue.SimpleQueue[tuple[Callable[[], subprocess.Popen[Any]], Future[subprocess.Popen[Any]]]]
_requests = queue.SimpleQueue()
_spawner: threading.Thread | None = None
_lock = threading.Lock()


def _serve() -> None:
    while True:
        make, done = _requests.get()
        if done.set_running_or_notify_cancel():
            try:
                done.set_result(make())
            except BaseException as exc:  # handed to the caller, which re-raises it
                done.set_exception(exc)


def _thread() -> None:
    global _spawner
    with _lock:
        if _spawner is None or not _spawner.is_alive():
            _spawner = threading.Thread(target=_serve, name="child-spawner", daemon=True)
            _spawner.start()


def _die_with(parent: int, sig: int) -> Callable[[], None]:
    prctl = _LIBC.prctl if _LIBC is not None else None

    def preexec() -> None:  # runs in the child between fork and exec: nothing but two syscalls
        if prctl is not None:
            prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os.kill(os.getpid(), signal.SIGKILL)

    return preexec


def spawn(argv: list[str], *, death_signal: int = signal.SIGTERM, **popen: Any) -> subprocess.Popen[Any]:
    """``subprocess.Popen(argv, **popen)`` for a child that gets ``death_signal`` when this
    process dies. Blocks until the child is forked (from the spawner thread)."""
    if "preexec_fn" in popen:
        raise TypeError("spawn() sets preexec_fn itself")
    preexec = _die_with(os.getpid(), death_signal)
    done: Future[subprocess.Popen[Any]] = Future()
    _thread()
    _requests.put((lambda: subprocess.Popen(argv, preexec_fn=preexec, **popen), done))
    return done.result()
