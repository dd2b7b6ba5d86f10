"""The one exception hierarchy of Scrapeledger.

Every error the project raises on purpose derives from :class:`ScrapeledgerError`, so a caller
(the CLI, a processor's error callback, a test) can tell "ours, with a clear message" from a bug.
The root and the ledger's own errors (the ``EventError`` family) are defined in
:mod:`ledger._errors`, because ``ledger`` imports nothing of the project above it, and are
re-exported here as the same objects.
"""

from __future__ import annotations

from ledger import (
    EventError,
    InvalidTransitionError,
    MalformedEventError,
    ScrapeledgerError,
    UnknownEventTypeError,
    UnsupportedVersionError,
)

__all__ = [
    "BrokerError",
    "BrokerOutageError",
    "BrokerUnavailableError",
    "ConfigError",
    "CredentialsUnreadableError",
    "EventError",
    "InjectedFault",
    "InvalidTransitionError",
    "LocalBrokerError",
    "MalformedEventError",
    "ProtocolError",
    "ScrapeledgerError",
    "UnknownEventTypeError",
    "UnknownJobError",
    "UnsupportedVersionError",
]


class ConfigError(ScrapeledgerError):
    """A setting is missing or out of range."""


class BrokerError(ScrapeledgerError):
    """The Kafka broker cannot be reached, started or used."""


class BrokerUnavailableError(BrokerError):
    """No broker answered within the allowed time."""


class BrokerOutageError(BrokerUnavailableError):
    """The broker stayed away longer than ``SCRAPELEDGER_BROKER_OUTAGE_S``: the process gives up."""


class LocalBrokerError(BrokerError):
    """The local Apache Kafka runtime (Java, Maven, the jars) cannot be set up or started."""


class ProtocolError(ScrapeledgerError):
    """A WebSocket frame that breaks the wire protocol; the code goes back to the client."""

    def __init__(self, code: str, message: str, ref: str | int | float | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.ref = ref
        """The frame's ``ref`` when it could be read: the ``error`` frame echoes it, so a client
        matching replies by ``ref`` fails that request instead of waiting forever."""


class UnknownJobError(ScrapeledgerError):
    """A job id the ledger never saw."""


class InjectedFault(ScrapeledgerError):
    """A failure injected on purpose (``SCRAPELEDGER_FAULTS``), to test the failure paths."""


class CredentialsUnreadableError(ScrapeledgerError):
    """A job's sealed credentials cannot be opened: the key that sealed them is not configured
    (retired, or a deployment whose components were given different keys), or the token is not
    this job's. Permanent for the job until the key is configured again; never a crash."""
