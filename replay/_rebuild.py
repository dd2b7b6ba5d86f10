"""Recompute ``job-state`` from the ledger with the same fold the materializer runs."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import ledger
from scrapeledger import topics
from scrapeledger.clients import make_producer
from scrapeledger.errors import BrokerError, EventError
from scrapeledger.reader import latest_states, read_to_end
from scrapeledger.settings import Settings


@dataclass(frozen=True)
class Change:
    """One job-state record a rebuild writes: the job, its status in job-state (None where
    job-state has no record of it) and the rebuilt status."""

    job_id: str
    before: str | None
    after: str


@dataclass(frozen=True)
class RebuildResult:
    events: int
    jobs: int
    poison: int
    written: int
    unchanged: int
    seconds: float
    states: dict[str, ledger.JobState]
    changes: tuple[Change, ...] = ()
    """Every job whose state was (or, dry run, would be) written, in ledger order."""

    @property
    def events_per_s(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else float("inf")


def fold_ledger(
    settings: Settings,
    *,
    on_total: Callable[[int], None] | None = None,
    on_event: Callable[[], None] | None = None,
) -> tuple[dict[str, ledger.JobState], int, int]:
    """Fold the whole ledger (up to now): ``(states, events, poison records)``."""
    states: dict[str, ledger.JobState] = {}
    events = poison = 0
    for msg in read_to_end(settings, settings.topic(topics.LEDGER), on_total=on_total):
        if on_event is not None:
            on_event()
        try:
            event = ledger.decode_event(msg.value())
        except EventError:
            poison += 1
            continue
        events += 1
        states[event.job_id] = ledger.fold(states.get(event.job_id), event)
    return states, events, poison


def rebuild(
    settings: Settings,
    *,
    write: bool = True,
    on_total: Callable[[int], None] | None = None,
    on_event: Callable[[], None] | None = None,
) -> RebuildResult:
    """Fold the ledger and write every state that differs from the compacted topic's.

    Safe while the service runs: a state is only written where the topic's copy has seen fewer
    events than the rebuilt one (or is missing, or differs at the same count), so a newer state
    the materializer wrote meanwhile is never replaced by an older one.
    """
    start = time.perf_counter()
    states, events, poison = fold_ledger(settings, on_total=on_total, on_event=on_event)
    current = latest_states(settings)
    written = unchanged = 0
    changes: list[Change] = []
    producer = make_producer(settings, **{"linger.ms": 20})
    topic = settings.topic(topics.JOB_STATE)
    for job_id, state in states.items():
        have = current.get(job_id)
        if state.status == "unknown":
            # only attaches (resumes of an id never submitted): the materializer keeps no state
            # for these, so neither does a rebuild; one an older version wrote is removed
            if have is not None:
                if write:
                    producer.produce(topic, key=job_id, value=None)
                    producer.poll(0)
                written += 1
            else:
                unchanged += 1
            continue
        if have == state or (have is not None and have.events > state.events):
            unchanged += 1
            continue
        if write:
            if state.status == "expired":
                producer.produce(topic, key=job_id, value=None)
            else:
                producer.produce(topic, key=job_id, value=state.to_json())
            producer.poll(0)
        written += 1
        changes.append(Change(job_id, None if have is None else have.status, state.status))
    if producer.flush(60):
        raise BrokerError("rebuilt states were not all acknowledged")
    return RebuildResult(events, len(states), poison, written, unchanged,
                         time.perf_counter() - start, states, tuple(changes))
