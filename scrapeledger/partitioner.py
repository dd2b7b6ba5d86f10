"""Kafka's default partitioner (murmur2), computed in Python: which partition holds a key.

Producers (librdkafka with ``partitioner=murmur2``, Quix Streams' default, and the Java client)
place a keyed record in ``toPositive(murmur2(key)) % partitions``. Knowing that number lets an
edge pod read just the partition of the deliveries topic that holds its notices
(:mod:`scrapeledger.delivery`, the route's owner), and ``replay`` read just the partition that
holds one job's records.
"""

from __future__ import annotations

KAFKA_PARTITIONER = "murmur2"
"""librdkafka's ``partitioner`` setting for every Scrapeledger producer
(``scrapeledger.clients.producer_config``): the function this module computes. Quix Streams and
the Java client use it too; librdkafka's own default (CRC32) would put the edge's
``JobSubmitted`` and the validator's ``JobValidated`` for one job in different partitions,
destroying per-job order, and would put notices where no edge reads them."""

_M = 0x5BD1E995
_SEED = 0x9747B28C
_MASK = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """Kafka's ``Utils.murmur2``, returning the same signed 32-bit value as the Java code."""
    length = len(data)
    h = (_SEED ^ length) & _MASK
    n4 = length // 4
    for i in range(n4):
        k = int.from_bytes(data[i * 4 : i * 4 + 4], "little")
        k = (k * _M) & _MASK
        k ^= k >> 24
        k = (k * _M) & _MASK
        h = (h * _M) & _MASK
        h ^= k
    rest = length % 4
    tail = data[n4 * 4 :]
    if rest == 3:
        h ^= tail[2] << 16
    if rest >= 2:
        h ^= tail[1] << 8
    if rest >= 1:
        h ^= tail[0]
        h = (h * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    h ^= h >> 15
    return h - (1 << 32) if h & 0x80000000 else h


def partition_for(key: str | bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner picks for ``key``."""
    raw = key.encode() if isinstance(key, str) else key
    return (murmur2(raw) & 0x7FFFFFFF) % partitions
