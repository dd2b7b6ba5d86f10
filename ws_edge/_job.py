"""What one job asks for, and its wire form.

One dataclass instead of a growing list of keyword arguments on every client method: a new job
option (the edge's ``formats``, ``idempotency_key``...) is one field here and one line in
:meth:`JobSpec.message`, and every caller (``Client.submit``, ``Client.scrape``, the batch
runner, the CLI) passes it through unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class JobSpec:
    """A scrape job: the URL and the per-job options of the wire protocol (all optional)."""

    url: str
    headers: dict[str, str] = field(default_factory=dict)
    timeout_s: float | None = None
    """The fetch timeout for this job (the protocol's ``timeout_s``), not a client-side wait."""
    proxy: str | None = None
    formats: tuple[str, ...] | None = None
    """Output formats: any of ``html`` (the edge's default), ``markdown``, ``text``, ``links``,
    ``metadata``; the result carries a field of each name (and ``html`` only if named)."""
    idempotency_key: str | None = None
    """The same key names the same job: a resubmit never runs it twice. ``Client`` gives every
    job a random one unless the caller sets it."""

    def message(self) -> str | dict[str, Any]:
        """The frame's ``message``: the bare URL (the original clients' form) when no option is
        set, so a plain job looks on the wire exactly as it always did; else the object form."""
        options: dict[str, Any] = {"headers": self.headers, "timeout_s": self.timeout_s, "proxy": self.proxy,
                                   "formats": list(self.formats) if self.formats is not None else None,
                                   "idempotency_key": self.idempotency_key}
        options = {k: v for k, v in options.items() if v is not None and v != {}}
        return {"url": self.url, **options} if options else self.url
