"""The dashboard on the edge's port: the page at ``/ui`` and the two reads it needs besides the
HTTP API (docs/dashboard.md).

* ``GET /v1/jobs?status=&q=&cursor=&limit=``: recent jobs, newest first, filtered and paged on
  the server from the bounded recent-jobs index (``_index``), so a browser never holds more than
  one page whatever the number of jobs.
* ``GET /v1/stats``: the counters, which the page asks for every second (an answer always
  ends: nothing for an API checker or a proxy to hang on; the live parts that need a stream,
  a running job's timeline, use the HTTP API's SSE).
* ``/ui/``: static files (plain ES modules and CSS, no build step) with a Content-Security-Policy
  that allows scripts, styles and connections from the edge itself only. Scraped HTML is only
  ever shown in a sandboxed iframe without ``allow-scripts`` (and, under this policy, could not
  run inline scripts even if it reached the page).

API keys: every read goes through :func:`view_of`, which maps the request's key (checked by
``ApiHandler.prepare``) to its owner's view; the page asks for a key when an answer is ``401``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import tornado.web

from scrapeledger.errors import BrokerError

from ._http import ApiError, ApiHandler, Jobs, Reads, unavailable
from ._index import ACTIVE, ANY_OWNER, CursorError, RecentJobs
from ._index_feed import IndexFeed
from ._openapi import STATUSES
from ._server import Edge
from ._tornado import PathSummary

UI_DIR = Path(__file__).parent / "ui"
MAX_LIMIT = 200
MAX_QUERY_CHARS = 200
INDEX_WAIT_S = 30.0

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-src 'self'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)
"""Only the edge's own scripts run on the page; nothing else is fetched, nothing frames it."""


def view_of(handler: ApiHandler) -> str:
    """Whose jobs this request may see: everyone's with API keys off, else its key's owner's (a
    missing or wrong key was already answered ``401 unauthorized``, which makes the page ask
    for one)."""
    return ANY_OWNER if handler.owner is None else handler.owner


class _IndexReader(ApiHandler):
    def initialize(self, edge: Edge, reads: Reads, feed: IndexFeed) -> None:  # type: ignore[override]
        super().initialize(edge, reads)
        self.feed = feed

    async def index(self) -> RecentJobs:
        try:
            return await self.feed.ready(INDEX_WAIT_S)
        except BrokerError as exc:
            raise unavailable(exc) from None


class JobList(Jobs):
    """``GET /v1/jobs`` (the list) next to the HTTP API's ``POST /v1/jobs`` (the submit)."""

    def initialize(self, edge: Edge, reads: Reads, feed: IndexFeed) -> None:  # type: ignore[override]
        super().initialize(edge, reads)
        self.feed = feed

    async def get(self) -> None:
        try:
            statuses = self._statuses()
            query = self.get_query_argument("q", "")
            if len(query) > MAX_QUERY_CHARS:
                raise ApiError(400, "invalid_query", f"q is at most {MAX_QUERY_CHARS} characters")
            limit = self._limit()
            cursor = self.get_query_argument("cursor", None) or None
            try:
                index = await self.feed.ready(INDEX_WAIT_S)
            except BrokerError as exc:
                raise unavailable(exc) from None
            try:
                page = index.page(statuses=statuses, query=query, cursor=cursor, limit=limit,
                                  owner=view_of(self))
            except CursorError:
                raise ApiError(400, "invalid_cursor", "cursor is a next_cursor of this list") from None
        except ApiError as exc:
            self.fail(exc)
            return
        self.answer(200, {"jobs": [j.to_dict() for j in page.jobs], "next_cursor": page.next_cursor,
                          "indexed": len(index), "capacity": index.capacity})

    def _statuses(self) -> frozenset[str]:
        raw = self.get_query_argument("status", "")
        if not raw:
            return frozenset()  # every status
        wanted = frozenset(raw.split(","))
        bad = wanted - set(STATUSES) - {ACTIVE}
        if bad:
            shown = ", ".join(repr(b) for b in sorted(bad))
            raise ApiError(400, "invalid_status", f"unknown status: {shown} (comma-separated, no spaces)")
        return wanted

    def _limit(self) -> int:
        raw = self.get_query_argument("limit", "50")
        limit = int(raw) if re.fullmatch(r"[0-9]{1,4}", raw) else 0  # int() would take " 5", "1_0"
        if not 1 <= limit <= MAX_LIMIT:
            raise ApiError(400, "invalid_limit", f"limit is a whole number from 1 to {MAX_LIMIT}")
        return limit


class Stats(_IndexReader):
    """``GET /v1/stats``: the counters, once."""

    async def get(self) -> None:
        try:
            index = await self.index()
        except ApiError as exc:
            self.fail(exc)
            return
        self.answer(200, index.stats(view_of(self)))


class UiRedirect(PathSummary, tornado.web.RedirectHandler):
    """``/ui`` -> ``/ui/``, named by path in Tornado's warnings (no ``?api_key=``)."""


class UiFiles(PathSummary, tornado.web.StaticFileHandler):
    """The page's files, with the headers that keep scraped content from ever running here
    (named by path in Tornado's warnings: no ``?api_key=``)."""

    def set_extra_headers(self, path: str) -> None:
        self.set_header("Content-Security-Policy", CSP)
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("Referrer-Policy", "no-referrer")
        self.set_header("X-Frame-Options", "DENY")
        self.set_header("Cache-Control", "no-cache")


def routes(edge: Edge, reads: Reads, feed: IndexFeed) -> list[tuple[str, type[tornado.web.RequestHandler],
                                                                 dict[str, Any]]]:
    """Listed before the HTTP API's routes: ``/v1/jobs`` is served by :class:`JobList`."""
    deps = {"edge": edge, "reads": reads, "feed": feed}
    return [
        (r"/v1/jobs", JobList, deps),
        (r"/v1/stats", Stats, deps),
        (r"/ui", UiRedirect, {"url": "/ui/"}),
        (r"/ui/(.*)", UiFiles, {"path": str(UI_DIR), "default_filename": "index.html"}),
    ]
