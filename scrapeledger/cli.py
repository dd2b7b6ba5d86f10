"""The ``scrapeledger`` command: one subcommand per component, plus the client and the replay CLI.

Only entry points configure logging (one line per job transition, to stderr); libraries just log.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import orjson
import typer

from .errors import ScrapeledgerError

# quixstreams -> confluent_kafka.schema_registry -> authlib warns about httpx at import; not ours
warnings.filterwarnings("ignore", message="The httpx module is deprecated")

if TYPE_CHECKING:
    from .settings import Settings

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Scrapeledger: scrape jobs over WebSocket, recorded in an event ledger on Kafka.",
)


def _logging(level: str = "INFO") -> None:
    logging.basicConfig(
        level=os.environ.get("SCRAPELEDGER_LOG_LEVEL", level),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # librdkafka-level chatter stays out of the job log
    logging.getLogger("quixstreams").setLevel(logging.WARNING)


def _settings() -> Settings:
    from .settings import Settings

    return Settings()


@app.command()
def broker(
    port: Annotated[int, typer.Option(help="Client port (0 picks a free one).")] = 9092,
    data_dir: Annotated[Path | None, typer.Option(help="Keep the log here (default: a temp dir).")] = None,
) -> None:
    """Run a local single-node Apache Kafka (KRaft) in the foreground."""
    from .broker import run_foreground

    _logging()
    raise typer.Exit(run_foreground(port, data_dir))


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
    from processors import validator as v

    _logging()
    v.main(_settings())


@app.command()
def scraper() -> None:
    """Run the scraper processor."""
    from processors import scraper as s

    _logging()
    s.main(_settings())


@app.command()
def state() -> None:
    """Run the state materializer."""
    from processors import materializer as m

    _logging()
    m.main(_settings())


@app.command()
def up(
    port: Annotated[int, typer.Option(help="Edge WebSocket port.")] = 3001,
    kafka_port: Annotated[int, typer.Option(help="Port of the local broker.")] = 9092,
    data_dir: Annotated[Path, typer.Option(help="Local broker and state data.")] = Path(".scrapeledger"),
) -> None:
    """Run the whole service locally: broker (unless KAFKA_BOOTSTRAP_SERVERS), processors, one edge."""
    from .supervisor import run_stack

    _logging()
    raise typer.Exit(run_stack(edge_port=port, kafka_port=kafka_port, data_dir=data_dir))


@app.command()
def submit(
    url: Annotated[str | None, typer.Argument(help="The page to fetch.")] = None,
    server: Annotated[str, typer.Option(help="Edge WebSocket URL.")] = "ws://127.0.0.1:3001",
    resume: Annotated[str | None, typer.Option(help="Resume this job id instead of submitting.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the whole result frame as JSON.")] = False,
) -> None:
    """Submit URL (or --resume JOB_ID) and print the result."""
    from ws_edge import Client

    if (url is None) == (resume is None):
        raise typer.BadParameter("give a URL or --resume JOB_ID")

    async def go() -> dict[str, object]:
        async with Client(server) as client:
            if resume is not None:
                return await client.resume(resume)
            assert url is not None
            job_id = await client.submit(url)
            typer.echo(f"accepted {job_id}", err=True)
            return await client.result(job_id)

    try:
        frame = asyncio.run(go())
    except ScrapeledgerError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    if as_json:
        typer.echo(orjson.dumps(frame, option=orjson.OPT_INDENT_2).decode())
    elif frame.get("status") == "succeeded":
        typer.echo(
            f"{frame['job_id']} {frame['http_status']} {frame['final_url']} "
            f"({frame['elapsed_ms']:.0f} ms, {len(str(frame['html']))} chars)",
            err=True,
        )
        typer.echo(frame["html"])
    else:
        error = frame.get("error") or {}
        assert isinstance(error, dict)
        typer.echo(f"{frame['job_id']} {frame['status']}: {error.get('code')}: {error.get('message')}")
        raise typer.Exit(1)


def _register_replay() -> None:
    try:
        from replay.cli import app as replay_app
    except ImportError:  # pragma: no cover - replay is part of the distribution
        return
    app.add_typer(replay_app, name="replay")


_register_replay()


def main() -> None:
    try:
        app()
    except ScrapeledgerError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
