"""The README's first command: the whole service locally, broker included; then the client."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from scrapeledger.broker import free_port
from tests.support.stack import Proc


def test_up_runs_the_whole_service_and_submit_prints_the_page(tmp_path: Path, pages: str) -> None:
    port, kafka_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if k != "KAFKA_BOOTSTRAP_SERVERS"}
    env.update(SCRAPER_ALLOW_PRIVATE="1", PYTHONUNBUFFERED="1")
    popen = subprocess.Popen(
        [sys.executable, "-m", "scrapeledger.cli", "up", "--port", str(port),
         "--kafka-port", str(kafka_port), "--data-dir", str(tmp_path)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
    )
    up = Proc("up", popen)
    import threading

    def pump() -> None:
        assert popen.stdout is not None
        for line in popen.stdout:
            up.lines.append(line)
            up.events.put(line)

    up.pump = threading.Thread(target=pump, daemon=True)
    up.pump.start()
    try:
        up.wait_for(r"broker ready at", timeout=120)
        up.wait_for(rf"edge \S+ ready on port {port}", timeout=120)
        out = subprocess.run(
            [sys.executable, "-m", "scrapeledger.cli", "submit", f"{pages}/page/5",
             "--server", f"ws://127.0.0.1:{port}/"],
            capture_output=True, text=True, timeout=120, env=env, check=False,
        )
        assert out.returncode == 0, out.stderr
        assert "page 5" in out.stdout
        assert "accepted" in out.stderr
    finally:
        popen.send_signal(signal.SIGTERM)
        code = popen.wait(90)
        up.close()
    assert code == 0, up.output()[-3000:]
