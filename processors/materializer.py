"""State materializer: folds the ledger into ``JobState`` and routes deliveries by pod id.

Per ledger record it loads the job's state from the Quix Streams state store (changelog-backed,
so it survives restarts), applies the pure :func:`ledger.fold`, writes the new state to the
compacted ``job-state`` topic (the latest per job, once per checkpoint: :class:`OutSink`) and,
when the fold says a result is due (the job just finished, or a client attached to a finished
job), one delivery notice per pod to the ``deliveries`` topic, keyed by pod id, at once (the
route, end to end: :mod:`scrapeledger.delivery`).
Records that do not decode, or whose key is not their event's job, go to the DLQ instead of
stopping the pipeline.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import orjson
from quixstreams.sinks import BaseSink

import ledger
from scrapeledger import delivery, faults, topics
from scrapeledger.clients import make_producer
from scrapeledger.errors import BrokerError, EventError
from scrapeledger.observability import EVENTS, JOB_SECONDS, JOBS_FINISHED, POISON
from scrapeledger.redact import job_ref
from scrapeledger.settings import Settings

from ._app import Out, Processor, Skip
from .expiry import ExpiryLoop

log = logging.getLogger(__name__)

STATE_KEY = "job"


def poison_record(raw: bytes | None, key: str | None, reason: str, source: str) -> bytes:
    """A DLQ record for bytes that are not an event: the raw bytes travel along for inspection."""
    return orjson.dumps(
        {
            "kind": "poison",
            "key": key,
            "reason": reason,
            "source": source,
            "at": ledger.now(),
            "raw": (raw or b"").decode("utf-8", "backslashreplace"),
        }
    )


delivery_record = delivery.encode_notice
"""The notice an edge needs for its result frame (:func:`scrapeledger.delivery.encode_notice`)."""


def reply_record(state: ledger.JobState, event: ledger.Event) -> bytes:
    """The notice answering ``event`` (:func:`scrapeledger.delivery.encode_reply`)."""
    return delivery.encode_reply(state, event.event_id)


def wants_reply(event: ledger.Event) -> bool:
    return isinstance(event, ledger.JobCancelled) or (
        isinstance(event, ledger.JobSubmitted) and event.idempotency_digest is not None
    )


def ledger_event(raw: bytes | None, key: str | None, pod: str) -> ledger.Event | Skip:
    """The event in one ledger record, or the DLQ notice for a record that holds no event of
    its key (undecodable bytes, or an event under another job's key)."""
    try:
        event = ledger.decode_event(raw)
    except EventError as exc:
        log.warning("poison ledger record (key %s) sent to DLQ: %s", job_ref(key), exc)
        return Skip((Out(topics.DLQ, key or "", poison_record(raw, key, str(exc), pod)),), undecodable=True)
    if key != event.job_id:
        reason = f"record key {key!r} differs from job_id {event.job_id!r}"
        log.warning("poison ledger record sent to DLQ: key %s differs from job_id %s",
                    job_ref(key), job_ref(event.job_id))
        return Skip((Out(topics.DLQ, key or "", poison_record(raw, key, reason, pod)),))
    return event


@dataclass(frozen=True, slots=True)
class Materialized:
    """What one event did: the records to write and, if the event finished the job, its state."""

    outs: list[Out]
    finished: ledger.JobState | None = None


def materialize(event: ledger.Event, state: Any) -> Materialized:
    """Fold ``event`` into the job's stored state; the new state, deliveries and replies out."""
    stored = state.get(STATE_KEY)
    before = ledger.JobState.from_dict(stored) if stored is not None else None
    if before is None and isinstance(event, ledger.ClientAttached):
        # A resume of an id the ledger never saw (ids are issued only after JobSubmitted is
        # durable, in the same partition, so none can come later): answer it, keep no state.
        log.info("resume of unknown job %s from %s", job_ref(event.job_id), event.pod)
        unknown = ledger.JobState(job_id=event.job_id)
        return Materialized([Out(topics.DELIVERIES, delivery.notice_key(event.pod),
                                 delivery_record(unknown))])
    if before is None and isinstance(event, ledger.JobCancelled):
        log.info("cancel of unknown job %s from %s", job_ref(event.job_id), event.source)
        unknown = ledger.JobState(job_id=event.job_id)
        return Materialized([Out(topics.DELIVERIES, delivery.notice_key(event.source),
                                 reply_record(unknown, event))])
    after = ledger.fold(before, event)
    reply = ([Out(topics.DELIVERIES, delivery.notice_key(event.source), reply_record(after, event))]
             if wants_reply(event) else [])
    if after is before:
        return Materialized(reply)  # a duplicate or a too-late cancel: answered, nothing else changes
    data = after.to_dict()
    state.set(STATE_KEY, data)
    if after.status == "expired":
        # out of the replay window: the compacted topic forgets the job (tombstone); the store
        # keeps the small stub so a late resume hears "expired", not "unknown"
        outs = [Out(topics.JOB_STATE, event.job_id, None)]
    else:
        outs = [Out(topics.JOB_STATE, event.job_id, orjson.dumps(data))]
    due = ledger.deliveries_due(before, after, event)
    if due:
        notice = delivery_record(after)
        outs.extend(Out(topics.DELIVERIES, delivery.notice_key(p), notice) for p in due)
        log.debug("job %s %s; delivering to %s", job_ref(event.job_id), after.status, ", ".join(due))
    finished = after.terminal and not (before is not None and before.terminal)
    return Materialized(outs + reply, after if finished else None)


def materialize_step(raw: bytes | None, key: str | None, state: Any, pod: str) -> list[Out]:
    """One ledger record in; new state, deliveries and poison notices out. Never raises on input.

    No I/O, no metrics, no fault point (its only effect is the job's new state in ``state``):
    the pipeline runs the same two stages through :func:`instrumented_step`, which adds the
    metrics and the fault point."""
    event = ledger_event(raw, key, pod)
    if isinstance(event, Skip):
        return list(event.outs)
    return materialize(event, state).outs


def salvage(event: ledger.Event) -> list[ledger.Event]:
    """What must survive a ledger record the materializer gave up on: the client's pod.

    Without its ``JobSubmitted`` the state would not know which edge holds the client, and the
    dead letter that ends the job would reach nobody; a ``ClientAttached`` keeps that route.
    """
    if isinstance(event, ledger.JobSubmitted):
        return [ledger.ClientAttached(job_id=event.job_id, event_id=f"{event.event_id}/salvaged",
                                 at=event.at, source=event.source, pod=event.source)]
    return []


class OutSink(BaseSink):
    """Writes the materializer's outputs: notices at once, each job's state once per checkpoint.

    A job's five or six ledger events arrive within a few hundred milliseconds, and only the
    last ``job-state`` value per key survives compaction anyway, so states are kept here (the
    latest per job) and produced when the checkpoint flushes, before offsets are committed:
    at-least-once as before, one batched write per checkpoint instead of one produce per event.
    Delivery notices and DLQ records go out at once (a client is waiting for them). A record
    Kafka refuses fails the flush, which aborts the checkpoint, so the events are replayed.
    """

    def __init__(self, settings: Settings) -> None:
        super().__init__()
        self.settings = settings
        self._producer = make_producer(settings)
        self._states: dict[str, bytes | None] = {}
        self._errors: list[str] = []

    def _on_delivery(self, err: Any, msg: Any) -> None:
        if err is not None:
            self._errors.append(str(err))

    def _produce(self, topic: str, key: str, value: bytes | None) -> None:
        while True:
            try:
                self._producer.produce(
                    self.settings.topic(topic), value=value, key=key, on_delivery=self._on_delivery
                )
                break
            except BufferError:
                self._producer.poll(0.05)  # local queue full: let deliveries drain it
        self._producer.poll(0)

    def add(
        self, value: Any, key: Any, timestamp: int, headers: Any, topic: str, partition: int, offset: int
    ) -> None:
        out: Out = value
        if out.topic == topics.JOB_STATE:
            self._states[out.key] = out.value
        else:
            self._produce(out.topic, out.key, out.value)

    def flush(self) -> None:
        states, self._states = self._states, {}
        for key, value in states.items():
            self._produce(topics.JOB_STATE, key, value)
        left = self._producer.flush(30)
        errors, self._errors = self._errors, []
        if left or errors:
            raise BrokerError(f"materializer outputs not written: {left} unsent, errors {errors[:3]}")


# --- app wiring: the step, counted and with its fault point --------------------------------


def instrumented_step(
    raw: bytes | None, key: str | None, state: Any, pod: str, fault_spec: str
) -> list[Out]:
    """:func:`materialize_step` as the pipeline runs it: counted in the metrics, and with the
    ``state`` fault point (``SCRAPELEDGER_FAULTS``) on a ``JobSubmitted`` between decoding and
    folding it - before the state store or any output is touched, so an injected failure leaves
    the record as unprocessed as a real crash would."""
    EVENTS.labels("state").inc()
    event = ledger_event(raw, key, pod)
    if isinstance(event, Skip):
        if event.undecodable:
            POISON.labels("state").inc()
        return list(event.outs)
    if isinstance(event, ledger.JobSubmitted):
        faults.check(fault_spec, "state", event.url)
    done = materialize(event, state)
    if done.finished is not None:
        _count_finished(done.finished)
    return done.outs


def _count_finished(state: ledger.JobState) -> None:
    JOBS_FINISHED.labels(state.status).inc()
    if state.submitted_at is not None and state.finished_at is not None:
        JOB_SECONDS.observe(max(0.0, state.finished_at - state.submitted_at))


def build(settings: Settings) -> Processor:
    """The materializer's processor, not started (no broker is asked yet)."""
    pod, fault_spec = settings.pod_name, settings.faults

    def topology(proc: Processor) -> None:
        for name in (topics.JOB_STATE, topics.DELIVERIES, topics.DLQ):
            proc.topic(name)
        sdf = proc.app.dataframe(proc.topic(topics.LEDGER))
        sdf = sdf.apply(
            lambda raw, key, ts, headers, state: instrumented_step(raw, key, state, pod, fault_spec),
            stateful=True,
            metadata=True,
            expand=True,
        )
        # a new sink (a new producer) per Application: an idempotent producer that went fatal
        # in an outage ("Local: Fatal error") cannot be used again
        sdf.sink(OutSink(settings))

    return Processor(settings, "state", stateful=True, salvage=salvage).define(topology)


def main(settings: Settings | None = None) -> None:
    settings = settings or Settings()
    proc = build(settings).start()
    expiry = ExpiryLoop(settings).start()
    try:
        proc.run()
    finally:
        expiry.close()
