"""Small helpers for test processes and HTTP probes, shared by tests and benches."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from scrapeledger.children import spawn

ROOT = Path(__file__).resolve().parents[2]


@contextlib.contextmanager
def spawn_listening(module: str, *args: str, banner: str) -> Iterator[int]:
    """Run ``python -m module --port 0 ...``; yield the port from its ``<banner> PORT`` line."""
    proc = spawn(  # ends with this process, however it ends
        [sys.executable, "-m", module, "--port", "0", *args],
        stdout=subprocess.PIPE, text=True, cwd=ROOT,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # blocks until the process says it listens (or exits)
        if banner not in line:
            raise RuntimeError(f"{module} did not start: {line!r}")
        yield int(line.rsplit(" ", 1)[1])
    finally:
        proc.terminate()
        proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()


def http_get(url: str) -> tuple[int, str]:
    """Status and body of a GET; 0 and the error text when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        with exc:  # an HTTPError holds the response's socket until closed
            return exc.code, exc.read().decode()
    except OSError as exc:
        return 0, str(exc)
