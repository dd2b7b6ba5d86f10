"""The ``scrapeledger`` command: a subcommand per component, ``up``, the client, the replay CLI.

The components are ``broker``, ``edge``, ``validator``, ``scraper`` and ``state``; ``up`` runs
them all, ``submit`` is the client, ``keygen`` makes a credentials key, ``replay`` is the
operator's CLI (``replay.cli``).

The top layer: it imports every app (lazily, inside its subcommand), and nothing below it
imports it (``tests/unit/test_layering.py``). Only entry points configure logging (one line per
job transition, to stderr); libraries just log.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import os
import sys
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from .errors import ScrapeledgerError


def _quiet_authlib() -> None:
    """quixstreams -> confluent_kafka.schema_registry -> Authlib warns that its httpx module is
    deprecated, at import, in every processor: not ours to fix, and noise on every start.
    ``authlib.deprecate`` installs an "always" filter for its warnings when imported, which would
    sit in front of an ignore filter installed before it, so it is imported first."""
    with contextlib.suppress(ImportError):  # a dependency of confluent-kafka's schema registry
        importlib.import_module("authlib.deprecate")  # for its filter, which ours must precede
    warnings.filterwarnings("ignore", message="The httpx module is deprecated")


_quiet_authlib()

if TYPE_CHECKING:
    from .settings import Settings

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Scrapeledger: scrape jobs over WebSocket, recorded in an event ledger on Kafka.",
)


def _version(value: bool) -> None:
    if value:
        from . import __version__

        typer.echo(f"scrapeledger {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Scrapeledger: scrape jobs over WebSocket, recorded in an event ledger on Kafka."""


def _logging(level: str = "INFO") -> None:
    logging.basicConfig(
        level=os.environ.get("SCRAPELEDGER_LOG_LEVEL", level),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # librdkafka-level chatter stays out of the job log
    logging.getLogger("quixstreams").setLevel(logging.WARNING)
    # httpx logs every request with its whole URL at INFO: per-fetch lines are DEBUG here
    logging.getLogger("httpx").setLevel(logging.WARNING)
    from . import redact

    for handler in logging.getLogger().handlers:
        redact.install(handler)  # no whole job id, URL query or user info in any line
    from .outage import quiet_kafka_chatter

    quiet_kafka_chatter()  # a lost broker: a few lines per back-off step, not thousands


def _settings() -> Settings:
    from .settings import Settings

    return Settings()


@app.command()
def broker(
    port: Annotated[int, typer.Option(help="Client port (0 picks a free one).")] = 9092,
    data_dir: Annotated[Path | None, typer.Option(help="Keep the log here (default: a temp dir).")] = None,
    nodes: Annotated[int, typer.Option(
        min=1, help="Nodes (combined broker+controller); 3 gives replication factor 3. "
        "Node i listens on PORT+i-1 (any free ports with --port 0).")] = 1,
) -> None:
    """Run a local Apache Kafka (KRaft) in the foreground: one node, or a cluster."""
    from .broker import run_foreground

    _logging()
    raise typer.Exit(run_foreground(port, data_dir, nodes))


@app.command()
def edge(
    port: Annotated[int | None, typer.Option(help="WebSocket port (default EDGE_PORT).")] = None,
) -> None:
    """Run one WebSocket edge pod."""
    from ws_edge import serve

    _logging()
    asyncio.run(serve(_settings(), port))


@app.command()
def validator() -> None:
    """Run the validator processor."""
    from processors import validator as processor

    _logging()
    processor.main(_settings())


@app.command()
def scraper() -> None:
    """Run the scraper processor."""
    from processors import scraper as processor

    _logging()
    processor.main(_settings())


@app.command()
def state() -> None:
    """Run the state materializer."""
    from processors import materializer as processor

    _logging()
    processor.main(_settings())


@app.command()
def up(
    port: Annotated[int, typer.Option(help="Edge WebSocket port (0 picks a free one).")] = 3001,
    kafka_port: Annotated[int, typer.Option(help="Port of the local broker (0 picks a free one).")] = 9092,
    metrics_port: Annotated[int, typer.Option(
        help="Metrics port of the state processor; validator and scraper use the next two "
        "(0 picks free ones).")] = 9100,
    data_dir: Annotated[Path, typer.Option(help="Local broker and state data.")] = Path(".scrapeledger"),
) -> None:
    """Run the whole service locally: broker (unless KAFKA_BOOTSTRAP_SERVERS), processors, one edge."""
    from .supervisor import run_stack

    _logging()
    raise typer.Exit(run_stack(edge_port=port, kafka_port=kafka_port, metrics_base=metrics_port,
                               data_dir=data_dir))


@app.command()
def submit(
    urls: Annotated[list[str] | None, typer.Argument(help="Pages to fetch.", show_default=False)] = None,
    file: Annotated[
        str | None, typer.Option("--file", "-f", help="Read URLs from F, one per line ('-': stdin).")
    ] = None,
    server: Annotated[str, typer.Option(help="Edge URL (ws://, wss://; http:// is taken as ws://).")] = (
        "ws://127.0.0.1:3001"
    ),
    resume: Annotated[str | None, typer.Option(help="Resume this job id instead of submitting.")] = None,
    header: Annotated[
        list[str] | None, typer.Option("--header", "-H", help="Request header K:V (repeatable).")
    ] = None,
    timeout: Annotated[float | None, typer.Option(help="Fetch timeout per job, seconds (timeout_s).")] = None,
    proxy: Annotated[str | None, typer.Option(help="Fetch through this proxy URL.")] = None,
    formats: Annotated[
        str | None,
        typer.Option(help="Output formats, comma-separated: html (default), markdown, text, links, metadata"),
    ] = None,
    ref: Annotated[str | None, typer.Option(help="Ref echoed in results (R-1, R-2... in a batch).")] = None,
    concurrency: Annotated[int, typer.Option("--concurrency", "-c", help="Jobs in flight at once.")] = 16,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON result per line, in order.")] = False,
    idempotency_key: Annotated[str | None, typer.Option(
        help="The same key names the same job: it never runs twice (-1, -2... in a batch).")] = None,
    cancel: Annotated[str | None, typer.Option(help="Cancel this job id instead of submitting.")] = None,
    api_key: Annotated[str | None, typer.Option(
        envvar="SCRAPELEDGER_API_KEY", show_envvar=True, show_default=False,
        help="API key, for an edge with SCRAPELEDGER_API_KEYS set (sent as a Bearer header).")] = None,
) -> None:
    """Submit URL(s) (or --resume JOB_ID) and print the results in input order.

    Exit codes: 0 every job succeeded, 1 some job did not, 2 bad usage, 3 no edge reachable.
    """
    from .submit import SubmitOptions, run

    raise typer.Exit(
        run(
            SubmitOptions(
                urls=urls or (), file=file, resume=resume, server=server, headers=header or (),
                timeout_s=timeout, proxy=proxy, ref=ref, concurrency=concurrency, as_json=as_json,
                formats=[f.strip() for f in formats.split(",") if f.strip()] if formats is not None else None,
                idempotency_key=idempotency_key, cancel=cancel, api_key=api_key,
            )
        )
    )


@app.command()
def keygen(
    file: Annotated[Path | None, typer.Option(help="Create this key file (0600) unless it exists.")] = None,
) -> None:
    """Print a new key for SCRAPELEDGER_SECRET_KEYS (or create a SCRAPELEDGER_SECRET_KEYS_FILE)."""
    from .vault import ensure_key_file, new_key

    if file is None:
        typer.echo(new_key())
        return
    created = ensure_key_file(file)
    typer.echo(f"{'created' if created else 'kept the existing'} key file {file}", err=True)


def _register_replay() -> None:
    try:
        from replay.cli import app as replay_app
    except ImportError:  # pragma: no cover - replay is part of the distribution
        return
    app.add_typer(replay_app, name="replay", callback=_replay_logging)


def _replay_logging() -> None:
    """Inspect and re-drive the job ledger."""
    _logging("WARNING")


_register_replay()


def main() -> None:
    try:
        app()
    except ScrapeledgerError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
