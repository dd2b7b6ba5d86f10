"""A three-node local cluster: topics replicated three ways, and a node's loss costs no job."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient

from scrapeledger import topics
from scrapeledger.broker import LocalCluster
from scrapeledger.settings import Settings
from tests.support.load import (
    assert_pages,
    assert_same_processes,
    explain_unanswered,
    pids,
    save_logs,
    scrape_through_a_fault,
)
from tests.support.stack import Stack, eventually, start_pages


@pytest.mark.timeout(480)
def test_three_nodes_replicate_every_topic_and_lose_one_without_losing_a_job(tmp_path: Path) -> None:
    with LocalCluster(3, port=0, data_dir=tmp_path / "kafka") as cluster, start_pages() as pages:
        settings = Settings(
            bootstrap_servers=cluster.bootstrap, topic_prefix=f"rf{uuid.uuid4().hex[:8]}-",
            state_dir=str(tmp_path / "state"), partitions=3, delivery_partitions=4,
        )
        topics.ensure_topics(settings)
        admin = AdminClient({"bootstrap.servers": cluster.bootstrap})
        meta = admin.list_topics(timeout=10)
        assert len(meta.brokers) == 3
        for spec in topics.topic_specs(settings):
            name = settings.topic(spec.name)
            assert {len(p.replicas) for p in meta.topics[name].partitions.values()} == {3}, name
            assert topics.describe_topic_config(admin, name)["min.insync.replicas"] == "2", name

        stack = Stack(settings, tmp_path)
        try:
            stack.processors()
            url = stack.edge("edge-a")
            before = pids(stack)

            def explain(stuck: dict[int, str | None]) -> str:
                return (explain_unanswered(settings, stack, "edge-a", stuck, tmp_path / "logs")
                        + f"\nbrokers:\n{cluster.log_tail(200)}")

            # node 1 is first in every client's bootstrap list and leads its share
            assert_pages(scrape_through_a_fault(url, pages, 150, lambda: cluster.kill(0),
                                                explain=explain))
            assert_same_processes(stack, before)
            # the node comes back on its own directory and ports and rejoins the cluster
            cluster.restart(0)
            eventually(lambda: len(admin.list_topics(timeout=5).brokers) == 3, timeout=60,
                       what="node 1 to rejoin", interval=0.5)
        finally:
            stack.stop_all()
            save_logs(stack, tmp_path / "logs")
