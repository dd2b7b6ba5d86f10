"""The local Apache Kafka runtime: ready means usable, stops cleanly, restarts with its data."""

from __future__ import annotations

import signal
import subprocess
import sys
import uuid
from pathlib import Path

from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from scrapeledger.broker import LocalBroker


def _roundtrip_topic(bootstrap: str, topic: str) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(30)
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all"})
    producer.produce(topic, key=b"k", value=b"kept")
    assert producer.flush(30) == 0


def _read_one(bootstrap: str, topic: str) -> bytes | None:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"g{uuid.uuid4().hex}",
                         "auto.offset.reset": "earliest"})
    consumer.subscribe([topic])
    try:
        for _ in range(60):
            msg = consumer.poll(1.0)
            if msg is not None and not msg.error():
                return bytes(msg.value())
        return None
    finally:
        consumer.close()


def test_sigterm_stops_cleanly_and_a_restart_keeps_the_records(tmp_path: Path) -> None:
    broker = LocalBroker(port=0, data_dir=tmp_path / "kafka")
    try:
        bootstrap = broker.start()
        _roundtrip_topic(bootstrap, "kept")
        # SIGTERM runs Kafka's shutdown hooks; the JVM then exits with 128 + 15
        assert broker.stop() == 143
        assert not broker.running()
        assert broker.start() == bootstrap  # same data dir: same port, same log
        assert _read_one(bootstrap, "kept") == b"kept"
        broker.kill()  # a crash...
        broker.start()  # ...and a recovery
        assert _read_one(bootstrap, "kept") == b"kept"
    finally:
        broker.close()


def test_the_broker_command_prints_ready_and_stops_on_sigterm(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "scrapeledger.cli", "broker", "--port", "0", "--data-dir", str(tmp_path)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # blocks until the command says it is ready (or exits)
        assert "broker ready" in line, line
        bootstrap = line.split("broker ready at ", 1)[1].split()[0]
        _roundtrip_topic(bootstrap, "cli-topic")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
