"""Sealed credentials: the request headers and proxy passwords a job carries, never in clear in Kafka.

The ledger is kept forever and cannot be edited, so a secret written to it in clear stays
readable by everyone who can read the topic, for good. Credentials therefore cross Kafka only
**sealed**: the edge splits a job's request into what may be stored in clear (ordinary headers,
the proxy without its user info) and a Fernet token of the rest (``Authorization``, ``Cookie``,
``Proxy-Authorization``, ``X-Api-Key``, the names in ``SCRAPELEDGER_SECRET_HEADERS``, and a proxy
URL with ``user:password@``). The token rides in the events that carry the request
(``JobSubmitted``, ``JobValidated``, ``RetryScheduled``, ``JobRedriven``) and in ``job-state``;
only the processes that must use the credentials hold the keys: the edge (seals), the validator
and the scraper (open), and ``replay redrive`` (re-seals under the newest key).

Why sealing and not a separate short-lived topic: retries and redrives need the credentials
long after the submit, and a second topic would still hold them in clear. Sealed, the forever
ledger can be *crypto-shredded*: retire a key from ``SCRAPELEDGER_SECRET_KEYS`` and every token it
sealed is unreadable for good. Keys rotate with :class:`cryptography.fernet.MultiFernet`: the
first key seals, every listed key opens.

A token also names its job, so a token copied into another job's event does not open there.
"""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import orjson
from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from .errors import ConfigError, CredentialsUnreadableError
from .redact import has_userinfo, strip_userinfo
from .settings import Settings

log = logging.getLogger(__name__)

SECRET_HEADERS = frozenset({"authorization", "cookie", "proxy-authorization", "x-api-key"})
"""Request headers that always carry credentials (more from ``SCRAPELEDGER_SECRET_HEADERS``)."""

KEY_FILE_NAME = "secret-keys"


@dataclass(frozen=True, slots=True)
class SealedRequest:
    """A job's request as it may be stored: clear headers, the proxy without user info, a token."""

    headers: dict[str, str]
    proxy: str | None
    sealed: str | None
    """Fernet token of the credentials; None when the request had none (no crypto at all)."""


class Vault:
    """Seals and opens jobs' credentials with the configured Fernet keys (newest first)."""

    def __init__(self, keys: Sequence[str | bytes], *, secret_headers: Iterable[str] = ()) -> None:
        if not keys:
            raise ConfigError("no secret keys configured (SCRAPELEDGER_SECRET_KEYS)")
        fernets: list[Fernet] = []
        for n, key in enumerate(keys, 1):
            try:
                fernets.append(Fernet(key))
            except (ValueError, TypeError):
                # never echo the value: it is (meant to be) a key
                raise ConfigError(
                    f"secret key {n} is not a Fernet key (32 url-safe base64-encoded bytes; "
                    "`scrapeledger keygen` makes one)"
                ) from None
        self._fernet = MultiFernet(fernets)
        self.secret_headers = SECRET_HEADERS | {h.strip().lower() for h in secret_headers if h.strip()}

    @classmethod
    def from_settings(cls, settings: Settings) -> Vault:
        """The keys of ``SCRAPELEDGER_SECRET_KEYS``, else of ``SCRAPELEDGER_SECRET_KEYS_FILE``
        (which must exist), else of the local development key file, created on first use so
        ``scrapeledger up`` and separately started components on one machine share a key."""
        if settings.secret_keys:
            keys = [k.get_secret_value() for k in settings.secret_keys]
        elif settings.secret_keys_file:
            path = Path(settings.secret_keys_file).expanduser()
            if not path.is_file():
                raise ConfigError(f"SCRAPELEDGER_SECRET_KEYS_FILE {path} does not exist")
            keys = read_key_file(path)
        else:
            path = default_key_file()
            if ensure_key_file(path):
                log.warning("created the local development key file %s; production sets "
                            "SCRAPELEDGER_SECRET_KEYS (docs/security.md)", path)
            keys = read_key_file(path)
        return cls(keys, secret_headers=settings.secret_headers)

    def is_secret(self, header: str) -> bool:
        return header.lower() in self.secret_headers

    # --- sealing -------------------------------------------------------------------------------

    def seal(self, job_id: str, headers: Mapping[str, str], proxy: str | None) -> SealedRequest:
        """Split a request into its storable part and a token of its credentials."""
        clear = {k: v for k, v in headers.items() if not self.is_secret(k)}
        secret = {k: v for k, v in headers.items() if self.is_secret(k)}
        secret_proxy = proxy if proxy is not None and has_userinfo(proxy) else None
        if not secret and secret_proxy is None:
            return SealedRequest(clear, proxy, None)
        payload = orjson.dumps({"j": job_id, "h": secret, "p": secret_proxy})
        token = self._fernet.encrypt(payload).decode("ascii")
        return SealedRequest(clear, strip_userinfo(proxy) if proxy is not None else None, token)

    def open(
        self, job_id: str, headers: Mapping[str, str], proxy: str | None, sealed: str | None
    ) -> tuple[dict[str, str], str | None]:
        """The whole request back: every header and the proxy with its user info.

        Raises :class:`CredentialsUnreadableError` when no configured key opens the token (or it
        belongs to another job): the job cannot be fetched as asked, now or on any retry.
        """
        if sealed is None:
            return dict(headers), proxy
        try:
            data = orjson.loads(self._fernet.decrypt(sealed.encode("ascii")))
        except (InvalidToken, UnicodeEncodeError, orjson.JSONDecodeError):
            raise CredentialsUnreadableError(
                "the job's credentials were sealed with a key that is not configured "
                "(SCRAPELEDGER_SECRET_KEYS)"
            ) from None
        if not isinstance(data, dict) or data.get("j") != job_id or not isinstance(data.get("h"), dict):
            raise CredentialsUnreadableError("the sealed credentials belong to another job")
        secret_proxy = data.get("p")
        return {**headers, **data["h"]}, secret_proxy if isinstance(secret_proxy, str) else proxy

    def reseal(
        self, job_id: str, headers: Mapping[str, str], proxy: str | None, sealed: str | None
    ) -> SealedRequest:
        """Open and seal again under the newest key (a redrive after a rotation), sealing too any
        credential found in clear (events written before sealing existed)."""
        if sealed is None and not any(self.is_secret(k) for k in headers) and not (
            proxy is not None and has_userinfo(proxy)
        ):
            return SealedRequest(dict(headers), proxy, None)
        full_headers, full_proxy = self.open(job_id, headers, proxy, sealed)
        return self.seal(job_id, full_headers, full_proxy)


# --- key files -----------------------------------------------------------------------------------


def new_key() -> str:
    return Fernet.generate_key().decode("ascii")


def default_key_file() -> Path:
    """``$SCRAPELEDGER_CACHE_DIR/secret-keys`` (default ``~/.cache/scrapeledger/secret-keys``)."""
    from .broker import cache_root

    return cache_root() / KEY_FILE_NAME


def read_key_file(path: Path) -> list[str]:
    """Keys in a file, one a line, newest first; blank lines and ``#`` comments ignored."""
    lines = (line.strip() for line in path.read_text().splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def ensure_key_file(path: Path) -> bool:
    """Create ``path`` (mode 0600) with one new key unless it exists; True if created.

    Safe when several processes start at once: the key is written to a private temporary file
    and hard-linked into place, so a reader never sees a half-written file and exactly one
    creator wins.
    """
    if path.exists():
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(new_key() + "\n")
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        return True
    finally:
        tmp.unlink()
