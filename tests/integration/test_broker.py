"""The local Apache Kafka runtime: ready means usable, SIGTERM stops it cleanly, a restart keeps the data."""

from __future__ import annotations

import os
import socket
import time
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from scrapeledger.broker import LocalBroker, kafka_classpath
from scrapeledger.errors import LocalBrokerError


def _create_and_produce(bootstrap: str, topic: str, value: bytes) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(30)
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True})
    producer.produce(topic, key=b"k", value=value)
    assert producer.flush(30) == 0


def _read_first(bootstrap: str, topic: str, timeout: float = 60.0) -> bytes | None:
    """The topic's first record, read through a fresh consumer group (so the group coordinator works too)."""
    consumer = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": f"g{uuid.uuid4().hex}",
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
    })
    consumer.subscribe([topic])
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msg = consumer.poll(1.0)
            if msg is not None and not msg.error():
                return bytes(msg.value())
        return None
    finally:
        consumer.close()


def _process_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_the_session_broker_creates_topics_and_carries_records(
    kafka_bootstrap: str, topic_prefix: str
) -> None:
    topic = f"{topic_prefix}roundtrip"
    _create_and_produce(kafka_bootstrap, topic, b"hello")
    assert _read_first(kafka_bootstrap, topic) == b"hello"


def test_sigterm_stops_cleanly_and_a_restart_keeps_the_records(tmp_path: Path) -> None:
    broker = LocalBroker(port=0, data_dir=tmp_path / "kafka")
    try:
        bootstrap = broker.start()
        _create_and_produce(bootstrap, "kept", b"kept")
        pid = broker.pid
        assert pid is not None
        # SIGTERM runs Kafka's controlled shutdown; the JVM then exits with 128 + 15
        assert broker.stop() in (0, 143), broker.log_tail()
        assert _process_gone(pid)
        assert not broker.running() and broker.pid is None
        assert broker.start() == bootstrap  # same data dir: same port, same cluster, same log
        assert _read_first(bootstrap, "kept") == b"kept"
        broker.kill()  # a crash...
        assert broker.start() == bootstrap  # ...and recovery from an unclean log
        assert _read_first(bootstrap, "kept") == b"kept"
    finally:
        broker.stop()


def test_a_port_in_use_fails_fast_with_a_clear_error(tmp_path: Path) -> None:
    kafka_classpath()  # resolve (or find) the jars first: that part may legitimately take a while
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        broker = LocalBroker(port=port, data_dir=tmp_path / "kafka")
        began = time.monotonic()
        with pytest.raises(LocalBrokerError, match="already in use"):
            broker.start()
        assert time.monotonic() - began < 10
        assert not broker.running()


def test_missing_java_or_maven_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    with pytest.raises(LocalBrokerError, match="java is not on PATH"):
        kafka_classpath(tmp_path / "cache")
