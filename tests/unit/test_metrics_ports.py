"""Processors side by side on one machine: distinct metrics ports, loopback, a clear error."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest

from scrapeledger.errors import ConfigError
from scrapeledger.observability import HealthServer
from scrapeledger.settings import Settings
from scrapeledger.supervisor import DEFAULT_METRICS_BASE, PROCESSORS, metrics_ports
from tests.support.procs import ROOT, http_get


def test_each_processor_has_its_own_default_port_and_up_uses_the_same() -> None:
    # all three defaulted to 9000, so the second and third died with EADDRINUSE
    settings = Settings(_env_file=None)
    defaults = {name: settings.metrics_port_for(name) for name in PROCESSORS}
    assert len(set(defaults.values())) == 3 and 0 not in defaults.values()
    assert metrics_ports(DEFAULT_METRICS_BASE) == defaults
    assert {Settings(metrics_port=9300).metrics_port_for(n) for n in PROCESSORS} == {9300}


def test_the_server_binds_loopback_unless_configured() -> None:
    server = HealthServer(_free_port(), lambda: True, "validator")
    try:
        assert server._server is not None and server._server.server_address[0] == "127.0.0.1"
        assert http_get(f"http://127.0.0.1:{server.port}/readyz")[0] == 200
    finally:
        server.close()


def test_port_0_turns_the_server_off() -> None:
    server = HealthServer(0, lambda: True, "validator")
    assert server._server is None
    server.close()


def test_a_taken_port_is_one_clear_error_naming_it_and_the_setting() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError) as info:
            HealthServer(port, lambda: True, "scraper")
        assert f"127.0.0.1:{port}" in str(info.value) and "METRICS_PORT" in str(info.value)
        # the command: one line on stderr, exit 2, no traceback (the broker is never reached)
        out = subprocess.run(
            [sys.executable, "-m", "scrapeledger.cli", "scraper"], cwd=ROOT, capture_output=True,
            text=True, timeout=120, check=False,
            env={"PATH": "/usr/bin:/bin", "METRICS_PORT": str(port),
                 "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9", "SCRAPELEDGER_BROKER_WAIT_S": "1"},
        )
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr
    assert f"error: scraper: the metrics port 127.0.0.1:{port} is not available" in out.stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
