"""What a log line may say about a job: a short id prefix and a URL without its secrets.

A job id is the capability to read the job's result (``resume`` with it on any edge), and a
URL's query string or user info often carries an API key or a password. Logs are read by more
people, kept by more systems and pasted into more tickets than the ledger, so every component
logs :func:`job_ref` (the first 8 of the id's 22 characters: enough to correlate lines, 80 bits
short of a usable id) and :func:`url_ref` (scheme, host, port and path only).

:class:`RedactingFilter`, installed on the entry points' log handler, is the net under that
rule for lines we do not write ourselves (httpx, Tornado, Quix Streams, tracebacks): it cuts
query strings and user info out of every URL and shortens anything shaped like a job id.
"""

from __future__ import annotations

import logging
import re

JOB_REF_CHARS = 8

# scheme://[userinfo@]host[:port][/path][?query][#fragment], as it appears inside free text
_URL = re.compile(
    r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.\-]*://)(?P<userinfo>[^\s/?#@'\"<>]*@)?"
    r"(?P<hostpath>[^\s?#'\"<>]*)(?P<query>\?[^\s#'\"<>]*)?(?P<fragment>#[^\s'\"<>]*)?"
)
# ids from ledger.new_job_id: 22 base64url characters; requiring both letter cases keeps
# ordinary words and hex digests out (a random id lacks one of them once in ~10^5)
_JOB_ID = re.compile(r"(?<![A-Za-z0-9_\-])(?=[A-Za-z0-9_\-]*[a-z])(?=[A-Za-z0-9_\-]*[A-Z])"
                     r"[A-Za-z0-9_\-]{22}(?![A-Za-z0-9_\-])")


def job_ref(job_id: str | None) -> str:
    """The loggable form of a job id: its first characters, never the whole id."""
    if not job_id:
        return "-"
    return job_id[:JOB_REF_CHARS] + "..."


def url_ref(url: str | None) -> str:
    """The loggable form of a URL: no user info, query string or fragment. Never raises."""
    if not url:
        return "-"
    prefix, authority, rest = _authority(url)
    return prefix + authority.rpartition("@")[2] + rest.split("?", 1)[0].split("#", 1)[0]


def _url_repl(match: re.Match[str]) -> str:
    return match.group("scheme") + match.group("hostpath")


def has_userinfo(url: str) -> bool:
    """True when a (proxy) URL carries ``user[:password]@``: an ``@`` in its authority."""
    return "@" in _authority(url)[1]


def strip_userinfo(url: str) -> str:
    """``url`` without ``user:password@`` (the proxy's address is not a secret)."""
    prefix, authority, tail = _authority(url)
    return f"{prefix}{authority.rpartition('@')[2]}{tail}"


def _authority(url: str) -> tuple[str, str, str]:
    """``(scheme://, authority, rest)``; a URL without a scheme is all authority up to a ``/``."""
    scheme, sep, rest = url.partition("://")
    prefix = scheme + sep if sep else ""
    rest = rest if sep else url
    cut = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
    return prefix, rest[:cut], rest[cut:]


def scrub(text: str) -> str:
    """``text`` with every URL reduced by :func:`url_ref` and every job id by :func:`job_ref`."""
    if "://" in text:
        text = _URL.sub(_url_repl, text)
    return _JOB_ID.sub(lambda m: job_ref(m.group(0)), text)


class RedactingFilter(logging.Filter):
    """Scrubs each record's final message and traceback (see :func:`scrub`) before it is written."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = scrub(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = scrub(record.exc_text)
        return True


def install(handler: logging.Handler) -> None:
    """Put the filter on ``handler`` (handler filters see every logger's records)."""
    if not any(isinstance(f, RedactingFilter) for f in handler.filters):
        handler.addFilter(RedactingFilter())
