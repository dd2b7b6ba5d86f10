"""The one place the fetcher reaches into httpx's private attributes.

Written against **httpx 0.28.1** (``pip show httpx``). httpx's client keeps one cookie jar for
every request it sends, so one job's cookies would ride along with the next job's requests to
the same site; it has no switch to turn the jar off. Two things here rely on its internals:

* the client's jar is the private ``_cookies``: the public ``cookies`` setter (and the
  constructor's ``cookies=``) copy whatever they are given into a plain ``httpx.Cookies``
  (``httpx/_client.py``, ``BaseClient.cookies``), so a jar of our own can only be put in place
  by assigning ``_cookies``;
* after every response the client calls ``self.cookies.extract_cookies(response)``
  (``AsyncClient._send_single_request``), which :class:`NoCookies` makes a no-op - also skipping
  the urllib request/response wrappers httpx builds for it, about 10% of a fetch's CPU.

If an httpx upgrade renames ``_cookies``, the assignment adds an unused attribute and the real
jar comes back: cookies then leak between jobs on one host, and tests/unit/test_fetcher.py's
``test_request_headers_user_agent_and_no_shared_cookies`` fails. If it stops calling
``extract_cookies``, cookies may be stored by some other path: the same test tells.
"""

from __future__ import annotations

import httpx


class NoCookies(httpx.Cookies):
    """A jar that stays empty: nothing a response sets is kept, nothing is sent."""

    def extract_cookies(self, response: httpx.Response) -> None:
        return None

    def set(self, name: str, value: str, domain: str = "", path: str = "/") -> None:
        return None


def without_cookies(client: httpx.AsyncClient) -> httpx.AsyncClient:
    """``client`` with a jar that stays empty, so no job's cookies reach another's requests."""
    client._cookies = NoCookies()
    return client
