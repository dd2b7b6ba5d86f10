"""The default address attaches only to a broker Scrapeledger started; every component says which."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from processors._app import Processor
from scrapeledger import clusters
from scrapeledger.errors import BrokerError
from scrapeledger.settings import Settings
from scrapeledger.topics import admin_client


def _implicit(settings: Settings) -> Settings:
    """The same settings as if KAFKA_BOOTSTRAP_SERVERS had not been set (the default address)."""
    values = {**settings.model_dump(), "metrics_port": 0}
    return Settings.model_construct(_fields_set={"topic_prefix", "state_dir", "metrics_port"}, **values)


def test_an_unknown_cluster_on_the_default_address_is_refused_before_any_topic_exists(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # a component on the default 127.0.0.1:9092 attached to any broker there and created its
    # topics in it (another program's Kafka)
    monkeypatch.setenv("SCRAPELEDGER_CACHE_DIR", str(tmp_path / "cache"))  # no local broker recorded
    implicit = _implicit(settings)
    with pytest.raises(BrokerError) as refused:
        Processor(implicit, "validator").start()
    message = str(refused.value)
    assert "was not started by `scrapeledger broker`" in message
    assert f"set KAFKA_BOOTSTRAP_SERVERS={settings.bootstrap_servers}" in message
    topics = admin_client(settings).list_topics(timeout=10).topics
    assert not [t for t in topics if t.startswith(settings.topic_prefix)]

    # the explicit address is the operator's choice: used, and the cluster is named in the log
    caplog.set_level(logging.INFO, logger="scrapeledger.clusters")
    found = clusters.attach(settings, "validator")
    assert f"validator: Kafka cluster {found} at {settings.bootstrap_servers}, topic prefix " \
        f"'{settings.topic_prefix}'" in caplog.text

    # a cluster a local broker recorded (what `scrapeledger broker` / `up` do) is trusted
    clusters.record_local(settings.bootstrap_servers, found)
    assert clusters.attach(implicit, "validator") == found


def test_the_local_broker_records_its_cluster(kafka_bootstrap: str) -> None:
    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        pytest.skip("this session runs on an external cluster, not a LocalBroker")
    explicit = Settings(bootstrap_servers=kafka_bootstrap)
    assert clusters.recorded(kafka_bootstrap) == clusters.cluster_id(explicit, 10)
