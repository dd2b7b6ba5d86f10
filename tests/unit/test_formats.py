"""Output formats on real-looking pages: what each format yields, from bytes to result fields."""

from __future__ import annotations

import dataclasses
from typing import Any

import orjson
import pytest

import ledger
from processors.fetch import FetchOk
from processors.formats import kind_of, render
from processors.scraper import decode_text, stored_body
from tests.support import articles

FINAL = "https://paper.example/guides/2026/cafe-society"
"""The URL after redirects: relative links resolve against this, not the URL asked for."""

ALL = ("html", "markdown", "text", "links", "metadata")


def _fetched(body: bytes, content_type: str, **headers: str) -> FetchOk:
    return FetchOk(url="https://paper.example/r/1", final_url=FINAL, http_status=200,
                   headers={"content-type": content_type, **headers}, body=body, truncated=False,
                   elapsed_ms=1.0, redirects=1)


def _through_the_scraper(result: FetchOk, formats: tuple[str, ...] = ALL) -> dict[str, Any]:
    """Bytes -> the scraper's stored body -> the result fields the edge sends."""
    text = decode_text(result.body, result.headers)
    raw, cut = stored_body(text, formats, result, 10 * 1024 * 1024)
    assert not cut
    return ledger.decode_outputs(formats, raw.decode())


def test_links_are_absolute_against_the_final_url_deduplicated_in_document_order() -> None:
    page = articles.article_html(3, kb=20)
    out = render(page, ["links"], base_url=FINAL, content_type="text/html", http_status=200)
    assert out["links"] == articles.expected_links(page, FINAL)
    assert "https://paper.example/guides/2026/news/today" in out["links"]  # relative to the final URL
    assert "https://paper.example/guides/archive/2025/" in out["links"]
    assert len(out["links"]) == len(set(out["links"]))
    assert all(u.startswith(("https://", "http://")) and "#" not in u for u in out["links"])
    assert out["links"].count("https://paper.example/guides/cafe-society") == 1  # with and without #


def test_a_base_element_overrides_the_page_url_for_links_markdown_and_canonical() -> None:
    page = ('<html><head><base href="/docs/v2/"><link rel="canonical" href="intro">'
            '</head><body><p><a href="intro">x</a> <a href="../v1/">y</a></p></body></html>')
    out = render(page, ["markdown", "links", "metadata"], base_url=FINAL, content_type="text/html",
                 http_status=200)
    assert out["links"] == ["https://paper.example/docs/v2/intro", "https://paper.example/docs/v1/"]
    assert "(https://paper.example/docs/v2/intro)" in out["markdown"]
    assert out["metadata"]["canonical_url"] == "https://paper.example/docs/v2/intro"


def test_metadata_title_description_language_canonical_and_status() -> None:
    out = render(articles.article_html(1, kb=5), ["metadata"], base_url=FINAL, content_type="text/html",
                 http_status=203)
    assert out == {"metadata": {
        "title": articles.TITLE, "description": articles.DESCRIPTION, "language": articles.LANGUAGE,
        "canonical_url": "https://paper.example" + articles.CANONICAL, "status": 203,
    }}


def test_markdown_keeps_structure_and_drops_scripts_and_styles() -> None:
    md = render(articles.article_html(2, kb=5), ["markdown"], base_url=FINAL, content_type="text/html",
                http_status=200)["markdown"]
    assert md.startswith(f"# {articles.TITLE}")
    assert "\n## Part 1: " in md
    assert "| year | cafés | writers |" in md
    assert "[part 1](https://paper.example/guides/part-1)" in md
    assert "![figure 1](https://paper.example/img/1.jpg)" in md
    assert "dataLayer" not in md and "font-family" not in md


def test_text_is_the_readable_text_only() -> None:
    text = render(articles.article_html(2, kb=5), ["text"], base_url=FINAL, content_type="text/html",
                  http_status=200)["text"]
    assert articles.TITLE in text and "Part 1:" in text
    assert "<" not in text and "dataLayer" not in text and "font-family" not in text


@pytest.mark.parametrize("charset", ["windows-1252", "iso-8859-15", "utf-8"])
def test_a_declared_charset_decodes_every_format(charset: str) -> None:
    page = articles.article_html(4, kb=5, charset=charset)
    out = _through_the_scraper(_fetched(page.encode(charset), f"text/html; charset={charset}"))
    assert out["metadata"]["title"] == articles.TITLE  # é survives
    assert out["metadata"]["description"] == articles.DESCRIPTION  # € is 0x80 in cp1252, 0xA4 in latin-9
    assert articles.TITLE in out["text"] and f"# {articles.TITLE}" in out["markdown"]
    assert out["html"] == page
    assert out["links"] == articles.expected_links(page, FINAL)


def test_html_left_out_means_no_html_field_and_order_is_the_requested_set() -> None:
    out = _through_the_scraper(_fetched(articles.article_html(5, kb=5).encode(), "text/html"),
                               ("links", "metadata"))
    assert set(out) == {"links", "metadata"}


def test_the_default_stores_the_page_text_itself_as_before() -> None:
    assert ledger.decode_outputs(ledger.DEFAULT_FORMATS, "<p>hi</p>") == {"html": "<p>hi</p>"}
    assert ledger.decode_outputs(ledger.DEFAULT_FORMATS, None) == {"html": ""}  # body gone: as before
    assert ledger.decode_outputs(("markdown", "links"), None) == {"markdown": "", "links": []}


def test_a_json_body_is_its_own_markdown_and_text_with_no_links() -> None:
    body = b'{"see": "/page/1", "title": "not html"}'
    out = _through_the_scraper(_fetched(body, "application/json"))
    assert out["html"] == out["markdown"] == out["text"] == body.decode()
    assert out["links"] == []
    assert out["metadata"] == {"title": None, "description": None, "language": None,
                               "canonical_url": None, "status": 200}


def test_plain_text_is_kept_and_its_content_language_reported() -> None:
    out = _through_the_scraper(_fetched(b"just <text>\n", "text/plain; charset=utf-8",
                                        **{"content-language": "fr"}))
    assert out["markdown"] == out["text"] == "just <text>\n"
    assert out["links"] == [] and out["metadata"]["language"] == "fr"


def test_a_binary_body_has_empty_text_formats() -> None:
    out = _through_the_scraper(_fetched(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "image/png"))
    assert out["markdown"] == out["text"] == "" and out["links"] == []
    assert out["metadata"]["status"] == 200 and out["metadata"]["title"] is None


@pytest.mark.parametrize(
    ("content_type", "start", "kind"),
    [("", "<!DOCTYPE html><html>", "html"), ("", "  <!-- x --><html lang=en>", "html"),
     ("", '{"a": 1}', "text"), ("", "\x00\x01", "binary"), ("application/xhtml+xml", "<x/>", "html"),
     ("application/problem+json", "{}", "text"), ("application/pdf", "%PDF", "binary")],
)
def test_the_kind_of_a_body(content_type: str, start: str, kind: str) -> None:
    assert kind_of(content_type, start) == kind


def test_a_document_too_large_for_the_topic_is_cut_to_fit_and_says_so() -> None:
    outputs = {"html": "x" * 5000, "markdown": "m" * 3000, "links": ["https://a.example/"] * 3,
               "metadata": {"title": "t", "status": 200}}
    raw, cut = ledger.encode_outputs(dict(outputs), limit=4000)
    assert cut and len(raw) <= 4000
    doc = orjson.loads(raw)
    assert doc["metadata"] == outputs["metadata"] and doc["links"] == outputs["links"]
    assert outputs["html"].startswith(doc["html"]) and doc["markdown"] == outputs["markdown"]
    same, cut = ledger.encode_outputs(dict(outputs), limit=10_000)
    assert not cut and orjson.loads(same) == outputs


def test_a_truncated_page_still_renders() -> None:
    page = articles.article_html(6, kb=20).encode()
    cut_mid_character = page[: page.index("é".encode(), 10_000) + 1]  # half of a two-byte é
    out = _through_the_scraper(_fetched(cut_mid_character, "text/html; charset=utf-8"))
    assert out["metadata"]["title"] == articles.TITLE
    assert out["links"][:3] == articles.expected_links(articles.article_html(6, kb=20), FINAL)[:3]
    assert out["text"]


def test_formats_travel_with_every_retry_and_redrive_and_mark_the_stored_body() -> None:
    from processors.fetch import FetchError
    from processors.scraper import outcome_events
    from replay._redrive import redrive_events
    from scrapeledger.settings import Settings
    from scrapeledger.vault import Vault, new_key

    asked = ("markdown", "links")
    trigger = ledger.JobValidated(job_id="j", event_id="j/validated", at=1, source="v", attempt=1,
                             url="https://paper.example/", formats=asked)
    settings = Settings()
    [_, retry] = outcome_events(trigger, FetchError("timeout", "slow", retryable=True),
                                settings=settings, body_ref=None, body_inline=None)
    assert isinstance(retry, ledger.RetryScheduled) and retry.formats == asked
    [ok] = outcome_events(retry, _fetched(b"<p>x</p>", "text/html"), settings=settings,
                          body_ref=(0, 1), body_inline=None, cut=True)
    assert isinstance(ok, ledger.ScrapeSucceeded) and ok.formats == asked and ok.truncated
    failed = ledger.fold_all([ledger.JobSubmitted(job_id="j", event_id="s", at=1, source="e", url="u",
                                        formats=asked),
                         dataclasses.replace(trigger, event_id="x"),
                         ledger.JobFailed(job_id="j", event_id="f", at=2, source="s", attempt=1,
                                     code="http_404", message="m")])["j"]
    [redriven] = redrive_events([failed], source="op", reason="r", vault=Vault([new_key()]))
    assert redriven.formats == asked


@pytest.mark.parametrize("content_type", ["text/html", ""])
def test_a_charset_declared_only_in_the_page_is_honoured(content_type: str) -> None:
    # the server says nothing about the charset; the page's <meta> says windows-1252
    page = articles.article_html(8, kb=5, charset="windows-1252")
    out = _through_the_scraper(_fetched(page.encode("windows-1252"), content_type))
    assert out["html"] == page
    assert out["metadata"]["title"] == articles.TITLE
    assert out["metadata"]["description"] == articles.DESCRIPTION


def test_the_servers_charset_beats_the_pages_and_a_bom_beats_both() -> None:
    page = articles.article_html(9, kb=5, charset="windows-1252")  # the page claims 1252, wrongly
    served = _through_the_scraper(_fetched(page.encode("utf-8"), "text/html; charset=utf-8"))
    assert served["metadata"]["title"] == articles.TITLE
    bom = _through_the_scraper(_fetched(b"\xef\xbb\xbf" + page.encode("utf-8"), "text/html; charset=latin-1"))
    assert bom["metadata"]["title"] == articles.TITLE
