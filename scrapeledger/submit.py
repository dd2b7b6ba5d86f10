"""``scrapeledger submit``: the client command, kept apart from ``cli.py`` (which only declares it).

Input: URLs as arguments and/or ``--file F`` (one per line; blank lines and ``#`` comments
skipped; ``-`` reads stdin), or one ``--resume JOB_ID``. Output, always in input order:

* one URL given as an argument (the original use): ``accepted JOB_ID`` and a status line on
  stderr, the page's HTML on stdout; a failure prints ``JOB_ID STATUS: CODE: MESSAGE`` on stdout;
* a batch (several URLs, or ``--file``): one line per job on stdout, a progress bar on stderr
  when stderr is a terminal, and a summary line on stderr;
* ``--json``: one result object per line (JSON Lines) on stdout, in input order, and in a batch
  the summary line on stderr.

Exit codes (:data:`EXIT_CODES`): 0 every job succeeded; 1 at least one did not (failed, rejected,
dead-lettered, expired, refused by the edge, unknown on resume, no result in time); 2 bad usage
(options, ``--server``, an unreadable ``--file``, no URL); 3 no edge could be reached (at the
start, or for good after the connection dropped: the jobs left say ``unreachable``); 130 Ctrl-C.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import orjson

import ledger
from ws_edge import Client, EdgeUnreachableError, JobSpec, UnauthorizedError
from ws_edge._batch import CLIENT_STATUSES, Item, Outcome, Resume, run_batch

from .errors import ConfigError, ScrapeledgerError

EXIT_OK, EXIT_JOB_FAILED, EXIT_USAGE, EXIT_UNREACHABLE, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
EXIT_CODES = {
    EXIT_OK: "every job succeeded",
    EXIT_JOB_FAILED: "at least one job did not succeed",
    EXIT_USAGE: "bad usage: options, --server, --file, no URL",
    EXIT_UNREACHABLE: "no edge could be reached",
    EXIT_INTERRUPTED: "Ctrl-C (SIGINT)",
}

FIRST_CONNECT_S = 3.0
"""How long the first connect may try (with back-off) before the command gives up: long enough
for an edge that is just starting, short enough that a dead one is reported at once."""

_MAIN_STATUSES = ("succeeded", "failed", "rejected", "dead_lettered")


@dataclass(frozen=True)
class SubmitOptions:
    urls: Sequence[str] = ()
    file: str | None = None
    resume: str | None = None
    server: str = "ws://127.0.0.1:3001"
    headers: Sequence[str] = ()
    timeout_s: float | None = None
    proxy: str | None = None
    formats: Sequence[str] | None = None
    ref: str | None = None
    concurrency: int = 16
    as_json: bool = False
    idempotency_key: str | None = None
    """The job's key (``-1``, ``-2``... appended in a batch): a repeated run never runs twice."""
    cancel: str | None = None
    api_key: str | None = None
    """For an edge with API keys on (``--api-key`` or ``SCRAPELEDGER_API_KEY``); never printed."""
    stdin: IO[str] = field(default_factory=lambda: sys.stdin)


def run(opts: SubmitOptions) -> int:
    """Run the command; return its exit code (bad usage is one ``error:`` line and 2)."""
    if opts.cancel is not None:
        return _cancel(opts)
    try:
        items, single = _items(opts)
        # refused before anything is sent: a bad --server is a usage error, not a connect failure
        client = Client(opts.server, first_connect_s=FIRST_CONNECT_S, connect_timeout=5.0,
                        api_key=opts.api_key)
    except ConfigError as exc:
        _err(f"error: {exc}")
        return EXIT_USAGE
    printer = _Printer(items, single=single, as_json=opts.as_json)
    try:
        outcomes = asyncio.run(_run(client, items, opts.concurrency, printer))
    except UnauthorizedError as exc:
        _err(f"error: {exc}")
        return EXIT_USAGE
    except EdgeUnreachableError as exc:
        _err(f"error: {exc} (is the edge running? `scrapeledger up` starts one)")
        return EXIT_UNREACHABLE
    except KeyboardInterrupt:
        # accepted jobs are durable and go on; their ids were printed (or are in the ledger)
        _err("interrupted: accepted jobs still run; `scrapeledger submit --resume JOB_ID` fetches one")
        return EXIT_INTERRUPTED
    return exit_code(outcomes)


def _cancel(opts: SubmitOptions) -> int:
    """``--cancel JOB_ID``: 0 cancelled (or already), 1 it had finished or is unknown."""
    if opts.urls or opts.file is not None or opts.resume is not None:
        _err("error: give --cancel JOB_ID alone")
        return EXIT_USAGE

    async def go() -> None:
        async with Client(opts.server, first_connect_s=FIRST_CONNECT_S, connect_timeout=5.0,
                          api_key=opts.api_key) as client:
            await client.cancel(str(opts.cancel))

    try:
        asyncio.run(go())
    except UnauthorizedError as exc:
        _err(f"error: {exc}")
        return EXIT_USAGE
    except EdgeUnreachableError as exc:
        _err(f"error: {exc}")
        return EXIT_UNREACHABLE
    except ScrapeledgerError as exc:
        _err(f"{opts.cancel}: {exc}")
        return EXIT_JOB_FAILED
    _err(f"cancelled {opts.cancel}")
    return EXIT_OK


def exit_code(outcomes: Iterable[Outcome]) -> int:
    codes = [EXIT_OK if o.get("status") == "succeeded" else EXIT_JOB_FAILED for o in outcomes]
    if any(_code(o) == "unreachable" for o in outcomes):
        return EXIT_UNREACHABLE
    return max(codes, default=EXIT_OK)


def summary(outcomes: Sequence[Outcome], elapsed_s: float) -> str:
    """``20 jobs in 3.1 s: 17 succeeded, 1 failed, 1 rejected, 1 dead_lettered``, plus any other
    status that occurred (``expired``, ``error``...): the four main ones always, others if > 0."""
    counts = Counter(str(o.get("status")) for o in outcomes)
    others = sorted(s for s in counts if s not in _MAIN_STATUSES)
    known = [*sorted(ledger.TERMINAL - set(_MAIN_STATUSES)), *CLIENT_STATUSES]
    others.sort(key=lambda s: (known.index(s) if s in known else len(known), s))
    parts = [f"{counts[s]} {s}" for s in (*_MAIN_STATUSES, *others)]
    return f"{len(outcomes)} jobs in {elapsed_s:.1f} s: " + ", ".join(parts)


# --- input -----------------------------------------------------------------------------------


def _items(opts: SubmitOptions) -> tuple[list[Item], bool]:
    if opts.concurrency < 1:
        raise ConfigError("--concurrency must be at least 1")
    urls = list(opts.urls)
    if opts.file is not None:
        urls += list(_read_urls(opts.file, opts.stdin))
    if opts.resume is not None:
        if urls:
            raise ConfigError("give URLs or --resume JOB_ID, not both")
        return [Item(Resume(opts.resume), opts.ref)], True
    if not urls:
        raise ConfigError("give a URL (or several, or --file F, or --resume JOB_ID)")
    headers = parse_headers(opts.headers)
    if opts.timeout_s is not None and opts.timeout_s <= 0:
        raise ConfigError("--timeout must be a positive number of seconds")
    single = len(urls) == 1 and opts.file is None
    items = []
    for n, url in enumerate(urls, 1):
        formats = tuple(opts.formats) if opts.formats is not None else None
        key = opts.idempotency_key
        if key is not None and not single:
            key = f"{key}-{n}"
        spec = JobSpec(url=url, headers=headers, timeout_s=opts.timeout_s, proxy=opts.proxy,
                       formats=formats, idempotency_key=key)
        ref = opts.ref if opts.ref is None or single else f"{opts.ref}-{n}"
        items.append(Item(spec, ref))
    return items, single


def _read_urls(file: str, stdin: IO[str]) -> Iterator[str]:
    """One URL per line; blank lines and lines starting with ``#`` are skipped."""
    if file == "-":
        text = stdin.read()
    else:
        try:
            text = Path(file).read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read --file {file}: {exc}") from None
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            yield line


def parse_headers(values: Iterable[str]) -> dict[str, str]:
    """``K:V`` pairs (``--header 'Accept: text/html'``); a later one with the same name wins."""
    out: dict[str, str] = {}
    for value in values:
        name, sep, rest = value.partition(":")
        if not sep or not name.strip():
            raise ConfigError(f"--header {value!r} is not NAME:VALUE")
        out[name.strip()] = rest.strip()
    return out


# --- running and output ----------------------------------------------------------------------


async def _run(client: Client, items: list[Item], concurrency: int, printer: _Printer) -> list[Outcome]:
    async with client:
        with printer.progress():
            return await run_batch(
                client, items, concurrency=concurrency, on_accepted=printer.accepted, on_done=printer.done
            )


class _Printer:
    """Prints outcomes in input order as soon as every earlier one is in, progress and summary."""

    def __init__(self, items: Sequence[Item], *, single: bool, as_json: bool) -> None:
        self.items = items
        self.single = single
        self.as_json = as_json
        self.results: dict[int, Outcome] = {}
        self.next = 0
        self.started = time.monotonic()
        self._bar: Any = None
        self._task: Any = None

    @contextlib.contextmanager
    def progress(self) -> Iterator[None]:
        if self.single or not sys.stderr.isatty():
            yield
            self._summary()
            return
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        console = Console(stderr=True)
        bar = Progress(
            TextColumn("submit"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[counts]}"),
            TimeElapsedColumn(), console=console, redirect_stdout=sys.stdout.isatty(), redirect_stderr=False,
        )
        self._bar, self._task = bar, bar.add_task("jobs", total=len(self.items), counts="")
        with bar:
            yield
        self._summary()

    def accepted(self, i: int, job_id: str) -> None:
        if self.single:  # as before batches existed, --json or not
            _err(f"accepted {job_id}")

    def done(self, i: int, outcome: Outcome) -> None:
        self.results[i] = outcome
        if self._bar is not None:
            counts = Counter(str(o.get("status")) for o in self.results.values())
            self._bar.update(
                self._task, advance=1, counts=" ".join(f"{n} {s}" for s, n in sorted(counts.items()))
            )
        while self.next in self.results:
            self._print(self.results[self.next])
            self.next += 1

    def _print(self, o: Outcome) -> None:
        if self.as_json:
            _out(orjson.dumps(o).decode())
        elif o.get("status") == "succeeded":
            body = _page(o)
            line = (
                f"{o['job_id']} {o['http_status']} {o['final_url']} "
                f"({o['elapsed_ms']:.0f} ms, {len(body)} chars)"
            )
            if self.single:
                _err(line)
                _out(body)
            else:
                _out(f"{o['job_id']} succeeded {line.split(' ', 1)[1]}")
        else:
            error = o.get("error") or {}
            line = f"{o.get('job_id') or '-'} {o.get('status')}: {error.get('code')}: {error.get('message')}"
            _out(line if self.single else f"{line} ({o.get('url')})")

    def _summary(self) -> None:
        if not self.single:
            outcomes = [self.results[i] for i in sorted(self.results)]
            _err(summary(outcomes, time.monotonic() - self.started))


def _page(o: Outcome) -> str:
    """What a single job's plain output prints: the first of html, markdown, text the result
    carries (``--formats``), else its links and metadata as JSON."""
    for name in ("html", "markdown", "text"):
        if name in o:
            return str(o[name])
    return orjson.dumps({k: o[k] for k in ("links", "metadata") if k in o}).decode()


def _code(o: Outcome) -> str | None:
    error = o.get("error")
    return error.get("code") if isinstance(error, dict) else None


def _out(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _err(line: str) -> None:
    sys.stderr.write(line + "\n")
    sys.stderr.flush()
