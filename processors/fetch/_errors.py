"""Exceptions of the fetch engine: a permanent refusal, and a name that does not resolve (yet).

They are kept apart on purpose: a :class:`Rejection` means "this job can never succeed as asked"
(the validator turns it into ``JobRejected``), while :class:`ResolutionError` means "DNS did not
answer now", which must not permanently reject a job - the fetch retries it as ``dns_error``.
"""

from __future__ import annotations

from scrapeledger.errors import ScrapeledgerError


class Rejection(ScrapeledgerError):
    """A URL or address the scraper refuses for good. ``code`` is the wire error code."""

    retryable = False

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class ResolutionError(ScrapeledgerError):
    """A host name did not resolve. Retryable: DNS outages and new domains are often temporary."""

    code = "dns_error"
    retryable = True

    def __init__(self, host: str, reason: str) -> None:
        super().__init__(f"cannot resolve {host!r}: {reason}")
        self.host = host
        self.message = f"cannot resolve {host!r}: {reason}"
