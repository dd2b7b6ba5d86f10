"""Static URL checks: what a job may ask for, decided without touching the network.

The URL is parsed with httpx's own parser - the one that later builds the request - because a
validator that parses differently from the client is a classic SSRF bypass (the two disagree on
which host ``http://a\\@b/`` names). The normalized URL returned here is what gets fetched.
"""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlsplit

import httpx

from ._errors import Rejection

SCHEMES = frozenset({"http", "https"})
_DEFAULT_PORTS = {"http": 80, "https": 443}
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_LABEL = re.compile(r"^[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?$")
_NUMERIC_LABEL = re.compile(r"^(?:0x[0-9a-f]*|[0-9]+)$")


def validate_url(url: object, *, max_length: int = 2048) -> str:
    """Return the normalized form of ``url`` or raise :class:`Rejection`.

    Refuses (code in brackets): a non-string or unparsable URL, a missing or malformed host, a
    port outside 1..65535 [``invalid_url``]; a scheme other than http/https
    [``unsupported_scheme``]; more than ``max_length`` characters [``url_too_long``]; user name
    or password in the URL [``credentials_in_url``] - the URL is stored in the ledger for the
    whole replay window, so a secret in it would be kept and replayed, and ``user@host`` is a
    favourite way to disguise the real host.

    Host names are IDNA-encoded and lower-cased; IP literals must be canonical (``127.1``,
    ``2130706433`` and ``0x7f.0.0.1`` are refused rather than guessed at, because clients and
    resolvers disagree on them). Normalization also drops the fragment (never sent) and a
    default port. An IP-literal host is *not* checked against forbidden ranges here: that is
    :func:`check_address`'s job, so callers can choose ``allow_private``.
    """
    return str(parse_url(url, max_length=max_length))


def parse_url(url: object, *, max_length: int = 2048) -> httpx.URL:
    """:func:`validate_url`, returning the parsed URL (the fetcher then never parses it again)."""
    if not isinstance(url, str):
        raise Rejection("invalid_url", f"URL must be a string, not {type(url).__name__}")
    url = url.strip()
    if len(url) > max_length:
        raise Rejection("url_too_long", f"URL is {len(url)} characters; the limit is {max_length}")
    if not url:
        raise Rejection("invalid_url", "URL is empty")
    if _CONTROL.search(url):
        raise Rejection("invalid_url", "URL contains control characters")
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        _check_scheme(_scheme_of(url))
        raise Rejection("invalid_url", f"cannot parse URL: {exc}") from None
    scheme = parsed.scheme
    _check_scheme(scheme)
    if parsed.userinfo:
        raise Rejection("credentials_in_url", "user name or password in the URL is not allowed")
    raw_host = parsed.raw_host.decode("ascii")
    host = _check_host(raw_host)
    port = parsed.port
    if port is not None and not 1 <= port <= 65535:
        raise Rejection("invalid_url", f"port {port} is out of range")
    if host != raw_host or port == _DEFAULT_PORTS[scheme] or parsed.fragment:
        parsed = parsed.copy_with(
            host=host, port=None if port == _DEFAULT_PORTS[scheme] else port, fragment=None
        )
    if len(str(parsed)) > max_length:
        raise Rejection("url_too_long", f"URL is over {max_length} characters once normalized")
    return parsed


def _scheme_of(url: str) -> str:
    try:
        return urlsplit(url).scheme.lower()
    except ValueError:
        return ""


def _check_scheme(scheme: str) -> None:
    if not scheme:
        raise Rejection("invalid_url", "URL must start with http:// or https://")
    if scheme not in SCHEMES:
        raise Rejection("unsupported_scheme", f"scheme {scheme!r} is not supported; use http or https")


def _check_host(host: str) -> str:
    """The host in canonical form; raises for anything that is neither a name nor an IP."""
    if not host:
        raise Rejection("invalid_url", "URL has no host")
    if ":" in host:  # IPv6 literal (httpx already stripped the brackets)
        if "%" in host:
            raise Rejection("invalid_url", "IPv6 zone identifiers are not allowed")
        try:
            return ipaddress.IPv6Address(host).compressed
        except ValueError:
            raise Rejection("invalid_url", f"invalid IPv6 address {host!r}") from None
    name = host.lower()
    labels = (name[:-1] if name.endswith(".") else name).split(".")
    if _NUMERIC_LABEL.match(labels[-1]):
        # WHATWG parses a host ending in a number as IPv4; only the canonical form is accepted
        try:
            return str(ipaddress.IPv4Address(name.rstrip(".")))
        except ValueError:
            raise Rejection("invalid_url", f"{host!r} is not a canonical IPv4 address") from None
    if len(name.rstrip(".")) > 253 or not all(_LABEL.match(label) for label in labels):
        raise Rejection("invalid_url", f"invalid host name {host!r}")
    return name
