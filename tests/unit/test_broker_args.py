"""``scrapeledger broker`` / ``python -m scrapeledger.broker`` arguments."""

from __future__ import annotations

import pytest

from scrapeledger.broker import LocalCluster, _parse_args


def test_the_broker_command_takes_a_node_count() -> None:
    assert _parse_args(["--nodes", "3", "--port=0"]) == (0, None, 3)
    assert _parse_args([]) == (9092, None, 1)
    with pytest.raises(SystemExit):
        _parse_args(["--nodes", "0"])


def test_a_cluster_has_at_least_two_nodes() -> None:
    with pytest.raises(ValueError, match="at least 2 nodes"):
        LocalCluster(1, port=0)
