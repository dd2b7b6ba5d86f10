"""Edge addresses as users type them: ``ws://host:port``, ``wss://...``, or the edge's ``http://``.

Tornado's ``websocket_connect`` raises a bare ``KeyError`` for any scheme but ``ws``/``wss``, and a
string without a scheme becomes a name lookup of whatever was typed. Users copy the address from
a browser or a ``port-forward`` banner (``http://127.0.0.1:3001``), so ``http``/``https`` are
taken as the same host and port (the edge serves HTTP and WebSocket on one port); anything else
is refused here, before a connection is tried, with a message that shows the expected form.
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

from scrapeledger.errors import ConfigError

_SCHEMES = {"ws": "ws", "wss": "wss", "http": "ws", "https": "wss"}
EXAMPLE = "ws://127.0.0.1:3001"


def edge_url(server: str) -> str:
    """The WebSocket URL for ``server``, or :class:`ConfigError` saying what is wrong with it."""
    text = server.strip()
    if "://" not in text:
        raise ConfigError(f"server {server!r} is not a URL; expected e.g. {EXAMPLE}")
    parts = urlsplit(text)
    scheme = _SCHEMES.get(parts.scheme.lower())
    if scheme is None:
        raise ConfigError(
            f"server {server!r} has scheme {parts.scheme!r}; expected ws://, wss:// "
            f"(or http://, https://), e.g. {EXAMPLE}"
        )
    try:
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number in range
    except ValueError:
        raise ConfigError(f"server {server!r} has an invalid port; expected e.g. {EXAMPLE}") from None
    if not parts.hostname:
        raise ConfigError(f"server {server!r} names no host; expected e.g. {EXAMPLE}")
    return urlunsplit((scheme, parts.netloc, parts.path or "/", parts.query, ""))
