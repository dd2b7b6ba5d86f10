"""Realistic HTML pages, deterministic and of any size: for output-format tests and benches.

A news/documentation-style page as real sites build them: a ``<head>`` with title, description,
Open Graph tags, a canonical link, stylesheets and scripts (inline JSON-LD and a tracking
snippet); a navigation bar and a footer full of links (relative, root-relative, absolute,
fragment-only, ``mailto:``, ``javascript:``, the same target spelled twice); an article of
headings, paragraphs with inline markup and links, lists, a table, images, a code block and a
quote, repeated until the page reaches the size asked for. ``charset`` picks the encoding the
bytes are in (the page declares it in a ``<meta>``; the server sends it in ``Content-Type``).

Which links a page holds, resolved, is returned by :func:`expected_links` for a base URL, so
tests check against a list made by other means than the code under test.
"""

from __future__ import annotations

import random

TITLE = "Café society: a field guide to résumé writing"
DESCRIPTION = "How the cafés of the old town shaped a century of letters, for €0: with examples."
LANGUAGE = "en-GB"
CANONICAL = "/guides/cafe-society"
NAV = ["/", "/news/", "news/today", "../archive/2025/", "https://partner.example/offers?ref=nav",
       "/guides/cafe-society#comments", "#top", "mailto:desk@example.org", "javascript:void(0)", "/"]
"""Navigation hrefs as written; two resolve to the page's own path set, some are not fetchable."""

_WORDS = ["café", "résumé", "naïve", "coffee", "letters", "street", "paper", "ink", "window",
          "morning", "table", "chair", "writer", "editor", "column", "story", "city", "river",
          "bridge", "evening", "light", "music", "voice", "friend", "history"]


def _sentence(rng: random.Random, n: int) -> str:
    words = [rng.choice(_WORDS) for _ in range(n)]
    return " ".join(words).capitalize() + "."


def _section(i: int, rng: random.Random) -> str:
    para = " ".join(_sentence(rng, rng.randint(6, 14)) for _ in range(4))
    return f"""
<section id="s{i}">
  <h2>Part {i}: {rng.choice(_WORDS)} and {rng.choice(_WORDS)}</h2>
  <p>{para} See <a href="/guides/part-{i}">part {i}</a> or <a href="part-{i}?print=1">print it</a>,
  <em>and</em> <strong>read</strong> the <a href="https://ref.example/w/{i}#cite">reference</a>.</p>
  <ul><li>{_sentence(rng, 5)}</li><li>{_sentence(rng, 7)} <code>x = {i}</code></li>
  <li><a href="/tags/{rng.choice(_WORDS)}">tag</a></li></ul>
  <table class="data"><thead><tr><th>year</th><th>cafés</th><th>writers</th></tr></thead>
  <tbody><tr><td>{1900 + i}</td><td>{i * 3}</td><td>{i * 7}</td></tr>
  <tr><td>{1950 + i}</td><td>{i * 2}</td><td>{i * 5}</td></tr></tbody></table>
  <figure><img src="/img/{i}.jpg" alt="figure {i}" width="640" height="480">
  <figcaption>{_sentence(rng, 6)}</figcaption></figure>
  <blockquote><p>{_sentence(rng, 12)}</p></blockquote>
  <pre><code class="language-python">def part_{i}():
    return "{rng.choice(_WORDS)}"</code></pre>
</section>"""


def article_html(n: int = 0, *, kb: int = 50, charset: str = "utf-8") -> str:
    """Page ``n`` (a seed), about ``kb`` KiB (at least one section), declaring ``charset`` in
    its ``<meta>``; encode it in that charset to serve it."""
    rng = random.Random(n)
    nav = "".join(f'<li><a href="{h}">item {i}</a></li>' for i, h in enumerate(NAV))
    head = f"""<!DOCTYPE html>
<html lang="{LANGUAGE}">
<head>
<meta charset="{charset}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{TITLE}</title>
<meta name="description" content="{DESCRIPTION}">
<meta property="og:title" content="{TITLE} | The Paper">
<meta property="og:description" content="{DESCRIPTION}">
<link rel="canonical" href="{CANONICAL}">
<link rel="stylesheet" href="/static/site.css">
<style>body {{ font-family: serif; }} .data td {{ padding: 2px; }}</style>
<script type="application/ld+json">{{"@type": "Article", "headline": "{TITLE}"}}</script>
<script>window.dataLayer = window.dataLayer || []; function gtag() {{ dataLayer.push(arguments); }}</script>
</head>
<body>
<header><a href="/" class="logo">The Paper</a><nav><ul>{nav}</ul></nav></header>
<main><article><h1>{TITLE}</h1><p class="byline">By <a href="/authors/ana">Ana</a></p>"""
    foot = """</article></main>
<footer><a href="/about">About</a> <a href="/about">About us</a> <a href="/privacy">Privacy</a>
<a href="https://social.example/thepaper">Follow</a></footer>
<script src="/static/app.js" defer></script>
</body></html>
"""
    parts = [head]
    size = len(head) + len(foot)
    i = 0
    while i == 0 or size < kb * 1024:
        i += 1
        section = _section(i, rng)
        parts.append(section)
        size += len(section.encode())
    parts.append(foot)
    return "".join(parts)


def expected_links(page: str, base: str) -> list[str]:
    """The page's fetchable links, absolute and without fragments, first occurrence first:
    written out here by hand for the fixed parts, by pattern for the sections."""
    # the resolver the expectation uses, not the code under test's; URLs come percent-encoded
    from urllib.parse import quote, urljoin

    hrefs = ["/", *NAV, "/authors/ana"]
    i = 1
    while f'<section id="s{i}">' in page:
        section = page.split(f'<section id="s{i}">', 1)[1].split("</section>", 1)[0]
        tag = section.split('<a href="/tags/', 1)[1].split('"', 1)[0]
        hrefs += [f"/guides/part-{i}", f"part-{i}?print=1", f"https://ref.example/w/{i}#cite",
                  f"/tags/{tag}"]
        i += 1
    hrefs += ["/about", "/about", "/privacy", "https://social.example/thepaper"]
    out: list[str] = []
    for h in hrefs:
        if h.startswith(("mailto:", "javascript:", "#")):
            continue
        url = quote(urljoin(base, h).split("#", 1)[0], safe=":/?=&%")
        if url not in out:
            out.append(url)
    return out
