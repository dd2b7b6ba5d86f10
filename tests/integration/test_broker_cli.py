"""``python -m scrapeledger.broker``: one ``broker ready`` line once usable, exit 0 on SIGTERM."""

from __future__ import annotations

import queue
import signal
import socket
import subprocess
import sys
import threading
import uuid
from pathlib import Path

from confluent_kafka.admin import AdminClient, NewTopic

from tests.support.stack import eventually


def _lines(stream: subprocess.Popen[str], into: queue.Queue[str | None]) -> None:
    assert stream.stdout is not None
    for line in stream.stdout:
        into.put(line)
    into.put(None)  # EOF: the process closed stdout (it exited)


def test_the_broker_command_prints_ready_and_exits_0_on_sigterm(tmp_path: Path) -> None:
    stderr_path = tmp_path / "stderr.log"
    with stderr_path.open("w") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "scrapeledger.broker",
             "--port", "0", "--data-dir", str(tmp_path / "kafka")],
            stdout=subprocess.PIPE, stderr=stderr, text=True,
        )
    lines: queue.Queue[str | None] = queue.Queue()
    reader = threading.Thread(target=_lines, args=(proc, lines), daemon=True)
    reader.start()
    try:
        line = lines.get(timeout=240)  # the first stdout line is the ready line (or EOF on failure)
        assert line is not None and "broker ready at " in line, stderr_path.read_text()[-3000:]
        bootstrap = line.split("broker ready at ", 1)[1].split()[0]
        host, port = bootstrap.rsplit(":", 1)
        assert host == "127.0.0.1" and int(port) > 0

        admin = AdminClient({"bootstrap.servers": bootstrap})
        topic = f"cli-{uuid.uuid4().hex[:8]}"
        admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(30)
        # metadata reaches the broker shortly after the create returns
        eventually(lambda: topic in admin.list_topics(timeout=10).topics, timeout=30,
                   what=f"{topic} in the metadata", interval=0.1)

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0, stderr_path.read_text()[-3000:]
        assert lines.get(timeout=10) is None, "more than one line on stdout"
        with socket.socket() as s:  # the JVM went with it: nothing listens on the port any more
            assert s.connect_ex(("127.0.0.1", int(port))) != 0
    finally:
        if proc.poll() is None:  # SIGTERM first: a SIGKILLed parent would leave its JVM running
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        reader.join(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()
