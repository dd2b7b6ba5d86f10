"""API keys: who a request is, and which jobs it may see (docs/security.md).

Off unless ``SCRAPELEDGER_API_KEYS`` (or ``SCRAPELEDGER_API_KEYS_FILE``) names a key. With keys on,
every request but the probes, ``/openapi.json`` and the dashboard's static files must present one:
HTTP as ``Authorization: Bearer KEY``; a WebSocket the same header or, because a browser cannot set
headers on a WebSocket, ``?api_key=KEY`` (the access log never has query strings).

A key maps to its **owner**, the id the ledger stores with the jobs it submits: the name given
in the setting (``NAME:KEY``), else ``key-`` and 64 bits of the key's SHA-256. Never the key: the
ledger is kept forever and readable by everyone who can read its topic, and an owner id lets
nobody authenticate. Keys must be long (at least :data:`MIN_KEY_CHARS`), so the hash of an
unnamed one cannot be searched back to it.

A presented key is compared with every configured key in constant time (the SHA-256 digests,
all of them, with :func:`hmac.compare_digest`), so the time an answer takes says nothing about
how much of a guess was right.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable
from pathlib import Path

import tornado.httputil

from scrapeledger.errors import ConfigError, ScrapeledgerError
from scrapeledger.settings import Settings

MIN_KEY_CHARS = 16
NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")
KEY = re.compile(r"[!-~]+")  # printable ASCII, no spaces
BEARER = re.compile(r"Bearer[ \t]+(\S+)[ \t]*", re.IGNORECASE)


class Unauthorized(ScrapeledgerError):
    """No key, or not one of the configured keys: HTTP 401 ``unauthorized``."""


def owner_of_key(key: str) -> str:
    """The owner id of an unnamed key: stable, not secret, and not the key."""
    return "key-" + hashlib.sha256(b"scrapeledger/owner/v1\0" + key.encode()).hexdigest()[:16]


class Keys:
    """The configured keys, by digest, and their owners."""

    def __init__(self, entries: Iterable[str]) -> None:
        self._keys: list[tuple[bytes, str]] = []
        owners: set[str] = set()
        digests: set[bytes] = set()
        for n, entry in enumerate(entries, 1):
            name, sep, key = entry.partition(":")
            if not sep:
                name, key = "", entry
            # never echo a value: it is (meant to be) a key
            if sep and not NAME.fullmatch(name):
                raise ConfigError(f"API key {n}: a name is 1-64 of A-Z a-z 0-9 . _ - (NAME:KEY)")
            if not KEY.fullmatch(key) or len(key) < MIN_KEY_CHARS:
                raise ConfigError(
                    f"API key {n} is not a key: at least {MIN_KEY_CHARS} printable characters, no "
                    "spaces or commas (`python -c 'import secrets; print(secrets.token_urlsafe(32))'`)"
                )
            owner = name or owner_of_key(key)
            digest = hashlib.sha256(key.encode()).digest()
            if owner in owners or digest in digests:
                raise ConfigError(f"API key {n}: the same key or name is listed twice")
            owners.add(owner)
            digests.add(digest)
            self._keys.append((digest, owner))
        if not self._keys:
            raise ConfigError("no API keys given")

    @classmethod
    def from_settings(cls, settings: Settings) -> Keys | None:
        """The keys of ``SCRAPELEDGER_API_KEYS``, else of ``SCRAPELEDGER_API_KEYS_FILE``; None
        (authentication off) when neither names one."""
        entries = [k.get_secret_value() for k in settings.api_keys]
        if not entries and settings.api_keys_file:
            path = Path(settings.api_keys_file)
            try:
                text = path.read_text()
            except OSError as exc:
                raise ConfigError(f"cannot read SCRAPELEDGER_API_KEYS_FILE {path}: {exc.strerror}") from None
            entries = [line.strip() for line in text.splitlines()
                       if line.strip() and not line.strip().startswith("#")]
            if not entries:
                raise ConfigError(f"SCRAPELEDGER_API_KEYS_FILE {path} holds no key")
        return cls(entries) if entries else None

    def owner(self, presented: str | None) -> str:
        """The owner of ``presented``; raises :class:`Unauthorized`. Every configured key is
        compared, found or not, in constant time per key."""
        if presented is None:
            raise Unauthorized("an API key is required: Authorization: Bearer KEY")
        digest = hashlib.sha256(presented.encode()).digest()
        found: str | None = None
        for known, owner in self._keys:
            if hmac.compare_digest(digest, known):
                found = owner
        if found is None:
            raise Unauthorized("the API key is not valid")
        return found

    def authenticate(self, request: tornado.httputil.HTTPServerRequest, *, query: bool) -> str:
        """The owner of the key ``request`` presents (``query``: ``?api_key=`` is accepted too,
        for browsers' WebSockets); raises :class:`Unauthorized`."""
        return self.owner(presented_key(request, query=query))


def presented_key(request: tornado.httputil.HTTPServerRequest, *, query: bool) -> str | None:
    header = request.headers.get("Authorization")
    if header is not None:
        m = BEARER.fullmatch(header.strip())
        return m.group(1) if m else ""  # a malformed header is a wrong key, not a missing one
    if query:
        values = request.query_arguments.get("api_key")
        if values:
            return values[-1].decode("utf-8", "replace")
    return None
