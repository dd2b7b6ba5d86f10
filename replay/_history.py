"""A job's history and current state, read back from Kafka."""

from __future__ import annotations

import ledger as L
from scrapeledger import topics as T
from scrapeledger.errors import EventError, UnknownJobError
from scrapeledger.settings import Settings

from ._reader import job_partition, read_to_end


def history(settings: Settings, job_id: str) -> list[L.Event]:
    """Every ledger event of ``job_id``, in ledger order. Raises :class:`UnknownJobError`."""
    topic = settings.topic(T.LEDGER)
    partition = job_partition(settings, topic, job_id)
    key = job_id.encode()
    events: list[L.Event] = []
    for msg in read_to_end(settings, topic, partitions=[partition]):
        if msg.key() != key:
            continue
        try:
            events.append(L.decode_event(msg.value()))
        except EventError:
            continue  # poison records are in the DLQ; a history shows the job's events
    if not events:
        raise UnknownJobError(f"no events for job {job_id} in {topic}")
    return events


def latest_states(settings: Settings) -> dict[str, L.JobState | None]:
    """Every job's latest record in ``job-state`` (None where the last one is a tombstone)."""
    latest: dict[str, L.JobState | None] = {}
    for msg in read_to_end(settings, settings.topic(T.JOB_STATE)):
        value = msg.value()
        latest[msg.key().decode()] = None if value is None else L.JobState.from_json(value)
    return latest


def current_state(settings: Settings, job_id: str) -> L.JobState | None:
    """The job's latest state in the compacted ``job-state`` topic (None if absent or removed)."""
    topic = settings.topic(T.JOB_STATE)
    partition = job_partition(settings, topic, job_id)
    key = job_id.encode()
    latest: L.JobState | None = None
    for msg in read_to_end(settings, topic, partitions=[partition]):
        if msg.key() == key:
            value = msg.value()
            latest = None if value is None else L.JobState.from_json(value)
    return latest
