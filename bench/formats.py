"""CPU per page of each output format, against the plain html path in the same run.

The work measured is exactly what the scraper does per succeeded page (``processors.scraper``):
the baseline ``html`` path decodes the body and encodes it for the bodies topic; each format
decodes, renders (``processors.formats.render``) and encodes the outputs document
(``stored_body``). Pages: realistic generated articles (``tests/support/articles.py``) of several
sizes, plus every ``*.html`` under ``--pages DIR`` if given (real sites' pages). CPU is this
thread's time on CPU (the kernel's per-thread CPU clock, ns), so other work on a shared
machine does not count; each cell is the median of ``--rounds`` rounds.

``--loop`` also measures what the conversions do to the scraper's event loop: a 1 ms ticker runs
on the loop while all formats of the page set are computed either inline on the loop or in the
converter thread pool (as the scraper does), and the worst gap between ticks is reported.

``--candidates`` times the alternative libraries that are installed (markdownify, html2text,
trafilatura, inscriptis, html-text, resiliparse) on the same pages, for the record of why
html-to-markdown and selectolax were chosen; install them in a scratch venv to run it.

    .venv/bin/python bench/formats.py --rounds 5 --loop
    .venv/bin/python bench/formats.py --pages DIR --limit 20 --sizes 50 --candidates
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import itertools
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from processors.fetch import FetchOk
from processors.scraper import decode_text, stored_body
from tests.support.articles import article_html

FORMATS = ("markdown", "text", "links", "metadata")
LIMIT = 64 * 1024 * 1024
SIZES_KB = (10, 50, 200, 1000)


def thread_cpu_ns() -> int:
    """This thread's time on CPU so far (ns): the kernel's per-thread CPU clock
    (CLOCK_THREAD_CPUTIME_ID). Not /proc/thread-self/schedstat: that is brought up to date only
    at scheduler events, so two reads a millisecond apart on a quiet core can show no time at all
    (which made the round sizing below loop for minutes)."""
    return time.thread_time_ns()


def page_set(
    pages_dir: str | None, limit: int, sizes: tuple[int, ...] = SIZES_KB
) -> dict[str, list[FetchOk]]:
    sets: dict[str, list[FetchOk]] = {}
    for kb in sizes:
        sets[f"article {kb} KB"] = [
            _ok(article_html(n, kb=kb).encode(), f"https://paper.example/a/{n}") for n in range(8)
        ]
    if pages_dir:
        files = sorted(p for p in Path(pages_dir).rglob("*.html") if p.stat().st_size > 4096)[:limit]
        if files:
            mean = sum(p.stat().st_size for p in files) / len(files) / 1024
            sets[f"{len(files)} real pages, mean {mean:.0f} KB"] = [
                _ok(p.read_bytes(), f"https://docs.example/{p.name}") for p in files
            ]
    return sets


def _ok(body: bytes, url: str) -> FetchOk:
    return FetchOk(url=url, final_url=url, http_status=200,
                   headers={"content-type": "text/html; charset=utf-8"}, body=body, truncated=False,
                   elapsed_ms=1.0, redirects=0)


def plain(result: FetchOk) -> None:
    decode_text(result.body, result.headers).encode()


def with_formats(formats: tuple[str, ...]) -> Callable[[FetchOk], None]:
    def run(result: FetchOk) -> None:
        stored_body(decode_text(result.body, result.headers), formats, result, LIMIT)

    return run


def cpu_per_page(work: Callable[[FetchOk], None], pages: list[FetchOk], rounds: int) -> float:
    """Median over rounds of CPU ms per page; each round repeats the set to at least ~0.2 s."""
    work(pages[0])  # warm-up: imports, caches
    once = max(1, cpu_ns(work, pages, 1))
    repeat = max(1, int(0.2e9 / once))
    samples = [cpu_ns(work, pages, repeat) / 1e6 / (repeat * len(pages)) for _ in range(rounds)]
    return statistics.median(samples)


def cpu_ns(work: Callable[[FetchOk], None], pages: list[FetchOk], repeat: int) -> int:
    """This thread's CPU time (ns) for ``repeat`` passes of ``work`` over ``pages``."""
    start = thread_cpu_ns()
    for _ in range(repeat):
        for p in pages:
            work(p)
    return thread_cpu_ns() - start


def table(sets: dict[str, list[FetchOk]], rounds: int) -> None:
    cases: list[tuple[str, Callable[[FetchOk], None]]] = [("html (plain path)", plain)]
    cases += [(f, with_formats((f,))) for f in FORMATS]
    cases += [("all five", with_formats(("html", *FORMATS)))]
    print("| pages | " + " | ".join(name for name, _ in cases) + " |")
    print("|---|" + "---|" * len(cases))
    for label, pages in sets.items():
        cells = []
        base = cpu_per_page(plain, pages, rounds)
        for _, work in cases:
            ms = base if work is plain else cpu_per_page(work, pages, rounds)
            cells.append(f"{ms:.3f} ms" if work is plain else f"{ms:.2f} ms ({ms / base:.0f}x)")
        print(f"| {label} | " + " | ".join(cells) + " |")


async def loop_gaps(pages: list[FetchOk], where: str) -> tuple[float, float]:
    """Worst and median gap (ms) between 1 ms ticks while every page's formats are computed."""
    loop = asyncio.get_running_loop()
    pool = concurrent.futures.ThreadPoolExecutor(2)
    work = with_formats(("html", *FORMATS))
    gaps: list[float] = []
    done = asyncio.Event()

    async def ticker() -> None:
        last = time.perf_counter()
        while not done.is_set():
            await asyncio.sleep(0.001)
            now = time.perf_counter()
            gaps.append((now - last) * 1000)
            last = now

    tick = asyncio.create_task(ticker())
    await asyncio.sleep(0.01)
    if where == "thread":
        await asyncio.gather(*(loop.run_in_executor(pool, work, p) for p in pages))
    else:
        for p in pages:
            work(p)
            await asyncio.sleep(0)
    done.set()
    await tick
    pool.shutdown()
    return max(gaps), statistics.median(gaps)


def candidates(sets: dict[str, list[FetchOk]], rounds: int) -> None:
    """Alternatives, where installed: CPU ms per page of the conversion alone (no decode/encode)."""
    alts = alternatives()
    print("| library | " + " | ".join(sets) + " |")
    print("|---|" + "---|" * len(sets))
    texts = {k: [p.body.decode() for p in v] for k, v in sets.items()}
    for name, fn in alts.items():
        cells = [f"{cpu_per_page(cycling(fn, texts[label]), sets[label], rounds):.2f} ms" for label in sets]
        print(f"| {name} | " + " | ".join(cells) + " |")


def cycling(fn: Callable[[str], Any], pages: list[str]) -> Callable[[FetchOk], None]:
    """Work for :func:`cpu_per_page` that converts the next of ``pages`` (decoded text, which is
    what the alternatives take) on each call, whichever fetch result it is handed."""
    turn = itertools.count()

    def run(_: FetchOk) -> None:
        fn(pages[next(turn) % len(pages)])

    return run


def alternatives() -> dict[str, Callable[[str], Any]]:
    """The libraries chosen, then every installed alternative, each as a text -> result call."""
    import html_to_markdown
    from selectolax.lexbor import LexborHTMLParser

    alts: dict[str, Callable[[str], Any]] = {
        "markdown: html-to-markdown": lambda h: html_to_markdown.convert(
            h, html_to_markdown.ConversionOptions(extract_metadata=False)),
        "text: html-to-markdown plain": lambda h: html_to_markdown.convert(
            h, html_to_markdown.ConversionOptions(extract_metadata=False, output_format="plain")),
        "parse: selectolax": LexborHTMLParser,
    }
    for optional in (_markdownify, _html2text, _trafilatura, _inscriptis, _html_text, _resiliparse):
        with contextlib.suppress(ImportError):  # not installed: not in the table
            alts |= optional()
    return alts


def _markdownify() -> dict[str, Callable[[str], Any]]:
    import markdownify

    return {"markdown: markdownify": markdownify.markdownify}


def _html2text() -> dict[str, Callable[[str], Any]]:
    import html2text

    return {"markdown: html2text": html2text.html2text}


def _trafilatura() -> dict[str, Callable[[str], Any]]:
    import trafilatura

    return {"markdown: trafilatura": lambda h: trafilatura.extract(h, output_format="markdown"),
            "text: trafilatura": trafilatura.extract}


def _inscriptis() -> dict[str, Callable[[str], Any]]:
    import inscriptis

    return {"text: inscriptis": inscriptis.get_text}


def _html_text() -> dict[str, Callable[[str], Any]]:
    import html_text

    return {"text: html-text": html_text.extract_text}


def _resiliparse() -> dict[str, Callable[[str], Any]]:
    from resiliparse.extract.html2text import extract_plain_text
    from resiliparse.parse.html import HTMLTree

    return {"text: resiliparse": lambda h: extract_plain_text(HTMLTree.parse(h))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--pages", help="a directory of real HTML pages to add to the set")
    ap.add_argument("--limit", type=int, default=40, help="at most this many pages from --pages")
    ap.add_argument("--sizes", default=",".join(map(str, SIZES_KB)), help="article sizes, KB")
    ap.add_argument("--loop", action="store_true", help="also measure event-loop gaps")
    ap.add_argument("--candidates", action="store_true", help="also time installed alternatives")
    args = ap.parse_args()
    sets = page_set(args.pages, args.limit, tuple(int(k) for k in args.sizes.split(",")))
    print(f"CPU per page (median of {args.rounds} rounds; ratio to the plain html path):\n")
    table(sets, args.rounds)
    if args.loop:
        label, some = next((k, v) for k, v in sets.items() if k == "article 200 KB" or k == list(sets)[-1])
        pages = some * 4
        print(f"\nEvent-loop gaps (1 ms ticker) while all formats of {len(pages)} pages ({label}) "
              "are computed:\n")
        print("| where | worst gap | median gap |\n|---|---|---|")
        for where in ("inline", "thread"):
            worst, median = asyncio.run(loop_gaps(pages, where))
            label = "on the loop" if where == "inline" else "converter threads (as the scraper)"
            print(f"| {label} | {worst:.1f} ms | {median:.2f} ms |")
    if args.candidates:
        print("\nAlternatives (conversion only):\n")
        candidates(sets, args.rounds)


if __name__ == "__main__":
    main()
