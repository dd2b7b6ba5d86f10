"""``scrapeledger replay``: history, state, rebuild, redrive, tail, expire. Diagnostics go to stderr."""

from __future__ import annotations

import datetime as dt
import signal
import sys
import threading
from typing import Annotated, Any

import orjson
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

import ledger
from scrapeledger.clusters import attach
from scrapeledger.errors import ScrapeledgerError, UnknownJobError
from scrapeledger.redact import job_ref, url_ref
from scrapeledger.settings import Settings
from scrapeledger.vault import Vault

# the readers and expiry through the package: they live below replay (scrapeledger.reader,
# processors.expiry), which re-exports them
from . import current_state, expire, history
from ._rebuild import rebuild
from ._redrive import redrive, redrive_events, select, unreadable
from ._tail import LedgerTail, PoisonRecord

app = typer.Typer(no_args_is_help=True, help="Inspect and re-drive the job ledger.")
err = Console(stderr=True)


REDRIVE_STATUSES = ("dead_lettered", "failed")
"""The statuses ``redrive --status`` selects among (a job in any other status is not stuck)."""


def _settings() -> Settings:
    """The settings, once the broker answered: a broker that is down fails the command at once,
    with one line, instead of after librdkafka's connection errors for every retry."""
    settings = Settings()
    try:
        attach(settings, "replay", timeout_s=10, fail_fast=True)
    except ScrapeledgerError as exc:
        raise _fail(exc) from None
    return settings


def _when(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).isoformat(timespec="milliseconds")


def _parse_time(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is neither epoch seconds nor an ISO time") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed.timestamp()


def _details(event: ledger.Event) -> str:
    """One line of an event's payload for people: no headers, no credentials (only that there
    are some), URLs without query strings or user info (``--json`` has the whole event)."""
    payload = ledger.event_to_dict(event)["payload"]
    keep = {k: v for k, v in payload.items() if v not in (None, {}, "") and k != "headers"}
    if "sealed" in keep:
        keep["sealed"] = "yes"
    for name in ("url", "final_url", "proxy"):
        if isinstance(keep.get(name), str):
            keep[name] = url_ref(keep[name])
    return " ".join(f"{k}={v}" for k, v in keep.items())


def _fail(exc: ScrapeledgerError) -> typer.Exit:
    err.print(f"[red]error:[/red] {exc}")
    return typer.Exit(2)


@app.command("history")
def history_cmd(
    job_id: str,
    as_json: Annotated[bool, typer.Option("--json", help="Print events as JSON lines.")] = False,
) -> None:
    """Show JOB_ID's events as a timeline."""
    try:
        events = history(_settings(), job_id)
    except UnknownJobError as exc:
        raise _fail(exc) from None
    except ScrapeledgerError as exc:
        raise _fail(exc) from None
    if as_json:
        for e in events:
            sys.stdout.write(orjson.dumps(ledger.event_to_dict(e)).decode() + "\n")
        return
    state = ledger.fold_all(events)[job_id]
    # a job id is the capability to read the job's result: the human view names it by prefix
    title = f"job {job_ref(job_id)}: {state.status} after {state.attempts} attempt(s)"
    columns = ("at (UTC)", "event", "attempt", "source", "details")
    rows = [(_when(e.at), e.TYPE, str(e.attempt or ""), e.source, _details(e)) for e in events]
    if not sys.stdout.isatty():  # a pipe or file: whole lines, not a table cut to 80 columns
        sys.stdout.write(f"# {title}\n# " + "\t".join(columns) + "\n")
        sys.stdout.writelines("\t".join(row) + "\n" for row in rows)
        return
    table = Table(title=title)
    for col in columns:
        table.add_column(col)
    for row in rows:
        table.add_row(*row)
    Console().print(table)


@app.command("rebuild")
def rebuild_cmd(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Fold only; write nothing.")] = False,
) -> None:
    """Recompute job-state from the ledger (safe while the service runs)."""
    settings = _settings()
    with Progress(
        TextColumn("folding ledger"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
        console=err,
    ) as progress:
        task = progress.add_task("fold", total=None)
        try:
            result = rebuild(
                settings,
                write=not dry_run,
                on_total=lambda n: progress.update(task, total=n),
                on_event=lambda: progress.advance(task),
            )
        except ScrapeledgerError as exc:
            raise _fail(exc) from None
    for change in result.changes:
        typer.echo(f"{'would write' if dry_run else 'wrote'} {change.job_id} "
                   f"{change.before or '(none)'} -> {change.after}")
    typer.echo(
        f"rebuilt {result.jobs} jobs from {result.events} events in {result.seconds:.2f}s "
        f"({result.events_per_s:,.0f} events/s); {'would write' if dry_run else 'wrote'} "
        f"{result.written}, unchanged {result.unchanged}, poison {result.poison}"
    )


@app.command("redrive")
def redrive_cmd(
    job: Annotated[list[str] | None, typer.Option("--job", help="Only this job id (repeatable).")] = None,
    since: Annotated[str | None, typer.Option(help="Finished at or after (ISO or epoch).")] = None,
    until: Annotated[str | None, typer.Option(help="Finished at or before (ISO or epoch).")] = None,
    code: Annotated[list[str] | None, typer.Option("--code", help="Only this error code.")] = None,
    status: Annotated[list[str] | None, typer.Option(
        "--status", help=f"Only this status: {' or '.join(REDRIVE_STATUSES)} (repeatable).")] = None,
    reason: Annotated[str, typer.Option(help="Recorded in each JobRedriven event.")] = "manual redrive",
    dry_run: Annotated[bool, typer.Option("--dry-run", help="List what would be redriven.")] = False,
) -> None:
    """Send dead-lettered or failed jobs back into the pipeline."""
    wrong = sorted(set(status or ()) - set(REDRIVE_STATUSES))
    if wrong:
        raise typer.BadParameter(
            f"{', '.join(wrong)} is not a status redrive selects; use {' or '.join(REDRIVE_STATUSES)}",
            param_hint="--status",
        )
    settings = _settings()
    try:
        picked = select(
            settings, job_ids=job or (), since=_parse_time(since), until=_parse_time(until),
            codes=code or (), statuses=status or REDRIVE_STATUSES,
        )
        if job:
            missing = set(job) - {s.job_id for s in picked}
            for job_id in sorted(missing):
                err.print(f"[yellow]skipped[/yellow] {job_id}: unknown or not failed/dead-lettered")
        vault = Vault.from_settings(settings)
        locked = {s.job_id for s in unreadable(picked, vault)}
        for job_id in sorted(locked):
            err.print(f"[yellow]skipped[/yellow] {job_id}: its credentials were sealed with a key "
                      "that is no longer configured (SCRAPELEDGER_SECRET_KEYS)")
        picked = [s for s in picked if s.job_id not in locked]
        for s in picked:
            code_txt = s.error.code if s.error else "-"
            verb = "would redrive" if dry_run else "redrive"
            typer.echo(f"{verb} {s.job_id} {s.status} {code_txt} {url_ref(s.url)}")
        if not dry_run and picked:
            redrive(settings, redrive_events(
                picked, source=f"replay@{settings.pod_name}", reason=reason, vault=vault,
            ))
    except ScrapeledgerError as exc:
        raise _fail(exc) from None
    typer.echo(f"{len(picked)} job(s) {'would be ' if dry_run else ''}redriven")


@app.command("tail")
def tail_cmd(
    event_type: Annotated[list[str] | None, typer.Option("--type", help="Only this event type.")] = None,
    job: Annotated[str | None, typer.Option(help="Only this job id.")] = None,
    from_beginning: Annotated[bool, typer.Option("--from-beginning")] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    max_events: Annotated[int | None, typer.Option("--max", help="Stop after N events.")] = None,
) -> None:
    """Follow the ledger live."""
    settings = _settings()
    types = set(event_type or ())
    unknown = types - set(ledger.EVENT_TYPES)
    if unknown:
        raise typer.BadParameter(f"unknown event type(s): {', '.join(sorted(unknown))}")
    stopping = _stop_on_signals()
    try:
        with LedgerTail(settings, types=types, job_id=job, from_beginning=from_beginning) as tail:
            tail.start()
            err.print(f"tailing {tail.topic}" + (" from the beginning" if from_beginning else ""))
            for item in tail.records(stopping.is_set, max_events):
                _print_tailed(item, as_json)
    except ScrapeledgerError as exc:
        raise _fail(exc) from None


def _stop_on_signals() -> threading.Event:
    """Set by SIGTERM or SIGINT: a tail ends between polls, its consumer closed, instead of dying."""
    stopping = threading.Event()

    def on_signal(*_: Any) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    return stopping


def _print_tailed(item: ledger.Event | PoisonRecord, as_json: bool) -> None:
    """An event on stdout (a line as it arrives, for pipes); a poison record on stderr."""
    if isinstance(item, PoisonRecord):
        err.print(f"[red]poison[/red] {item.topic}[{item.partition}]@{item.offset}: {item.error}")
        return
    if as_json:
        sys.stdout.write(orjson.dumps(ledger.event_to_dict(item)).decode() + "\n")
    else:
        sys.stdout.write(
            f"{_when(item.at)} {job_ref(item.job_id)} {item.TYPE} a{item.attempt} "
            f"{item.source} {_details(item)}\n"
        )
    sys.stdout.flush()


@app.command("expire")
def expire_cmd() -> None:
    """Expire finished jobs older than the replay window (the materializer also does this)."""
    try:
        expired = expire(_settings())
    except ScrapeledgerError as exc:
        raise _fail(exc) from None
    typer.echo(f"{len(expired)} job(s) expired")


@app.command("state")
def state_cmd(job_id: str) -> None:
    """Print JOB_ID's current state from the compacted job-state topic, as JSON."""
    try:
        state = current_state(_settings(), job_id)
    except ScrapeledgerError as exc:
        raise _fail(exc) from None
    if state is None:
        raise _fail(UnknownJobError(f"no state for job {job_id}"))
    typer.echo(orjson.dumps(state.to_dict(), option=orjson.OPT_INDENT_2).decode())
