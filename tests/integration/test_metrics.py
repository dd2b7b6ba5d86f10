"""Every process's /metrics moves as jobs run; a processor's /readyz follows the broker."""

from __future__ import annotations

import asyncio
import re
import uuid
from pathlib import Path

from scrapeledger.broker import LocalBroker, free_port
from scrapeledger.settings import Settings
from tests.support.procs import http_get
from tests.support.stack import Stack, eventually

from .wsclient import Raw


def _metric(text: str, name: str, labels: str = "") -> float:
    pattern = rf"^{re.escape(name)}{re.escape(labels)} ([0-9.e+-]+)$"
    values = [float(m.group(1)) for m in re.finditer(pattern, text, re.M)]
    return sum(values)


def _metrics_port(stack: Stack, name: str) -> int:
    return int(stack.procs[name].wait_for(r"health and metrics on port (\d+)").group(1))


def test_metrics_move_as_jobs_run(stack: Stack, pages: str) -> None:
    for name in ("state", "validator", "scraper"):
        stack.start(name, METRICS_PORT=str(free_port()))
    url = stack.edge()
    edge = url.replace("ws://", "http://").rstrip("/")
    ports = {name: _metrics_port(stack, name) for name in ("state", "validator", "scraper")}

    async def go() -> None:
        ws = await Raw.connect(url)
        for i in range(5):
            assert (await ws.job(f"{pages}/page/{i}"))["status"] == "succeeded"
        assert (await ws.job(f"{pages}/status/404"))["status"] == "failed"
        await ws.close()

    asyncio.run(go())
    edge_text = http_get(f"{edge}/metrics")[1]
    assert _metric(edge_text, "scrapeledger_jobs_submitted_total") == 6
    assert _metric(edge_text, "scrapeledger_results_sent_total") == 6
    scraper = http_get(f"http://127.0.0.1:{ports['scraper']}/metrics")[1]
    assert _metric(scraper, "scrapeledger_fetch_attempts_total", '{outcome="ok"}') == 5
    assert _metric(scraper, "scrapeledger_fetch_attempts_total", '{outcome="http_404"}') == 1
    assert _metric(scraper, "scrapeledger_fetch_seconds_count") == 6
    state = http_get(f"http://127.0.0.1:{ports['state']}/metrics")[1]
    assert _metric(state, "scrapeledger_jobs_finished_total", '{status="succeeded"}') == 5
    assert _metric(state, "scrapeledger_jobs_finished_total", '{status="failed"}') == 1
    assert _metric(state, "scrapeledger_job_seconds_count") == 6
    validator = http_get(f"http://127.0.0.1:{ports['validator']}/metrics")[1]
    assert _metric(validator, "scrapeledger_events_processed_total", '{processor="validator"}') >= 6


def test_readyz_is_not_ready_while_the_broker_is_down(tmp_path: Path) -> None:
    port = free_port()
    settings = Settings(bootstrap_servers=f"127.0.0.1:{port}", topic_prefix=f"r{uuid.uuid4().hex[:8]}-",
                        state_dir=str(tmp_path / "state"), partitions=1)
    stack = Stack(settings, tmp_path)
    try:
        proc = stack.start("validator", METRICS_PORT=str(free_port()))
        metrics = int(proc.wait_for(r"health and metrics on port (\d+)", timeout=60).group(1))
        proc.wait_for("waiting for Kafka", timeout=60)
        assert http_get(f"http://127.0.0.1:{metrics}/healthz")[0] == 200  # alive: no restart storm
        assert http_get(f"http://127.0.0.1:{metrics}/readyz")[0] == 503
        with LocalBroker(port=port, data_dir=tmp_path / "kafka"):
            eventually(lambda: http_get(f"http://127.0.0.1:{metrics}/readyz")[0] == 200, timeout=60,
                       what="/readyz to answer 200", interval=0.2)
            assert http_get(f"http://127.0.0.1:{metrics}/healthz")[0] == 200
            stack.stop_all()
    finally:
        stack.stop_all()
