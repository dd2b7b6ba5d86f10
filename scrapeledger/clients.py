"""Kafka client configs every Scrapeledger producer shares."""

from __future__ import annotations

from typing import Any

from confluent_kafka import Producer

from .settings import Settings
from .topics import MiB


def producer_config(settings: Settings) -> dict[str, Any]:
    """Durable, ordered produces: the ledger never loses an acknowledged event."""
    return {
        "bootstrap.servers": settings.bootstrap_servers,
        # Kafka's Java partitioner, as Quix Streams uses: one job's events land in one partition
        # whichever process writes them (librdkafka's own default, CRC32, would scatter them)
        "partitioner": "murmur2",
        "acks": "all",
        "enable.idempotence": True,
        "linger.ms": 5,
        "compression.type": "lz4",
        "message.max.bytes": settings.scraper_max_body_bytes + 2 * MiB,
    }


def fetch_config(settings: Settings) -> dict[str, Any]:
    """Consumer fetch sizes: a record as large as the biggest body must always fit one fetch."""
    return {
        "fetch.max.bytes": 64 * MiB,
        "max.partition.fetch.bytes": settings.scraper_max_body_bytes + 2 * MiB,
    }


def make_producer(settings: Settings, **overrides: Any) -> Producer:
    return Producer({**producer_config(settings), **overrides})
