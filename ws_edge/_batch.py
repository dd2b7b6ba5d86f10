"""Many jobs over one client connection, a bounded number in flight, one outcome per job in order.

An *outcome* is a plain dict: the edge's ``result`` frame as it came, or, when no result came, an
object of the same shape made here (``status`` ``error`` or ``unknown_job`` with ``error:
{code, message}``), so a caller (the CLI's JSON Lines, a script) handles one kind of thing. Every
outcome has ``url`` and ``status``; ``ref`` is the caller's ref when it gave one and absent
otherwise (the frames' own refs are the client's bookkeeping). Client-side ``error`` codes:
``unreachable`` (no edge answered, at the first connect or after a drop), ``client_timeout`` (a
reply or result did not come within the client's bound), ``client_error`` (any other failure of
the client), else the code of the edge's ``error`` frame (``bad_frame``, ``draining``...; a
``submit_failed`` or ``rate_limited`` submit is sent again by the client, not reported).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from scrapeledger.errors import (
    ClientError,
    ClientTimeoutError,
    EdgeUnreachableError,
    ScrapeledgerError,
    UnknownJobError,
)

from ._client import Client
from ._job import JobSpec

Outcome = dict[str, Any]

CLIENT_STATUSES = ("error", "unknown_job")
"""Statuses an outcome can have besides the ledger's terminal ones (no result came)."""


@dataclass(frozen=True, slots=True)
class Resume:
    """Ask for the result of a job submitted earlier (anywhere), by id."""

    job_id: str


Request = JobSpec | Resume


@dataclass(frozen=True, slots=True)
class Item:
    request: Request
    ref: str | None = None


async def run_batch(
    client: Client,
    items: Sequence[Item],
    *,
    concurrency: int,
    on_accepted: Callable[[int, str], None] | None = None,
    on_done: Callable[[int, Outcome], None] | None = None,
) -> list[Outcome]:
    """Run every item, at most ``concurrency`` at once; the outcomes in the order of ``items``.

    ``on_done`` is called as each one ends (in completion order), for progress and for printing
    in order as soon as a prefix is complete. Never raises for one job's failure: that job's
    outcome says what went wrong and the others go on.
    """
    if concurrency < 1:
        raise ValueError("concurrency must be at least 1")
    gate = asyncio.Semaphore(concurrency)
    outcomes: list[Outcome | None] = [None] * len(items)

    async def one(i: int, item: Item) -> None:
        def accepted(job_id: str) -> None:
            if on_accepted is not None:
                on_accepted(i, job_id)

        async with gate:
            outcome = await _outcome(client, item, accepted)
        if item.ref is not None:
            outcome["ref"] = item.ref
        else:
            outcome.pop("ref", None)
        outcomes[i] = outcome
        if on_done is not None:
            on_done(i, outcome)

    await asyncio.gather(*(one(i, item) for i, item in enumerate(items)))
    return [o for o in outcomes if o is not None]


async def _outcome(client: Client, item: Item, accepted: Callable[[str], None]) -> Outcome:
    request = item.request
    url = request.url if isinstance(request, JobSpec) else None
    job_id = request.job_id if isinstance(request, Resume) else None
    try:
        if isinstance(request, Resume):
            return dict(await client.resume(request.job_id))
        return dict(await client.scrape(request, ref=item.ref, on_accepted=accepted))
    except UnknownJobError as exc:
        return _failure("unknown_job", url, job_id, "unknown_job", str(exc))
    except ClientError as exc:
        return _failure("error", url, job_id, exc.code, exc.message)
    except ClientTimeoutError as exc:
        return _failure("error", url, exc.job_id or job_id, "client_timeout", str(exc))
    except EdgeUnreachableError as exc:
        return _failure("error", url, job_id, "unreachable", str(exc))
    except ScrapeledgerError as exc:
        return _failure("error", url, job_id, "client_error", str(exc))


def _failure(status: str, url: str | None, job_id: str | None, code: str, message: str) -> Outcome:
    return {"job_id": job_id, "status": status, "url": url, "error": {"code": code, "message": message}}
