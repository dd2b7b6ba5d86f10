"""A process started before the broker waits for it (and says so), then works once it appears."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

from confluent_kafka.admin import AdminClient

import ledger
from replay import current_state
from scrapeledger import topics
from scrapeledger.broker import LocalBroker, free_port
from scrapeledger.clients import make_producer
from scrapeledger.settings import Settings
from tests.support.stack import Stack, eventually


def _wait_for_topic(bootstrap: str, topic: str, timeout: float = 60.0) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    eventually(lambda: topic in admin.list_topics(timeout=5).topics, timeout=timeout,
               what=f"{topic} to be created", interval=0.2)


def test_a_processor_started_before_the_broker_waits_then_works(tmp_path: Path) -> None:
    port = free_port()
    settings = Settings(bootstrap_servers=f"127.0.0.1:{port}", topic_prefix=f"down{uuid.uuid4().hex[:8]}-",
                        state_dir=str(tmp_path / "state"), partitions=2)
    stack = Stack(settings, tmp_path)
    try:
        proc = stack.start("state")
        proc.wait_for(rf"waiting for Kafka at 127\.0\.0\.1:{port}", timeout=60)
        assert proc.popen.poll() is None, "the processor gave up instead of waiting"
        with LocalBroker(port=port, data_dir=tmp_path / "kafka") as broker:
            _wait_for_topic(broker.bootstrap, settings.topic(topics.LEDGER))
            proc.wait_for(r"Kafka at .* is up", timeout=60)
            job = ledger.new_job_id()
            producer = make_producer(settings)
            producer.produce(settings.topic(topics.LEDGER), key=job, value=ledger.encode_event(
                ledger.JobSubmitted(job_id=job, event_id=f"{job}/submitted", at=1.0, source="t",
                               url="http://example.org/")))
            assert producer.flush(30) == 0
            deadline = time.monotonic() + 90
            state = None
            while state is None and time.monotonic() < deadline:
                state = current_state(settings, job)
            assert state is not None, proc.output()[-3000:]
            assert state.status == "submitted"
            stack.stop_all()
    finally:
        stack.stop_all()
