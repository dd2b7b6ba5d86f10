"""The values that cross the fetch engine's boundary: one request in, one result out.

Frozen dataclasses so a result can be handed between the scraper's asyncio thread and the Quix
Streams thread without anyone mutating it on the way.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class FetchRequest:
    """One GET the scraper wants. ``timeout_s`` and ``proxy`` override the fetcher's defaults."""

    url: str
    headers: dict[str, str] = field(default_factory=dict)
    timeout_s: float | None = None
    proxy: str | None = None


@dataclass(frozen=True)
class FetchOk:
    """A final (non-redirect) response. ``truncated`` says the body stopped at the size cap."""

    url: str
    final_url: str
    http_status: int
    headers: dict[str, str]
    body: bytes
    truncated: bool
    elapsed_ms: float
    redirects: int


@dataclass(frozen=True)
class FetchError:
    """A failed attempt. ``retryable`` decides between another attempt and a permanent failure.

    ``code`` is stable wire vocabulary (see docs/scraper.md); ``message`` is for humans.
    """

    code: str
    message: str
    retryable: bool
    http_status: int | None = None
    retry_after_s: float | None = None
