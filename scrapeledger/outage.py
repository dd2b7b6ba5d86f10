"""Riding out a lost broker: one clock per outage, back-off, one log line per back-off step.

A Kafka broker that is killed and restarted (a node replaced, a crash, an upgrade) is a normal
event, not a reason for every process that talks to it to exit. Each place that must get through
an outage (a processor's run loop, the start-up reads, the edge's deliveries and body reads) keeps an
:class:`Outage`: it starts its clock at the first failure, answers how long to pause before the
next try, logs at attempts 1, 2, 4, 8, ... (so a ten-minute outage costs about ten lines, not
hundreds), and raises :class:`BrokerOutageError` once the broker has been away longer than
``SCRAPELEDGER_BROKER_OUTAGE_S``. A success ends the outage (:meth:`Outage.recovered`).
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from confluent_kafka import KafkaException

from .errors import BrokerError, BrokerOutageError
from .settings import Settings

log = logging.getLogger(__name__)

_T = TypeVar("_T")

BROKER_ERRORS: tuple[type[Exception], ...] = (KafkaException, BrokerError)
"""What a lost broker looks like from librdkafka and from our own Kafka wrappers."""

FIRST_PAUSE_S = 0.5
MAX_PAUSE_S = 5.0
"""Back-off between tries: doubles from 0.5 s to 5 s, so a returning broker is noticed within
5 s; the logging backs off further (see :class:`Outage`)."""


class Outage:
    """The broker as one component sees it: up, or away since some moment."""

    def __init__(self, settings: Settings, what: str) -> None:
        self.limit_s = settings.broker_outage_s
        self.bootstrap = settings.bootstrap_servers
        self.what = what
        self.began: float | None = None
        self.failures = 0
        self._next_report = 1

    @property
    def down_s(self) -> float:
        return 0.0 if self.began is None else time.monotonic() - self.began

    def failed(self, exc: BaseException) -> float:
        """Count a failed try; return the pause before the next one.

        Raises :class:`BrokerOutageError` (one clear line) once the outage outlasts the limit.
        """
        if self.began is None:
            self.began = time.monotonic()
            self.failures = 0
            self._next_report = 1
        self.failures += 1
        down = self.down_s
        if down > self.limit_s:
            raise BrokerOutageError(
                f"{self.what}: Kafka at {self.bootstrap} unusable for {down:.0f}s, longer than "
                f"SCRAPELEDGER_BROKER_OUTAGE_S={self.limit_s:g}; giving up ({_short(exc)})"
            )
        pause = min(FIRST_PAUSE_S * 2 ** (self.failures - 1), MAX_PAUSE_S) * random.uniform(0.8, 1.2)
        pause = float(max(0.05, min(pause, self.limit_s - down)))
        if self.failures >= self._next_report:
            self._next_report *= 2
            log.warning(
                "%s: Kafka at %s unusable for %.0fs (try %d: %s); retrying, giving up after %gs",
                self.what, self.bootstrap, down, self.failures, _short(exc), self.limit_s,
            )
        return pause

    def recovered(self) -> None:
        """The broker answered again: the next failure starts a new outage."""
        if self.began is not None:
            log.info("%s: Kafka at %s usable again after %.1fs (%d tries)",
                     self.what, self.bootstrap, self.down_s, self.failures)
        self.began = None


def retry(
    settings: Settings,
    what: str,
    call: Callable[[], _T],
    *,
    stop: threading.Event | None = None,
    errors: tuple[type[Exception], ...] = BROKER_ERRORS,
) -> _T:
    """``call()`` until it succeeds, through an outage of up to ``broker_outage_s``.

    For start-up reads and other calls that are safe to repeat from the beginning. ``stop``
    (set by a signal handler) ends the wait early with :class:`BrokerOutageError`.
    """
    outage = Outage(settings, what)
    while True:
        try:
            result = call()
        except errors as exc:
            pause = outage.failed(exc)
            if stop is not None:
                if stop.wait(pause):
                    raise BrokerOutageError(f"{what}: stopped while Kafka was unusable") from exc
            else:
                time.sleep(pause)  # back-off between tries of a failed broker call
            continue
        outage.recovered()
        return result


def _short(exc: BaseException) -> str:
    if isinstance(exc, KafkaException) and exc.args:
        err = exc.args[0]
        text = getattr(err, "str", None)
        if callable(text):
            return str(text())
    return str(exc) or type(exc).__name__


_CHATTER = (
    "brokers are down", "Connection refused", "Connect to ", "Disconnected", "connection reset",
    "Waiting for coordinator", "SESSTMOUT", "timed out", "Not coordinator", "Broker transport",
    "Not leader", "not available", "Coordinator load",
)
"""What librdkafka (directly or through Quix Streams' error callbacks) says, many times a second
per client, while a broker is away."""

QUIET_GAP_S = 60.0
"""A kind of chatter unheard for this long starts counting again (the next outage)."""


class KafkaChatterFilter(logging.Filter):
    """Let a lost broker's repeated client messages through once per back-off step.

    Each kind of message (per logger) passes at its 1st, 2nd, 4th, 8th, ... occurrence with the
    count appended, so a ten-minute outage leaves a few lines per client instead of thousands
    (the scraper alone logged ~290 in 30 s). Installed on the handlers by the entry points.
    """

    def __init__(self) -> None:
        super().__init__()
        self._seen: dict[tuple[str, str], tuple[int, float]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.CRITICAL or record.name == __name__:
            return True  # the outage clock's own lines are already one per back-off step
        text = record.getMessage()
        kind = next((c for c in _CHATTER if c in text), None)
        if kind is None:
            return True
        key = (record.name, kind)
        count, last = self._seen.get(key, (0, 0.0))
        now = time.monotonic()
        if now - last > QUIET_GAP_S:
            count = 0
        count += 1
        self._seen[key] = (count, now)
        if count & (count - 1):  # not a power of two
            return False
        if count > 1:
            record.msg = f"{text} [seen {count} times]"
            record.args = None
        return True


def quiet_kafka_chatter() -> None:
    """Install :class:`KafkaChatterFilter` on the root logger's handlers (entry points only)."""
    chatter = KafkaChatterFilter()
    for handler in logging.getLogger().handlers:
        handler.addFilter(chatter)
