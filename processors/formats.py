"""Output formats: a fetched page as html, markdown, text, links and metadata, computed once.

The scraper calls :func:`render` once per succeeded attempt, on the decoded (possibly truncated)
body, with the URL after redirects as the base for relative links; the result is stored with
the body and the edge returns it as result fields of the same names. Libraries, chosen by
``bench/formats.py`` (figures in docs/benchmarks.md):

* ``markdown`` and ``text``: html-to-markdown (a Rust converter; it releases the GIL, so a
  conversion in a worker thread does not stall the scraper's event loop). Markdown links and
  images are made absolute against the page's base URL.
* ``links`` and ``metadata``: selectolax (lexbor), one parse for both.

What non-HTML bodies yield (the content type decides; a missing one is sniffed):

* text-like (``text/*`` other than HTML, JSON, XML, JavaScript): ``markdown`` and ``text`` are
  the body unchanged, ``links`` is empty, ``metadata`` has only ``status``;
* anything else (images, PDFs, archives): ``markdown`` and ``text`` are empty, ``links`` empty,
  ``metadata`` only ``status``. ``html`` is always the body as text, as it was before formats.

A converter that raises on some page costs that format (its empty value and a warning), never
the job: the fetch succeeded and the other formats are still worth having.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from typing import Any, Literal

import html_to_markdown
import yarl
from selectolax.lexbor import LexborHTMLParser

from ledger import EMPTY_OUTPUTS as EMPTY
from scrapeledger.redact import url_ref

log = logging.getLogger(__name__)

Kind = Literal["html", "text", "binary"]

_TEXT_TYPES = frozenset({
    "application/json", "application/xml", "application/javascript", "application/ecmascript",
    "application/x-javascript", "application/ld+json", "application/rss+xml", "application/atom+xml",
})
_HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})
_HTML_START = re.compile(r"^\s*(<!--.*?-->\s*)*<(!doctype\s+html|html|head|body)\b", re.I | re.S)
_SPACE = re.compile(r"\s+")

_MARKDOWN_OPTIONS: dict[str, Any] = {"extract_metadata": False}  # no YAML front matter
_TEXT_OPTIONS = html_to_markdown.ConversionOptions(extract_metadata=False, output_format="plain")


def kind_of(content_type: str, text: str) -> Kind:
    """HTML, other text, or binary: from the content type, sniffed when there is none."""
    mime = content_type.split(";", 1)[0].strip().lower()
    if mime in _HTML_TYPES:
        return "html"
    if mime.startswith("text/") or mime in _TEXT_TYPES or mime.endswith(("+json", "+xml")):
        return "text"
    if mime:
        return "binary"
    head = text[:1024]
    if _HTML_START.match(head):
        return "html"
    return "binary" if "\x00" in head or "\ufffd" in head else "text"


def render(
    text: str,
    formats: Iterable[str],
    *,
    base_url: str,
    content_type: str,
    http_status: int,
    content_language: str = "",
) -> dict[str, Any]:
    """The requested outputs of one page, keyed by format name. CPU only; no I/O.

    ``text`` is the body as the scraper decoded it; ``base_url`` the URL after redirects (a
    ``<base href>`` in the page overrides it, as in a browser).
    """
    wanted = tuple(formats)
    kind = kind_of(content_type, text)
    out: dict[str, Any] = {}
    if "html" in wanted:
        out["html"] = text
    tree: LexborHTMLParser | None = None
    base = base_url
    if kind == "html" and ({"links", "metadata"} & set(wanted) or "markdown" in wanted):
        tree = LexborHTMLParser(text)
        base = _base_of(tree, base_url)
    for name in wanted:
        if name == "html":
            continue
        try:
            out[name] = _one(name, kind, text, tree, base, http_status, content_language)
        except Exception:
            log.warning("format %s failed for a page from %s", name, url_ref(base_url), exc_info=True)
            out[name] = EMPTY[name]
    return out


def _one(
    name: str, kind: Kind, text: str, tree: LexborHTMLParser | None, base: str, status: int,
    content_language: str,
) -> Any:
    if name == "metadata":
        if tree is None:
            return {"title": None, "description": None, "language": content_language or None,
                    "canonical_url": None, "status": status}
        return metadata(tree, base, status, content_language)
    if kind == "binary":
        return EMPTY[name]
    if name == "links":
        return links(tree, base) if tree is not None else []
    if kind == "text":
        return text  # markdown and text of a plain-text body are the body itself
    if name == "markdown":
        options = html_to_markdown.ConversionOptions(**_MARKDOWN_OPTIONS, base_url=base)
        return html_to_markdown.convert(text, options).content
    if name == "text":
        return html_to_markdown.convert(text, _TEXT_OPTIONS).content
    raise ValueError(f"unknown format {name!r}")  # the validator lets none through


def _base_of(tree: LexborHTMLParser, url: str) -> str:
    """The document's base URL: its first ``<base href>``, resolved against ``url``, else ``url``."""
    node = tree.css_first("base[href]")
    href = (node.attributes.get("href") or "").strip() if node is not None else ""
    if not href:
        return url
    joined = _join(yarl.URL(url), href)
    return joined if joined is not None else url


def _join(base: yarl.URL, href: str) -> str | None:
    """``href`` resolved against ``base``, without its fragment; None unless http(s).

    yarl rather than ``urllib.parse.urljoin``: half the CPU per link (a page has hundreds), and
    the result is percent-encoded, so every URL is one a client can fetch as it is."""
    try:
        url = base.join(yarl.URL(href.split("#", 1)[0]))
    except (ValueError, TypeError):  # e.g. an unbalanced IPv6 bracket, a bad port
        return None
    if url.scheme not in ("http", "https") or not url.host:
        return None
    return str(url)


def links(tree: LexborHTMLParser, base: str) -> list[str]:
    """Every ``<a href>`` and ``<area href>`` as an absolute http(s) URL without its fragment,
    each once, in document order (``javascript:``, ``mailto:`` and the like are left out)."""
    hrefs = dict.fromkeys((node.attrs.get("href") or "").strip() for node in tree.css("a[href], area[href]"))
    base_url = yarl.URL(base)
    seen: dict[str, None] = {}
    for href in hrefs:  # each spelling once: pages repeat their navigation links
        if not href or href.startswith("#"):
            continue
        url = _join(base_url, href)
        if url is not None:
            seen.setdefault(url, None)
    return list(seen)


def metadata(tree: LexborHTMLParser, base: str, status: int, content_language: str = "") -> dict[str, Any]:
    """Title, description, language, canonical URL (absolute) and the HTTP status."""
    title = _text(tree.css_first("title")) or _content(tree, 'meta[property="og:title" i]')
    description = _content(tree, 'meta[name="description" i]') or _content(
        tree, 'meta[property="og:description" i]'
    )
    root = tree.css_first("html")
    language = (root.attributes.get("lang") or "").strip() if root is not None else ""
    language = language or _content(tree, 'meta[http-equiv="content-language" i]') or content_language
    canonical = tree.css_first('link[rel~="canonical" i][href]')
    href = (canonical.attributes.get("href") or "").strip() if canonical is not None else ""
    return {
        "title": title or None,
        "description": description or None,
        "language": language.strip() or None,
        "canonical_url": _join(yarl.URL(base), href) if href else None,
        "status": status,
    }


def _text(node: Any) -> str:
    return _SPACE.sub(" ", node.text()).strip() if node is not None else ""


def _content(tree: LexborHTMLParser, selector: str) -> str:
    node = tree.css_first(selector)
    value = node.attributes.get("content") if node is not None else None
    return _SPACE.sub(" ", value).strip() if value else ""
