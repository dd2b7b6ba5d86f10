"""Output formats on the real pipeline: asked over WebSocket, computed by the scraper, stored with
the body in the bodies topic, returned by the edge as fields."""

from __future__ import annotations

import asyncio
from urllib.parse import quote

import ledger
from replay import history
from tests.support import articles
from tests.support.stack import Stack

from .wsclient import Raw

ALL = ["html", "markdown", "text", "links", "metadata"]


def test_a_job_asking_for_every_format_gets_each_as_a_field(stack: Stack, pages: str) -> None:
    stack.processors()
    url = stack.edge()
    # a redirect first: relative links must resolve against the page's final URL
    asked = f"{pages}/redirect/1?to=" + quote("/article/7?kb=12&charset=windows-1252")
    final = f"{pages}/article/7?kb=12&charset=windows-1252"

    async def go() -> dict[str, dict[str, object]]:
        ws = await Raw.connect(url)
        await ws.send({"event": "job", "ref": "all", "message": {"url": asked, "formats": ALL}})
        await ws.send({"event": "job", "ref": "bad",
                       "message": {"url": asked, "formats": ["markdown", "screenshot"]}})
        results: dict[str, dict[str, object]] = {}
        while len(results) < 2:
            frame = await ws.recv(timeout=120)
            if frame["event"] == "result":
                results[str(frame["ref"])] = frame
        await ws.close()
        return results

    results = asyncio.run(go())
    ok, bad = results["all"], results["bad"]
    page = articles.article_html(7, kb=12, charset="windows-1252")
    assert ok["status"] == "succeeded" and ok["final_url"] == final
    assert ok["html"] == page
    assert str(ok["markdown"]).startswith(f"# {articles.TITLE}")
    assert f"[part 1]({pages}/guides/part-1)" in str(ok["markdown"])
    assert articles.TITLE in str(ok["text"]) and "<" not in str(ok["text"])
    assert ok["links"] == articles.expected_links(page, final)
    assert ok["metadata"] == {"title": articles.TITLE, "description": articles.DESCRIPTION,
                              "language": articles.LANGUAGE,
                              "canonical_url": pages + articles.CANONICAL, "status": 200}
    assert bad["status"] == "rejected"
    assert bad["error"]["code"] == "invalid_options"  # type: ignore[index]
    assert "'screenshot'" in bad["error"]["message"]  # type: ignore[index]

    events = history(stack.settings, str(ok["job_id"]))
    [succeeded] = [e for e in events if isinstance(e, ledger.ScrapeSucceeded)]
    assert succeeded.formats == tuple(ALL)
    assert succeeded.body_partition is not None  # stored with the body, by reference
