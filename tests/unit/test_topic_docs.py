"""Topic docs (also in k8s/topics.yaml) say what the producers really do."""

from __future__ import annotations

from scrapeledger import topics
from scrapeledger.clients import producer_config
from scrapeledger.settings import Settings


def test_the_bodies_topic_names_the_compression_its_producer_uses() -> None:
    settings = Settings()
    bodies = {spec.name: spec for spec in topics.topic_specs(settings)}[topics.BODIES]
    assert bodies.config["compression.type"] == "producer"  # the broker keeps what was sent
    assert producer_config(settings)["compression.type"] in bodies.doc
