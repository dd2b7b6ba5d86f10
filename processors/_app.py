"""What every Quix Streams processor shares: the Application, the topics, and routed outputs.

Processors stay thin: each turns one ledger record into a list of :class:`Out` records with a
pure step function, and the Quix Streams app routes each ``Out`` to its topic. Values are
encoded by our own code (``ledger.encode_event``), so the framework's serializers only pass bytes
through and a record that does not decode reaches our step function instead of crashing the
consumer.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from quixstreams import Application
from quixstreams.models import TopicConfig
from quixstreams.models.serializers import Deserializer, SerializationContext, Serializer
from quixstreams.models.topics import Topic

import ledger as L
from scrapeledger import topics as T
from scrapeledger.clients import IDLE_FETCH_WAIT_MS, fetch_config, make_producer, producer_config
from scrapeledger.clusters import attach
from scrapeledger.errors import ScrapeledgerError
from scrapeledger.observability import HealthServer, LagReporter
from scrapeledger.redact import job_ref
from scrapeledger.settings import Settings

from ._crashes import CrashLog, read_crash_log

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Out:
    """One output record: logical topic name, key and already-encoded value (None = tombstone)."""

    topic: str
    key: str
    value: bytes | None


class RawDeserializer(Deserializer):
    """Hand the record's bytes to the step function untouched; decoding is the domain's job."""

    def __call__(self, value: bytes, ctx: SerializationContext) -> Any:
        return value


class OutSerializer(Serializer):
    """Serialize an :class:`Out` (or raw bytes) as its bytes; ``None`` stays a tombstone."""

    # Quix declares (*args, **kwargs) -> str | bytes; tombstones need None, which it passes on.
    def __call__(self, value: Any, ctx: SerializationContext) -> bytes | None:  # type: ignore[override]
        if isinstance(value, Out):
            return value.value
        if value is None or isinstance(value, bytes):
            return value
        raise TypeError(f"cannot serialize {type(value).__name__} to a Scrapeledger topic")


def consumer_config(settings: Settings) -> dict[str, Any]:
    return {
        **fetch_config(settings),
        "fetch.wait.max.ms": IDLE_FETCH_WAIT_MS,
        "max.poll.interval.ms": 300_000,
        "session.timeout.ms": 10_000,
        "heartbeat.interval.ms": 2_000,
        # static membership: a restarted process (same POD_NAME: a container restart, a
        # supervisor restart) takes its partitions back at once instead of after a rebalance
        # that waits out the dead member's session
        "group.instance.id": settings.pod_name,
    }


class Processor:
    """A Quix Streams application bound to Scrapeledger's topics."""

    def __init__(
        self,
        settings: Settings,
        name: str,
        *,
        commit_interval: float | None = None,
        commit_every: int = 0,
        stateful: bool = False,
        salvage: Callable[[L.Event], list[L.Event]] | None = None,
    ) -> None:
        """``salvage`` turns an event this processor gave up on into events that keep what the
        job cannot do without (the materializer keeps the client's pod of a ``JobSubmitted``)."""
        self.settings = settings
        self.salvage = salvage
        self.name = name
        # up before the broker wait: liveness must pass (no restart storm while Kafka is down)
        # and readiness must answer "not ready" rather than refuse connections
        self.health = HealthServer(settings.metrics_port_for(name), self.assigned, name,
                                   settings.metrics_host)
        admin = T.wait_for_broker(settings)
        attach(settings, name)
        T.ensure_topics(settings, admin=admin)
        self.specs = {s.name: s for s in T.topic_specs(settings)}
        self.crashes: CrashLog = read_crash_log(settings, name)
        self.app = Application(
            broker_address=settings.bootstrap_servers,
            consumer_group=settings.group(name),
            auto_offset_reset="earliest",
            commit_interval=settings.commit_interval_s if commit_interval is None else commit_interval,
            commit_every=commit_every,
            consumer_extra_config=consumer_config(settings),
            producer_extra_config={
                k: v for k, v in producer_config(settings).items() if k != "bootstrap.servers"
            },
            state_dir=f"{settings.state_dir}/{settings.pod_name}",
            loglevel=None,
            auto_create_topics=True,
            use_changelog_topics=stateful,
            auto_recover_from_source_offset_out_of_range=False,
            on_processing_error=self._on_processing_error,
            request_timeout=30,
            broker_availability_timeout=max(settings.broker_wait_s, 120.0),
        )
        self._topics: dict[str, Topic] = {}

    def topic(self, name: str) -> Topic:
        """The Quix ``Topic`` for a logical topic, with the spec's config (bytes in, ``Out`` out)."""
        found = self._topics.get(name)
        if found is None:
            spec = self.specs[name]
            found = self.app.topic(
                self.settings.topic(name),
                key_deserializer="str",
                value_deserializer=RawDeserializer(),  # type: ignore[no-untyped-call]
                key_serializer="str",
                value_serializer=OutSerializer(),
                config=TopicConfig(
                    num_partitions=spec.partitions,
                    replication_factor=self.settings.replication_factor,
                    extra_config=dict(spec.config),
                ),
            )
            self._topics[name] = found
        return found

    def route(self, value: Out, key: Any, timestamp: int, headers: Any) -> Topic:
        return self.topic(value.topic)

    def assigned(self) -> bool:
        """Readiness: this consumer holds partitions (so it is connected and in its group)."""
        # Quix keeps its consumer private; absent (not built, not running) means not ready
        app = getattr(self, "app", None)  # built after the broker wait
        consumer = getattr(app, "_consumer", None)
        return bool(consumer is not None and consumer.assignment())

    def run(self) -> None:
        log.info("%s started (group %s)", self.name, self.settings.group(self.name))
        lag = LagReporter(self.settings, self.name)
        try:
            self.app.run()
        finally:
            lag.close()
            self.health.close()
        log.info("%s stopped", self.name)

    def _on_processing_error(self, exc: Exception, row: Any, logger: logging.Logger) -> bool:
        """A step raised: count the failure in the ledger, then crash, or at the limit give up.

        Step functions are total over bad input, so reaching here is a bug, an injected fault or
        an infrastructure failure. Skipping at once could drop a job for a passing fault, and
        crashing every time loops forever, so each failure is written to the ledger as
        ``ProcessingFailed`` (read back by the next process, see ``_crashes``), the process
        crashes and restarts, and the ``max_processing_failures``-th failure dead-letters the
        job (``processing_error``, in the ledger and the DLQ) and skips the record.
        """
        key = row.key if isinstance(row.key, str) else None
        if row.topic != self.settings.topic(T.LEDGER) or not key:
            log.error("%s failed processing a record of %s: %r", self.name, row.topic, exc)
            return False
        where = (self.name, row.partition, row.offset)
        failures = self.crashes.failures[where] + 1
        self.crashes.failures[where] = failures
        limit = self.settings.max_processing_failures
        log.error(
            "%s failed on ledger record %d/%d of job %s (failure %d of %d): %r",
            self.name, row.partition, row.offset, job_ref(key), failures, limit, exc,
        )
        marker = f"{key}/{self.name}/p{row.partition}o{row.offset}"
        common: dict[str, Any] = {"job_id": key, "at": L.now(), "source": self.settings.pod_name}
        events: list[L.Event] = [
            L.ProcessingFailed(
                **common, event_id=f"{marker}/f{failures}", processor=self.name,
                partition=row.partition, offset=row.offset, failures=failures, error=repr(exc)[:500],
            )
        ]
        give_up = failures >= limit
        if give_up and self.salvage is not None:
            try:
                events.extend(self.salvage(L.decode_event(row.value)))
            except Exception as salvage_error:  # the record may be what is broken
                log.warning("nothing salvaged from the failed record: %r", salvage_error)
        if give_up:
            events.append(
                L.JobDeadLettered(
                    **common, event_id=f"{marker}/dead", code="processing_error",
                    message=f"{self.name} failed {failures} times on this job's ledger record "
                    f"{row.partition}/{row.offset}: {exc!r}"[:1000],
                )
            )
        try:
            self._write_now(events)
        except ScrapeledgerError as write_error:
            log.error("%s could not record the failure (%s); crashing", self.name, write_error)
            return False
        return give_up

    def _write_now(self, events: list[L.Event]) -> None:
        """Produce ``events`` to the ledger (dead letters to the DLQ first) and wait for acks."""
        producer = make_producer(self.settings)
        errors: list[str] = []

        def on_delivery(err: Any, msg: Any) -> None:
            if err is not None:
                errors.append(str(err))

        for event in events:
            raw = L.encode_event(event)
            if isinstance(event, L.JobDeadLettered):
                producer.produce(self.settings.topic(T.DLQ), raw, event.job_id, on_delivery=on_delivery)
                producer.flush(30)
            producer.produce(self.settings.topic(T.LEDGER), raw, event.job_id, on_delivery=on_delivery)
        left = producer.flush(30)
        if left or errors:
            raise ScrapeledgerError(f"{left} unsent, errors: {errors}")


def out_key(value: Out) -> str:
    return value.key
