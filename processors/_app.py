"""What every Quix Streams processor shares: the Application, the topics, and routed outputs.

Processors stay thin: each turns one ledger record into a list of :class:`Out` records with a
pure step function, and the Quix Streams app routes each ``Out`` to its topic. Values are
encoded by our own code (``ledger.encode_event``), so the framework's serializers only pass bytes
through and a record that does not decode reaches our step function instead of crashing the
consumer.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from quixstreams import Application
from quixstreams.models import TopicConfig
from quixstreams.models.serializers import Deserializer, SerializationContext, Serializer
from quixstreams.models.topics import Topic

from scrapeledger import topics as T
from scrapeledger.clients import fetch_config, producer_config
from scrapeledger.observability import HealthServer, LagReporter
from scrapeledger.settings import Settings

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
        "max.poll.interval.ms": 300_000,
        "session.timeout.ms": 10_000,
        "heartbeat.interval.ms": 2_000,
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
    ) -> None:
        self.settings = settings
        self.name = name
        # up before the broker wait: liveness must pass (no restart storm while Kafka is down)
        # and readiness must answer "not ready" rather than refuse connections
        self.health = HealthServer(settings.metrics_port, self.assigned, name)
        admin = T.wait_for_broker(settings)
        T.ensure_topics(settings, admin=admin)
        self.specs = {s.name: s for s in T.topic_specs(settings)}
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
        # Step functions are total over bad input; reaching here is a bug or an infrastructure
        # failure. Do not skip the record (that would lose a job): crash, restart, retry.
        log.error("%s failed processing a record: %r", self.name, exc)
        return False


def out_key(value: Out) -> str:
    return value.key
