"""The one exception hierarchy of Scrapeledger.

Every error the project raises on purpose derives from :class:`ScrapeledgerError`, so a caller
(the CLI, a processor's error callback, a test) can tell "ours, with a clear message" from a bug.
An error that carries a stable machine-readable code (a wire frame's, an HTTP answer's, a
``JobRejected`` event's ``code``) derives from :class:`CodedError`, the one place ``code``,
``message`` and their ``str()`` are defined.

The root and the ledger's errors are defined in :mod:`ledger._errors` (``ledger`` imports nothing
of the project above it, so the root has to live in the lowest layer) and re-exported here as the
same objects. The others are defined here, except the few named below with their module
(``scrapeledger.`` left out), which mean something only there. Private control-flow exceptions
(``_Redirect``, ``_Full`` in ``processors.fetch``) are not errors anyone sees and are not in the
tree. ``tests/unit/test_errors_tree.py`` checks the tree against the classes.

The whole tree, and when each class is raised::

    ScrapeledgerError                (ledger) the root; raised as itself only for a stop with no better class
        EventError                   (ledger) a ledger record cannot be decoded or applied
            MalformedEventError      (ledger) not JSON, a field missing or mistyped, a bad job-state record
            UnknownEventTypeError    (ledger) a record whose ``type`` this code does not know
            UnsupportedVersionError  (ledger) a record whose ``v`` this code cannot read
            InvalidTransitionError   (ledger) an event folded into another job's state
        ConfigError                  a setting or a CLI option is missing, malformed or out of range
        BrokerError                  Kafka cannot be used: a produce, a topic, a read failed
            BrokerUnavailableError   no broker answered within the allowed time
                BrokerOutageError    the broker stayed away past SCRAPELEDGER_BROKER_OUTAGE_S
            LocalBrokerError         the local Kafka (Java, Maven, the jars, a port) cannot start
                broker.BrokerStartAborted  SIGTERM/SIGINT during ``scrapeledger broker`` start-up
            clients._Fatal           (private) the producer is fatally broken: replace it, write again
        UnknownJobError              a job id the ledger never saw (replay; the edge, to a Client)
        InjectedFault                a fault injected on purpose (SCRAPELEDGER_FAULTS) fired
        CredentialsUnreadableError   a job's sealed credentials cannot be opened (key not configured)
        EdgeUnreachableError         Client: no edge answered, at the first connect or a reconnect
        UnauthorizedError            Client: the edge refused the API key (401 at the upgrade)
        ClientTimeoutError           Client: a request's reply or a job's result came too late
        ws_edge._auth.Unauthorized   edge: a request without a valid API key (answered 401)
        ws_edge._index.CursorError   edge: a dashboard cursor this index did not hand out (400)
        supervisor.StartFailed       ``scrapeledger up``: a child exited, or was not ready in time
        deploy.podman.ContainersError  dev tooling: podman missing, or a container command failed
        CodedError                   base of the errors with a wire ``code``; never raised as itself
            ProtocolError            edge: a WebSocket frame or HTTP job object breaks the protocol
            ClientError              Client: the edge answered a request with an ``error`` frame
            Rejection                validator, fetch: a URL, option, proxy or address refused for good
            ResolutionError          fetch: a host name did not resolve (``dns_error``, retryable)
            ws_edge._http.ApiError   edge HTTP API: any answer but success (status, code, message)
            ws_edge._server.IdempotencyConflict  edge: the key named a job for another URL
"""

from __future__ import annotations

from typing import ClassVar

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
    "ClientError",
    "ClientTimeoutError",
    "CodedError",
    "ConfigError",
    "CredentialsUnreadableError",
    "EdgeUnreachableError",
    "EventError",
    "InjectedFault",
    "InvalidTransitionError",
    "LocalBrokerError",
    "MalformedEventError",
    "ProtocolError",
    "Rejection",
    "ResolutionError",
    "ScrapeledgerError",
    "UnauthorizedError",
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


class UnknownJobError(ScrapeledgerError):
    """A job id the ledger never saw."""


class InjectedFault(ScrapeledgerError):
    """A failure injected on purpose (``SCRAPELEDGER_FAULTS``), to test the failure paths."""


class CredentialsUnreadableError(ScrapeledgerError):
    """A job's sealed credentials cannot be opened: the key that sealed them is not configured
    (retired, or a deployment whose components were given different keys), or the token is not
    this job's. Permanent for the job until the key is configured again; never a crash."""


# --- the Python client's errors (ws_edge.Client) ---------------------------------------------


class EdgeUnreachableError(ScrapeledgerError):
    """No edge could be reached: at the first connect, or again after the connection dropped."""


class UnauthorizedError(ScrapeledgerError):
    """The edge refused the connection's API key (HTTP 401): no retry can help."""


class ClientTimeoutError(ScrapeledgerError):
    """A request or a result did not arrive within its bound."""

    def __init__(self, message: str, job_id: str | None = None) -> None:
        super().__init__(message)
        self.job_id = job_id


# --- errors with a wire code ------------------------------------------------------------------


class CodedError(ScrapeledgerError):
    """An error with a stable machine-readable ``code`` and a human ``message``.

    The code is what goes on the wire (an ``error`` frame's, an HTTP answer's, a ``JobRejected``
    event's ``code``); the message is for a person. ``str()`` follows one rule: the message,
    prefixed with ``"<code>: "`` when the class sets :attr:`CODE_IN_STR`. The prefix is for errors
    a person mostly sees as text alone (the CLI prints a :class:`ClientError` as it is, a
    :class:`Rejection` reaches the logs), where the code would otherwise be lost; errors whose
    code always travels next to the message (a frame, a JSON answer) read as the message only.
    ``args`` is ``(str(exc),)``, as for any exception made from its text.
    """

    CODE_IN_STR: ClassVar[bool] = False
    """Whether ``str()`` starts with the code (``"invalid_url: URL is empty"``)."""

    def __init__(self, code: str, message: str) -> None:
        self.code = code
        self.message = message
        super().__init__(str(self))

    def __str__(self) -> str:
        return f"{self.code}: {self.message}" if self.CODE_IN_STR else self.message


class ProtocolError(CodedError):
    """A WebSocket frame that breaks the wire protocol; the code goes back to the client."""

    def __init__(self, code: str, message: str, ref: str | int | float | None = None) -> None:
        super().__init__(code, message)
        self.ref = ref
        """The frame's ``ref`` when it could be read: the ``error`` frame echoes it, so a client
        matching replies by ``ref`` fails that request instead of waiting forever."""


class ClientError(CodedError):
    """The edge answered a request with an ``error`` frame (``str()``: ``"<code>: <message>"``)."""

    CODE_IN_STR = True


class Rejection(CodedError):
    """A URL or address the scraper refuses for good. ``code`` is the wire error code.

    Kept apart from :class:`ResolutionError` on purpose: a rejection means "this job can never
    succeed as asked" (the validator turns it into ``JobRejected``), while a name that does not
    resolve may only mean "DNS did not answer now", which must not reject a job for good.
    """

    CODE_IN_STR = True
    retryable = False


class ResolutionError(CodedError):
    """A host name did not resolve. Retryable: DNS outages and new domains are often temporary,
    so the fetch retries it as ``dns_error`` (deliberately not a :class:`Rejection`)."""

    retryable = True

    def __init__(self, host: str, reason: str) -> None:
        super().__init__("dns_error", f"cannot resolve {host!r}: {reason}")
        self.host = host
