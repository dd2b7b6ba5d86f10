"""``scrapeledger broker`` / ``python -m scrapeledger.broker``: a local Kafka in the foreground.

Other processes (``scrapeledger up``, tests) start this and read its stdout for one ``broker
ready at HOST:PORT ...`` line instead of guessing with sleeps, so that line is printed only once
the broker is usable, and it is the only line on stdout; everything else goes to stderr.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from ..errors import LocalBrokerError
from ._classpath import KAFKA_VERSION
from ._cluster import LocalCluster
from ._process import LocalBroker

# one logger for the whole launcher, as when it was one module: lines keep their name
log = logging.getLogger("scrapeledger.broker")

_CLEAN_EXITS = (0, 143, -signal.SIGTERM)
"""A JVM that stopped as asked exits 0 or 143 (128 + SIGTERM)."""

_USAGE = "usage: python -m scrapeledger.broker [--port PORT] [--data-dir DIR] [--nodes N]"


def run_foreground(port: int, data_dir: Path | None, nodes: int = 1) -> int:
    """``scrapeledger broker``: start, print one ``broker ready at HOST:PORT ...`` line, run until signalled.

    SIGTERM/SIGINT stop the broker cleanly and return 0 (also during start-up, which they
    abort); a broker that dies returns 1.
    """
    broker: LocalBroker | LocalCluster = (
        LocalBroker(port=port, data_dir=data_dir) if nodes == 1
        else LocalCluster(nodes, port=port, data_dir=data_dir)
    )
    stopping = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        log.info("%s: stopping the broker", signal.Signals(signum).name)
        stopping.set()
        broker.abort_start()  # a start-up still waiting gives up at its next poll

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        return _serve(broker, nodes, stopping)
    finally:
        broker.stop(timeout=10)  # no-op unless something in _serve raised
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _serve(broker: LocalBroker | LocalCluster, nodes: int, stopping: threading.Event) -> int:
    """Start, announce, then watch the broker until ``stopping``; the exit code."""
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
    return _watch(broker, stopping)


def _watch(broker: LocalBroker | LocalCluster, stopping: threading.Event) -> int:
    """Until ``stopping``: 1 at once if the broker dies; else stop it and 0 if it stopped cleanly."""
    while not stopping.wait(0.5):
        if not broker.running():
            code = broker.stop()
            print(f"error: Kafka exited with code {code}\n{broker.log_tail()}",
                  file=sys.stderr, flush=True)
            return 1
    code = broker.stop()
    if code not in _CLEAN_EXITS:
        print(f"error: Kafka did not shut down cleanly (exit {code})", file=sys.stderr, flush=True)
        return 1
    log.info("broker stopped")
    return 0


def _parse_args(argv: list[str]) -> tuple[int, Path | None, int]:
    """``--port N`` / ``--port=N``, ``--data-dir D`` and ``--nodes N``; the CLI proper is
    ``scrapeledger broker``, and this entry point must not need Typer's start-up time."""
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
        if name == "--data-dir":
            data_dir = Path(value)
        elif name == "--port":
            port = _number(name, value)
        else:
            nodes = _number(name, value)
    if nodes < 1:
        raise SystemExit(f"{_USAGE}\n--nodes needs at least 1")
    return port, data_dir, nodes


def _number(name: str, value: str) -> int:
    """``value`` as an int, or the usage and what was wrong."""
    try:
        return int(value)
    except ValueError:
        raise SystemExit(f"{_USAGE}\n{name} needs a number, not {value!r}") from None


def _main(argv: list[str]) -> int:
    """``python -m scrapeledger.broker``: logging to stderr (stdout is for the ready line), then run."""
    port, data_dir, nodes = _parse_args(argv)
    logging.basicConfig(
        level=os.environ.get("SCRAPELEDGER_LOG_LEVEL", "INFO"),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    return run_foreground(port, data_dir, nodes)
