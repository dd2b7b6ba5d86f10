"""The stored body of a succeeded job: what the scraper writes and the edge reads back.

For the default formats (``html`` alone) the stored body is the page text itself, exactly as
before formats existed, so old bodies, old readers and the plain path's cost are unchanged. For
any other choice it is one JSON object with a field per requested format (``html``,
``markdown``, ``text`` strings, ``links`` a list of URLs, ``metadata`` an object), computed
once by the scraper; ``ScrapeSucceeded.formats`` says which form a body is in.

The document must fit the bodies topic, whose record limit is sized for one body
(``SCRAPER_MAX_BODY_BYTES`` plus headroom) while a document may hold the page several times
over; :func:`encode_outputs` cuts the longest text fields until it fits and says so, and the job
is then marked ``truncated``.
"""

from __future__ import annotations

from typing import Any

import orjson

from ._events import DEFAULT_FORMATS

EMPTY: dict[str, Any] = {"html": "", "markdown": "", "text": "", "links": [], "metadata": {}}
"""Each format's value when there is nothing to show (a body that left the replay window)."""

_MAX_CUTS = 64


def encode_outputs(outputs: dict[str, Any], *, limit: int) -> tuple[bytes, bool]:
    """The outputs document as stored, at most ``limit`` bytes; True when something was cut.

    A character encodes to at least one byte, so cutting the longest string by the excess in
    characters always removes enough; when no text is left to cut, links go half at a time.
    """
    doc = dict(outputs)
    data = orjson.dumps(doc)
    cut = False
    for _ in range(_MAX_CUTS):
        excess = len(data) - limit
        if excess <= 0:
            return data, cut
        cut = True
        strings = [k for k, v in doc.items() if isinstance(v, str) and v]
        if strings:
            name = max(strings, key=lambda k: len(doc[k]))
            doc[name] = doc[name][: max(0, len(doc[name]) - excess)]
        elif doc.get("links"):
            doc["links"] = doc["links"][: len(doc["links"]) // 2]
        else:
            break
        data = orjson.dumps(doc)
    # only metadata left and still too large: cannot happen with sane limits, but never overflow
    doc = {k: EMPTY.get(k) for k in doc}
    return orjson.dumps(doc), True


def decode_outputs(formats: tuple[str, ...], stored: str | None) -> dict[str, Any]:
    """The result fields for a stored body (None: the body is gone), one per requested format."""
    if formats == DEFAULT_FORMATS:
        return {"html": stored if stored is not None else ""}
    doc: Any = {}
    if stored is not None:
        try:
            doc = orjson.loads(stored)
        except orjson.JSONDecodeError:
            doc = {}
    if not isinstance(doc, dict):
        doc = {}
    return {name: doc.get(name, EMPTY.get(name)) for name in formats}
