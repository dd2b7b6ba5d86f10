"""The chaos test, short form: see tests/support/chaos.py for what runs and what is checked.

``bench/chaos.py`` runs the long form (more jobs, more kills, several runs) and prints figures.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from scrapeledger.settings import Settings
from tests.support.chaos import ChaosConfig, run_chaos
from tests.support.stack import start_pages


@pytest.mark.timeout(600)
def test_nothing_is_lost_while_processes_are_killed_and_clients_drop(
    settings: Settings, tmp_path: Path
) -> None:
    cfg = ChaosConfig(jobs=1500, clients=15, rate=50.0, kill_every=2.5, disconnect_every=4.0, deadline_s=400)
    with start_pages() as pages:
        report = run_chaos(settings, tmp_path, pages, cfg)
    print(report.summary(), *report.problems(), sep="\n")
    assert report.problems() == [], report.summary()
    # the run really was chaotic: every kind of process died, clients really resumed
    assert set(report.kills) == {"state", "validator", "scraper", "edge-a", "edge-b"}, report.kills
    assert report.resumes > 0 and report.disconnects > 0
    assert report.lost == 0 and len(report.results) == cfg.jobs
