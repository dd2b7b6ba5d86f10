"""``scrapeledger submit`` against a stand-in edge (tests/support/fake_edge.py): no broker."""

from __future__ import annotations

import asyncio
import importlib.metadata
import os
import pty
import select
import socket
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from scrapeledger.cli import app
from tests.support.fake_edge import fake_edge
from ws_edge import JobRequest

runner = CliRunner()


def lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def test_a_batch_from_a_file_prints_json_lines_in_input_order(tmp_path: Path) -> None:
    urls = [f"http://pages.test/ok/{n}" for n in range(20)]
    listing = tmp_path / "urls.txt"
    listing.write_text("# twenty pages\n\n" + "\n".join(urls[:10]) + "\n  \n# more\n" + "\n".join(urls[10:]))
    # the edge answers only once all 20 are in flight, and then last one first
    with fake_edge(hold=20) as edge:
        result = runner.invoke(app, ["submit", "--server", edge.url, "--file", str(listing), "--json",
                                     "--concurrency", "20"])
    assert result.exit_code == 0, result.output
    out = [orjson.loads(line) for line in lines(result.stdout)]
    assert [o["url"] for o in out] == urls
    assert all(o["status"] == "succeeded" for o in out)
    assert [o["html"] for o in out] == [f"<html><title>page {n}</title>page {n} </html>" for n in range(20)]
    assert "ref" not in out[0]  # the client's own bookkeeping refs stay out of the output
    assert lines(result.stderr)[-1].startswith("20 jobs in ")
    assert "20 succeeded, 0 failed, 0 rejected, 0 dead_lettered" in result.stderr


def test_mixed_outcomes_are_counted_and_the_exit_code_is_1() -> None:
    too_long = "http://pages.test/" + "x" * 9000  # the edge refuses the frame (bad_frame, ref echoed)
    urls = ["http://p.test/ok/1", "http://p.test/fail", "http://p.test/reject", "http://p.test/dead",
            "http://p.test/expire", too_long, "http://p.test/ok/2"]
    with fake_edge() as edge:
        result = runner.invoke(app, ["submit", "--server", edge.url, *urls])
    assert result.exit_code == 1, result.output
    out = lines(result.stdout)
    assert len(out) == 7
    assert out[0].endswith("succeeded 200 http://p.test/ok/1 (2 ms, 41 chars)")
    assert out[1].endswith("failed: http_404: HTTP 404 (http://p.test/fail)")
    assert " rejected: blocked_address: " in out[2]
    assert " dead_lettered: timeout: " in out[3]
    assert " expired: expired: " in out[4]
    assert out[5].startswith("- error: bad_frame: 'url' is longer than 8192 characters")
    assert lines(result.stderr)[-1].split(": ", 1)[1] == (
        "2 succeeded, 1 failed, 1 rejected, 1 dead_lettered, 1 expired, 1 error"
    )


def test_only_succeeded_jobs_exit_0_and_json_marks_edge_errors() -> None:
    with fake_edge() as edge:
        ok = runner.invoke(app, ["submit", "--server", edge.url, "--json", "http://p.test/ok/1", "http://p.test/ok/2"])
        bad = runner.invoke(app, ["submit", "--server", edge.url, "--json", "http://p.test/ok/1", " "])
    assert ok.exit_code == 0
    assert bad.exit_code == 1
    refused = orjson.loads(lines(bad.stdout)[1])
    assert refused["status"] == "error"
    assert refused["error"]["code"] == "bad_frame"


def test_urls_from_stdin() -> None:
    with fake_edge() as edge:
        result = runner.invoke(
            app, ["submit", "--server", edge.url, "--file", "-", "--json", "--ref", "b"],
            input="http://p.test/ok/1\n# skip me\n\nhttp://p.test/ok/2\n",
        )
    assert result.exit_code == 0, result.output
    out = [orjson.loads(line) for line in lines(result.stdout)]
    assert [o["url"] for o in out] == ["http://p.test/ok/1", "http://p.test/ok/2"]
    assert [o["ref"] for o in out] == ["b-1", "b-2"]  # one --ref, numbered in input order


def test_header_timeout_proxy_and_ref_reach_the_edge() -> None:
    with fake_edge() as edge:
        result = runner.invoke(app, [
            "submit", "--server", edge.url, "--json", "-H", "X-Test: 1", "--header", "Accept:text/html",
            "--timeout", "2.5", "--proxy", "http://127.0.0.1:8888", "--ref", "mine", "http://p.test/ok/1",
        ])
        plain = runner.invoke(app, ["submit", "--server", edge.url, "http://p.test/ok/2"])
    assert result.exit_code == 0, result.output
    first, second = edge.requests
    assert isinstance(first, JobRequest) and isinstance(second, JobRequest)
    assert first.headers == {"X-Test": "1", "Accept": "text/html"}
    assert first.timeout_s == 2.5
    assert first.proxy == "http://127.0.0.1:8888"
    assert first.ref == "mine"
    assert orjson.loads(result.stdout)["ref"] == "mine"
    # without options the frame is the original clients' form: a bare URL string
    assert (second.headers, second.timeout_s, second.proxy) == ({}, None, None)
    assert plain.exit_code == 0


def test_the_single_url_output_is_what_it_was() -> None:
    with fake_edge() as edge:
        result = runner.invoke(app, ["submit", "--server", edge.url, "http://p.test/ok/7"])
        failed = runner.invoke(app, ["submit", "--server", edge.url, "http://p.test/fail"])
    assert result.exit_code == 0
    assert result.stdout == "<html><title>page 7</title>page 7 </html>\n"
    assert lines(result.stderr) == ["accepted job0001", "job0001 200 http://p.test/ok/7 (2 ms, 41 chars)"]
    assert failed.exit_code == 1
    assert failed.stdout == "job0002 failed: http_404: HTTP 404\n"


def test_http_server_urls_are_taken_as_websocket() -> None:
    with fake_edge() as edge:
        http = edge.url.replace("ws://", "http://")
        result = runner.invoke(app, ["submit", "--server", http, "http://p.test/ok/1"])
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize(
    ("server", "says"),
    [
        ("nonsense", "is not a URL"),
        ("ftp://127.0.0.1:3001", "has scheme 'ftp'"),
        ("ws://127.0.0.1:notaport", "invalid port"),
        ("ws:///path", "names no host"),
    ],
)
def test_a_bad_server_is_one_clear_line(server: str, says: str) -> None:
    result = runner.invoke(app, ["submit", "--server", server, "http://p.test/ok/1"])
    assert result.exit_code == 2
    assert result.exception is None or isinstance(result.exception, SystemExit)  # no KeyError
    (line,) = lines(result.stderr)
    assert line.startswith(f"error: server {server!r} ") and says in line
    assert line.endswith("e.g. ws://127.0.0.1:3001")


def test_a_dead_edge_fails_within_seconds_with_one_line() -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "scrapeledger.cli", "submit", "--server", f"ws://127.0.0.1:{port}",
         "http://p.test/ok/1"],
        capture_output=True, text=True, timeout=30,
    )
    elapsed = time.monotonic() - started
    assert proc.returncode == 3, proc.stderr
    assert lines(proc.stderr) == [
        f"error: cannot connect to ws://127.0.0.1:{port}/: [Errno 111] Connection refused "
        "(is the edge running? `scrapeledger up` starts one)"
    ]
    assert elapsed < 15  # the old client retried for 120 s; this one gives up after ~3 s


def test_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout == f"scrapeledger {importlib.metadata.version('scrapeledger')}\n"


def test_bad_usage_exits_2() -> None:
    for argv in (["submit"], ["submit", "-H", "nocolon", "http://x/"], ["submit", "--file", "/nonexistent/x"],
                 ["submit", "--concurrency", "0", "http://x/"], ["submit", "--resume", "a", "http://x/"]):
        result = runner.invoke(app, argv)
        assert result.exit_code == 2, (argv, result.output)
        assert len(lines(result.stderr)) == 1 and result.stderr.startswith("error: "), (argv, result.stderr)


def test_resume_of_an_unknown_job_says_so() -> None:
    with fake_edge() as edge:
        result = runner.invoke(app, ["submit", "--server", edge.url, "--resume", "a" * 22])
    assert result.exit_code == 1
    assert "unknown_job" in result.stdout


def test_the_progress_bar_is_drawn_on_a_terminal_only(tmp_path: Path) -> None:
    listing = tmp_path / "urls.txt"
    listing.write_text("\n".join(f"http://p.test/ok/{n}" for n in range(3)))
    with fake_edge() as edge:
        argv = [sys.executable, "-m", "scrapeledger.cli", "submit", "--server", edge.url,
                "--file", str(listing)]
        piped = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        master, slave = pty.openpty()
        try:
            proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=slave, text=True,
                                    env={**os.environ, "COLUMNS": "100", "TERM": "xterm"})
            os.close(slave)
            terminal = b""
            while True:  # read the terminal until the child closes it (EOF / EIO)
                ready, _, _ = select.select([master], [], [], 60)
                assert ready, "no output from submit on its terminal"
                try:
                    chunk = os.read(master, 65536)
                except OSError:
                    break
                if not chunk:
                    break
                terminal += chunk
            assert proc.wait(30) == 0
            assert proc.stdout is not None
            proc.stdout.close()
        finally:
            os.close(master)
    assert piped.returncode == 0
    assert "\x1b" not in piped.stderr and "━" not in piped.stderr
    assert lines(piped.stderr)[-1].startswith("3 jobs in ")
    drawn = terminal.decode(errors="replace")
    assert "━" in drawn and "3/3" in drawn
    assert "3 jobs in " in drawn


def test_concurrency_bounds_the_jobs_in_flight() -> None:
    """run_batch never has more than ``concurrency`` jobs between submit and result."""
    from ws_edge import JobSpec
    from ws_edge._batch import Item, run_batch

    class Recorder:
        def __init__(self) -> None:
            self.in_flight = 0
            self.most = 0
            self.release = asyncio.Event()

        async def scrape(self, job: JobSpec, **_: object) -> dict[str, object]:
            self.in_flight += 1
            self.most = max(self.most, self.in_flight)
            await self.release.wait()
            self.in_flight -= 1
            return {"status": "succeeded", "url": job.url}

    async def go() -> tuple[int, int, list[str]]:
        client = Recorder()
        items = [Item(JobSpec(f"http://p.test/ok/{n}")) for n in range(9)]
        task = asyncio.ensure_future(run_batch(client, items, concurrency=3))  # type: ignore[arg-type]
        for _ in range(50):  # every task gets many turns: an unbounded batch would have all 9 out
            await asyncio.sleep(0)
        held = client.in_flight
        client.release.set()
        outcomes = await task
        return held, client.most, [str(o["url"]) for o in outcomes]

    held, most, urls = asyncio.run(go())
    assert (held, most) == (3, 3)
    assert urls == [f"http://p.test/ok/{n}" for n in range(9)]


def test_ctrl_c_says_the_jobs_go_on_and_exits_130() -> None:
    import signal

    with fake_edge(hold=100) as edge:  # accepts, never answers
        proc = subprocess.Popen(
            [sys.executable, "-m", "scrapeledger.cli", "submit", "--server", edge.url, "http://p.test/ok/1"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        assert proc.stderr is not None
        assert proc.stderr.readline() == "accepted job0001\n"
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130
    assert lines(err) == [
        "interrupted: accepted jobs still run; `scrapeledger submit --resume JOB_ID` fetches one"
    ]


def test_formats_reach_the_edge_and_a_page_without_html_prints_its_markdown() -> None:
    with fake_edge() as edge:
        result = runner.invoke(app, ["submit", "--server", edge.url, "--formats", "markdown, links",
                                     "http://p.test/ok/3"])
        meta = runner.invoke(app, ["submit", "--server", edge.url, "--formats", "metadata",
                                   "http://p.test/ok/4"])
        plain = runner.invoke(app, ["submit", "--server", edge.url, "http://p.test/ok/5"])
    assert result.exit_code == meta.exit_code == plain.exit_code == 0, result.output
    asked, _, default = edge.requests
    assert isinstance(asked, JobRequest) and asked.formats == ("markdown", "links")
    assert isinstance(default, JobRequest) and default.formats == ("html",)
    assert result.stdout == "page 3\n"
    assert orjson.loads(meta.stdout) == {"metadata": {"title": "page 4", "status": 200}}
    assert plain.stdout == "<html><title>page 5</title>page 5 </html>\n"
