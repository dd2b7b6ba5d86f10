"""The delivery route's shared pieces: what the materializer writes is what the edge reads."""

from __future__ import annotations

import dataclasses

import orjson
import pytest

import ledger
from scrapeledger import clients, delivery, partitioner
from scrapeledger.errors import MalformedEventError
from scrapeledger.settings import Settings


def _state() -> ledger.JobState:
    return ledger.JobState(
        job_id="j" * 22, status="succeeded", submitted_url="https://example.com/",
        headers={"Authorization": "Bearer secret"}, proxy="http://proxy:3128", sealed="token",
        pods=("edge-a", "edge-b"),
    )


def test_a_notice_carries_the_state_without_the_request() -> None:
    state, reply_to = delivery.decode_notice(delivery.encode_notice(_state()))
    assert reply_to is None
    assert state == dataclasses.replace(_state(), headers={}, proxy=None, sealed=None)


def test_a_reply_names_the_event_it_answers() -> None:
    raw = delivery.encode_reply(_state(), "j/submitted/1")
    assert orjson.loads(raw)[delivery.REPLY_TO] == "j/submitted/1"
    state, reply_to = delivery.decode_notice(raw)
    assert reply_to == "j/submitted/1"
    assert state.headers == {} and state.proxy is None and state.sealed is None


@pytest.mark.parametrize("raw", [None, b"", b"not json", b"[1, 2]"])
def test_what_is_not_a_notice_raises_what_the_edge_skips(raw: bytes | None) -> None:
    with pytest.raises((MalformedEventError, orjson.JSONDecodeError)):
        delivery.decode_notice(raw)


def test_a_pod_reads_the_partition_its_notices_are_keyed_to() -> None:
    for n in range(40):
        pod = f"edge-{n}"
        assert delivery.pod_partition(pod, 16) == partitioner.partition_for(delivery.notice_key(pod), 16)
        assert delivery.is_for_pod(delivery.notice_key(pod).encode(), pod)
        assert not delivery.is_for_pod(delivery.notice_key(f"{pod}x").encode(), pod)
    assert not delivery.is_for_pod(None, "edge-0")


def test_producers_use_the_partitioner_the_edge_computes() -> None:
    assert clients.producer_config(Settings())["partitioner"] == partitioner.KAFKA_PARTITIONER == "murmur2"
