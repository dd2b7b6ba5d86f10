"""``scrapeledger submit`` as a user runs it, on a real stack: a batch from a file, in order."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson

from scrapeledger.broker import free_port
from tests.support.stack import Stack


def test_a_batch_of_20_from_a_file_prints_json_lines_in_input_order(
    stack: Stack, pages: str, tmp_path: Path
) -> None:
    stack.processors()
    server = stack.edge()
    urls = [f"{pages}/page/{n}" for n in range(16)]
    urls[3] = f"{pages}/slow?ms=1500"  # finishes well after the pages listed behind it
    urls += [
        f"{pages}/headers",  # the --header reaches the page server
        f"{pages}/status/404",  # failed
        "ftp://127.0.0.1/file",  # rejected by the validator
        f"http://127.0.0.1:{free_port()}/",  # nothing listens: dead-lettered after the retries
    ]
    listing = tmp_path / "urls.txt"
    listing.write_text("# a newcomer's list\n" + "\n\n".join(urls) + "\n")
    proc = subprocess.run(
        [sys.executable, "-m", "scrapeledger.cli", "submit", "--server", server.replace("ws://", "http://"),
         "--file", str(listing), "--json", "--concurrency", "8", "--header", "X-Probe: yes"],
        capture_output=True, text=True, timeout=180,
    )
    assert proc.returncode == 1, proc.stderr  # not every job succeeded
    out = [orjson.loads(line) for line in proc.stdout.splitlines()]
    assert [o["url"] for o in out] == urls
    statuses = [o["status"] for o in out]
    assert statuses == ["succeeded"] * 17 + ["failed", "rejected", "dead_lettered"]
    for n in (0, 1, 2, 15):
        assert f"page {n} " in out[n]["html"]
    assert "slow" in out[3]["html"]
    assert orjson.loads(out[16]["html"])["x-probe"] == "yes"
    assert out[17]["error"]["code"] == "http_404"
    assert out[19]["error"]["code"] == "connect_error"
    # stderr is a pipe here: the summary line, no progress bar drawn into it
    assert "\x1b" not in proc.stderr
    assert proc.stderr.splitlines()[-1].split(": ", 1)[1] == (
        "17 succeeded, 1 failed, 1 rejected, 1 dead_lettered"
    )
