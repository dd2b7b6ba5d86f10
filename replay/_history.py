"""A job's history and current state, read back from Kafka."""

from __future__ import annotations

import ledger
from scrapeledger import topics
from scrapeledger.errors import EventError, UnknownJobError
from scrapeledger.settings import Settings

from ._reader import job_partition, read_to_end


def history(settings: Settings, job_id: str) -> list[ledger.Event]:
    """Every ledger event of ``job_id``, in ledger order. Raises :class:`UnknownJobError`."""
    topic = settings.topic(topics.LEDGER)
    partition = job_partition(settings, topic, job_id)
    key = job_id.encode()
    events: list[ledger.Event] = []
    for msg in read_to_end(settings, topic, partitions=[partition]):
        if msg.key() != key:
            continue
        try:
            events.append(ledger.decode_event(msg.value()))
        except EventError:
            continue  # poison records are in the DLQ; a history shows the job's events
    if not events:
        raise UnknownJobError(f"no events for job {job_id} in {topic}")
    return events


def latest_states(settings: Settings) -> dict[str, ledger.JobState | None]:
    """Every job's latest record in ``job-state`` (None where the last one is a tombstone)."""
    latest: dict[str, ledger.JobState | None] = {}
    for msg in read_to_end(settings, settings.topic(topics.JOB_STATE)):
        value = msg.value()
        latest[msg.key().decode()] = None if value is None else ledger.JobState.from_json(value)
    return latest


def current_state(settings: Settings, job_id: str) -> ledger.JobState | None:
    """The job's latest state in the compacted ``job-state`` topic (None if absent or removed)."""
    topic = settings.topic(topics.JOB_STATE)
    partition = job_partition(settings, topic, job_id)
    key = job_id.encode()
    latest: ledger.JobState | None = None
    for msg in read_to_end(settings, topic, partitions=[partition]):
        if msg.key() == key:
            value = msg.value()
            latest = None if value is None else ledger.JobState.from_json(value)
    return latest
