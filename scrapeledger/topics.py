"""Every Kafka topic Scrapeledger uses, defined once, and their idempotent creation.

The old system crashed on first start because its topics did not exist. Here every processor and
every edge calls :func:`ensure_topics` at start-up: it waits for the broker with back-off (logging
that it waits), creates whatever is missing with explicit configs, and tolerates a concurrent
creator. The Kubernetes ``KafkaTopic`` manifests are generated from and tested against this same
spec.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

from .errors import BrokerError, BrokerUnavailableError
from .settings import Settings

log = logging.getLogger(__name__)

LEDGER = "ledger"
BODIES = "bodies"
JOB_STATE = "job-state"
DELIVERIES = "deliveries"
DLQ = "dlq"

MiB = 1024 * 1024


@dataclass(frozen=True)
class TopicSpec:
    """A logical topic: its name without prefix, partition count and broker-side config."""

    name: str
    partitions: int
    config: dict[str, str] = field(default_factory=dict)
    doc: str = ""


def topic_specs(settings: Settings) -> list[TopicSpec]:
    """The full topic set for a deployment with these settings."""
    window_ms = str(int(settings.replay_window_s * 1000))
    body_limit = settings.scraper_max_body_bytes + MiB  # headroom for record overhead
    return [
        TopicSpec(
            LEDGER,
            settings.partitions,
            {"cleanup.policy": "delete", "retention.ms": "-1", "max.message.bytes": str(MiB)},
            "Every job transition, keyed by job id; kept forever so state can always be rebuilt.",
        ),
        TopicSpec(
            BODIES,
            settings.partitions,
            {
                "cleanup.policy": "delete",
                "retention.ms": window_ms,
                "max.message.bytes": str(body_limit),
                "compression.type": "producer",
            },
            "Fetched page bodies, lz4-compressed by the producer (kept as sent), for the replay window.",
        ),
        TopicSpec(
            JOB_STATE,
            settings.partitions,
            {
                "cleanup.policy": "compact",
                "max.message.bytes": str(MiB),
                "min.cleanable.dirty.ratio": "0.1",
                "delete.retention.ms": "86400000",
            },
            "Latest JobState per job id (compacted; tombstones for expired jobs).",
        ),
        TopicSpec(
            DELIVERIES,
            settings.delivery_partitions,
            {"cleanup.policy": "delete", "retention.ms": "3600000", "max.message.bytes": str(MiB)},
            "Result notices keyed by edge pod id; each edge reads only its pod's partition.",
        ),
        TopicSpec(
            DLQ,
            1,
            {"cleanup.policy": "delete", "retention.ms": "-1", "max.message.bytes": str(MiB)},
            "Dead-lettered jobs and undecodable (poison) records, for inspection and redrive.",
        ),
    ]


def admin_client(settings: Settings) -> AdminClient:
    return AdminClient({"bootstrap.servers": settings.bootstrap_servers, "log_level": 3})


def wait_for_broker(
    settings: Settings,
    *,
    timeout_s: float | None = None,
    should_stop: Callable[[], bool] = lambda: False,
) -> AdminClient:
    """Block until the broker answers a metadata request, logging while it waits.

    Back-off doubles from 0.5 s to 5 s with jitter. Raises :class:`BrokerUnavailableError` after
    ``timeout_s`` (default ``settings.broker_wait_s``) or when ``should_stop()`` turns true.
    """
    deadline = time.monotonic() + (settings.broker_wait_s if timeout_s is None else timeout_s)
    admin = admin_client(settings)
    delay = 0.5
    attempt = 0
    while True:
        attempt += 1
        try:
            admin.list_topics(timeout=min(5.0, max(0.5, deadline - time.monotonic())))
        except KafkaException as exc:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or should_stop():
                raise BrokerUnavailableError(
                    f"Kafka at {settings.bootstrap_servers} did not answer: {exc}"
                ) from None
            pause = min(delay, remaining) * random.uniform(0.8, 1.2)
            log.warning(
                "waiting for Kafka at %s (attempt %d, %s); retrying in %.1fs",
                settings.bootstrap_servers, attempt, _short(exc), pause,
            )
            time.sleep(pause)
            delay = min(delay * 2, 5.0)
            continue
        if attempt > 1:
            log.info("Kafka at %s is up after %d attempts", settings.bootstrap_servers, attempt)
        return admin


def replication(settings: Settings, admin: AdminClient) -> tuple[int, dict[str, str]]:
    """Replication factor and the config that goes with it, for the cluster ``admin`` talks to.

    ``SCRAPELEDGER_REPLICATION_FACTOR`` wins when it is set. Unset, a cluster of at least three
    brokers (counted in the metadata) gets replication factor 3 with ``min.insync.replicas=2``
    - an ``acks=all`` write then survives the loss of any one broker, and writes go on while
    one is down - and a smaller one gets 1, as a single local broker needs.
    """
    if "replication_factor" in settings.model_fields_set:
        rf = settings.replication_factor
    else:
        rf = 3 if len(admin.list_topics(timeout=10).brokers) >= 3 else 1
    return rf, ({"min.insync.replicas": "2"} if rf >= 3 else {})


def ensure_topics(
    settings: Settings,
    specs: Iterable[TopicSpec] | None = None,
    *,
    admin: AdminClient | None = None,
) -> list[str]:
    """Create every missing topic; return the full names created. Safe to run concurrently."""
    if admin is None:
        admin = wait_for_broker(settings)
    wanted = list(topic_specs(settings) if specs is None else specs)
    existing = set(admin.list_topics(timeout=10).topics)
    rf, extra = replication(settings, admin)
    new = [
        NewTopic(settings.topic(s.name), s.partitions, rf, config={**s.config, **extra})
        for s in wanted
        if settings.topic(s.name) not in existing
    ]
    created: list[str] = []
    if not new:
        _wait_for_leaders(admin, [settings.topic(s.name) for s in wanted])
        return created
    for name, future in admin.create_topics(new, operation_timeout=30, request_timeout=30).items():
        try:
            future.result()
            created.append(name)
            log.info("created topic %s", name)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise BrokerError(f"cannot create topic {name}: {exc}") from None
    _wait_for_leaders(admin, [settings.topic(s.name) for s in wanted])
    return created


def _wait_for_leaders(admin: AdminClient, names: list[str], timeout_s: float = 60.0) -> None:
    """A just-created topic has no partition leaders for a moment; clients fail until it does."""
    deadline = time.monotonic() + timeout_s
    while True:
        topics = admin.list_topics(timeout=10).topics
        missing = [
            n for n in names
            if n not in topics
            or topics[n].error is not None
            or not topics[n].partitions
            or any(p.leader < 0 or p.error is not None for p in topics[n].partitions.values())
        ]
        if not missing:
            return
        if time.monotonic() > deadline:
            raise BrokerError(f"topics without partition leaders after {timeout_s:.0f}s: {missing}")
        time.sleep(0.1)  # re-check metadata; bounded by the deadline


def describe_topic_config(admin: AdminClient, topic: str) -> dict[str, str]:
    """The broker's effective config for ``topic`` (used by the integration tests)."""
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic)
    result = admin.describe_configs([resource])[resource].result()
    return {k: v.value for k, v in result.items()}


def _short(exc: KafkaException) -> str:
    err = exc.args[0] if exc.args else exc
    return str(getattr(err, "str", lambda: err)())
