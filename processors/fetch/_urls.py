"""Static URL checks: what a job may ask for, decided without touching the network.

The URL is parsed with httpx's own parser - the one that later builds the request - because a
validator that parses differently from the client is a classic SSRF bypass (the two disagree on
which host ``http://a\\@b/`` names). The normalized URL returned here is what gets fetched.

**One host normalization** (:func:`parse_url` for targets and redirect hops, :func:`parse_proxy`
for proxies): Unicode in the authority is folded once, here, by NFKC plus the IDNA label
separators (U+3002, U+FF0E, U+FF61), before anything looks at the host. Without it a host
spelled with ideographic full stops, enclosed digits (U+2460...) or fullwidth digits is a name
to an IP-literal check but ``127.0.0.1`` to yarl, which aiohttp then connects to without asking
any resolver. After folding, a host that is an IP is checked - and connected to - as that IP,
and every later parser sees the same ASCII string.
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from urllib.parse import urlsplit

import httpx

from scrapeledger.redact import strip_userinfo

from ._errors import Rejection

SCHEMES = frozenset({"http", "https"})
_DEFAULT_PORTS = {"http": 80, "https": 443}
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_LABEL = re.compile(r"^[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?$")
_NUMERIC_LABEL = re.compile(r"^(?:0x[0-9a-f]*|[0-9]+)$")
# scheme "//" authority rest: the authority as httpx (RFC 3986) delimits it
_AUTHORITY = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*:)//([^/?#]*)(.*)$", re.DOTALL)
# UTS 46 label separators that NFKC leaves alone (U+FF0E already folds to ".")
_DOTS = str.maketrans({"\u3002": ".", "\uff0e": ".", "\uff61": "."})
_DELIMITERS = "/?#@\\[]:"


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
    url = fold_authority(url)
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


def parse_proxy(proxy: object) -> httpx.URL:
    """A proxy URL in the one normalized form that is checked and connected to.

    Same host rules as :func:`parse_url` (folding, IDNA, canonical IP literals only); credentials
    are allowed (they become ``Proxy-Authorization``). Raises :class:`Rejection` ``invalid_proxy``.
    """
    if not isinstance(proxy, str):
        raise Rejection("invalid_proxy", f"proxy must be a string, not {type(proxy).__name__}")
    text = proxy.strip()
    try:
        if _CONTROL.search(text):
            raise Rejection("invalid_proxy", "proxy URL contains control characters")
        parsed = httpx.URL(fold_authority(text))
        if parsed.scheme not in SCHEMES:
            raise Rejection("invalid_proxy", "not an http:// or https:// URL (SOCKS is not supported)")
        raw_host = parsed.raw_host.decode("ascii")
        host = _check_host(raw_host)
        if parsed.port is not None and not 1 <= parsed.port <= 65535:
            raise Rejection("invalid_proxy", f"port {parsed.port} is out of range")
    except (httpx.InvalidURL, Rejection) as exc:
        reason = exc.message if isinstance(exc, Rejection) else str(exc)
        # the message is stored in the ledger (JobRejected): the proxy's password stays out
        raise Rejection("invalid_proxy", f"proxy {strip_userinfo(text)!r}: {reason}") from None
    return parsed if host == raw_host else parsed.copy_with(host=host)


def fold_authority(url: str) -> str:
    """``url`` with its authority's Unicode folded (NFKC, IDNA dots as ``.``); ASCII is untouched.

    Refuses a fold that creates a URL delimiter (fullwidth solidus or commercial at): that would move the
    host boundary, and no honest URL needs it.
    """
    match = _AUTHORITY.match(url)
    if match is None or match.group(2).isascii():
        return url
    authority = match.group(2)
    folded = unicodedata.normalize("NFKC", authority).translate(_DOTS)
    if any(folded.count(c) != authority.count(c) for c in _DELIMITERS):
        raise Rejection("invalid_url", f"host {authority!r} folds to URL delimiters")
    return f"{match.group(1)}//{folded}{match.group(3)}"


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
