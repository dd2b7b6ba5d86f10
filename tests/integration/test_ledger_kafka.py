"""Ledger events and topic provisioning against the real broker."""

from __future__ import annotations

import uuid

from confluent_kafka import Consumer, TopicPartition

import ledger
from scrapeledger import topics
from scrapeledger.clients import make_producer
from scrapeledger.settings import Settings


def test_topics_are_created_with_their_configs_and_idempotently(settings: Settings) -> None:
    admin = topics.wait_for_broker(settings, timeout_s=30)
    created = topics.ensure_topics(settings, admin=admin)
    assert sorted(created) == sorted(settings.topic(s.name) for s in topics.topic_specs(settings))
    assert topics.ensure_topics(settings, admin=admin) == []  # a second start creates nothing

    state = topics.describe_topic_config(admin, settings.topic(topics.JOB_STATE))
    assert state["cleanup.policy"] == "compact"
    ledger_cfg = topics.describe_topic_config(admin, settings.topic(topics.LEDGER))
    assert ledger_cfg["cleanup.policy"] == "delete"
    assert ledger_cfg["retention.ms"] == "-1"
    bodies = topics.describe_topic_config(admin, settings.topic(topics.BODIES))
    assert int(bodies["retention.ms"]) == int(settings.replay_window_s * 1000)
    assert int(bodies["max.message.bytes"]) > settings.scraper_max_body_bytes
    meta = admin.list_topics(timeout=10).topics
    assert len(meta[settings.topic(topics.LEDGER)].partitions) == settings.partitions
    assert len(meta[settings.topic(topics.DELIVERIES)].partitions) == settings.delivery_partitions


def test_events_round_trip_through_the_ledger_in_order(settings: Settings) -> None:
    topics.ensure_topics(settings)
    job = ledger.new_job_id()
    events: list[ledger.Event] = [
        ledger.JobSubmitted(job_id=job, event_id=f"{job}/submitted", at=1.0, source="edge-0",
                       url="https://example.org/", headers={"accept": "text/html"}),
        ledger.JobValidated(job_id=job, event_id=f"{job}/validated", at=2.0, source="v", attempt=1,
                       url="https://example.org/"),
        ledger.ScrapeSucceeded(job_id=job, event_id=ledger.outcome_id(job, 1), at=3.0, source="s",
                          attempt=1, url="https://example.org/", final_url="https://example.org/",
                          http_status=200, headers={}, elapsed_ms=12.5, body_bytes=5,
                          body_partition=0, body_offset=7),
    ]
    producer = make_producer(settings)
    topic = settings.topic(topics.LEDGER)
    for e in events:
        producer.produce(topic, key=e.job_id, value=ledger.encode_event(e))
    assert producer.flush(30) == 0

    consumer = Consumer({"bootstrap.servers": settings.bootstrap_servers,
                         "group.id": f"test-{uuid.uuid4().hex}", "auto.offset.reset": "earliest"})
    consumer.subscribe([topic])
    got: list[ledger.Event] = []
    partitions: set[int] = set()
    for _ in range(100):
        msg = consumer.poll(1.0)
        if msg is None or msg.error():
            continue
        got.append(ledger.decode_event(msg.value()))
        partitions.add(msg.partition())
        if len(got) == len(events):
            break
    consumer.close()
    assert got == events
    assert len(partitions) == 1  # keyed by job id: one job's history lives in one partition
    state = ledger.fold_all(got)[job]
    assert state.status == "succeeded"


def test_compacted_state_topic_keeps_the_latest_state_per_job(settings: Settings) -> None:
    topics.ensure_topics(settings)
    topic = settings.topic(topics.JOB_STATE)
    producer = make_producer(settings)
    job = ledger.new_job_id()
    first = ledger.JobState(job_id=job, status="submitted")
    last = ledger.JobState(job_id=job, status="succeeded")
    producer.produce(topic, key=job, value=first.to_json())
    producer.produce(topic, key=job, value=last.to_json())
    assert producer.flush(30) == 0
    consumer = Consumer({"bootstrap.servers": settings.bootstrap_servers,
                         "group.id": f"test-{uuid.uuid4().hex}", "auto.offset.reset": "earliest"})
    meta = consumer.list_topics(topic, timeout=10).topics[topic]
    latest: dict[str, ledger.JobState] = {}
    for p in meta.partitions:
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
        if high == low:
            continue
        consumer.assign([TopicPartition(topic, p, low)])
        while True:
            msg = consumer.poll(5.0)
            assert msg is not None, "record below the high watermark did not arrive"
            if msg.error():
                continue
            latest[msg.key().decode()] = ledger.JobState.from_json(msg.value())
            if msg.offset() >= high - 1:
                break
    consumer.close()
    assert latest[job] == last
