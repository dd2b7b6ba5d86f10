"""``scrapeledger replay``: history, redrive, rebuild, tail, against a real pipeline."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import orjson

import ledger
from replay import current_state, history
from scrapeledger import topics
from scrapeledger.broker import free_port
from scrapeledger.clients import make_producer
from tests.support.stack import Stack, eventually

from .wsclient import Raw


def replay(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "scrapeledger.cli", "replay", *args],
        env=stack.env, capture_output=True, text=True, timeout=120, check=False,
    )


def run_jobs(url: str, messages: list[str]) -> list[dict[str, object]]:
    async def go() -> list[dict[str, object]]:
        ws = await Raw.connect(url)
        results = [await ws.job(m) for m in messages]
        await ws.close()
        return results

    return asyncio.run(go())


def test_history_shows_the_timeline_and_json(stack: Stack, pages: str) -> None:
    stack.processors()
    [result] = run_jobs(stack.edge(), [f"{pages}/page/2"])
    job_id = str(result["job_id"])
    out = replay(stack, "history", job_id)
    assert out.returncode == 0, out.stderr
    for t in ("JobSubmitted", "JobValidated", "ScrapeSucceeded", "succeeded after 1 attempt"):
        assert t in out.stdout
    as_json = replay(stack, "history", job_id, "--json")
    events = [ledger.decode_event(line) for line in as_json.stdout.splitlines()]
    assert events == history(stack.settings, job_id)
    missing = replay(stack, "history", ledger.new_job_id())
    assert missing.returncode == 2
    assert "no events for job" in missing.stderr


def test_redrive_sends_dead_letters_back_and_keeps_counting_attempts(stack: Stack, pages: str) -> None:
    stack.env["SCRAPER_MAX_ATTEMPTS"] = "2"
    stack.processors()
    dead_url = f"http://127.0.0.1:{free_port()}/"
    dead, ok = run_jobs(stack.edge(), [dead_url, f"{pages}/page/1"])
    assert dead["status"] == "dead_lettered"
    job_id = str(dead["job_id"])

    dry = replay(stack, "redrive", "--code", "connect_error", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert f"would redrive {job_id}" in dry.stdout
    assert str(ok["job_id"]) not in dry.stdout
    assert not any(isinstance(e, ledger.JobRedriven) for e in history(stack.settings, job_id))

    done = replay(stack, "redrive", "--job", job_id, "--reason", "test")
    assert done.returncode == 0, done.stderr
    assert "1 job(s) redriven" in done.stdout
    def dead_twice() -> list[ledger.Event]:  # the redriven job runs its attempts, dead-letters again
        events = history(stack.settings, job_id)
        return events if sum(isinstance(e, ledger.JobDeadLettered) for e in events) == 2 else []

    events = eventually(dead_twice, what="the second dead letter")
    outcomes = [e.attempt for e in events if e.event_id.endswith("/outcome")]
    assert outcomes == [1, 2, 3, 4]  # numbering continues, the budget restarts
    redriven = [e for e in events if isinstance(e, ledger.JobRedriven)]
    assert len(redriven) == 1
    assert redriven[0].reason == "test"


def test_rebuild_restores_job_state_from_the_ledger(stack: Stack, pages: str) -> None:
    stack.processors()
    results = run_jobs(stack.edge(), [f"{pages}/page/{i}" for i in range(3)])
    job_id = str(results[0]["job_id"])

    def settled() -> bool:
        # every job's delivery recorded and folded into job-state (written once per checkpoint)
        for r in results:
            jid = str(r["job_id"])
            events = history(stack.settings, jid)
            if "ResultDelivered" not in {e.TYPE for e in events}:
                return False
            if current_state(stack.settings, jid) != ledger.fold_all(events)[jid]:
                return False
        return True

    eventually(settled, what="job-state to hold every job's final fold")
    stack.stop_all()  # rebuild must work with the service down, too
    # corrupt the compacted copy with a stale state (it has seen fewer events than the ledger)
    producer = make_producer(stack.settings)
    stale = ledger.JobState(job_id=job_id, status="submitted")
    producer.produce(stack.settings.topic(topics.JOB_STATE), key=job_id, value=stale.to_json())
    producer.flush(30)
    out = replay(stack, "rebuild")
    assert out.returncode == 0, out.stderr
    assert "rebuilt 3 jobs from" in out.stdout
    assert "wrote 1," in out.stdout
    assert current_state(stack.settings, job_id) == ledger.fold_all(history(stack.settings, job_id))[job_id]


def test_tail_follows_the_ledger_with_filters(stack: Stack, pages: str) -> None:
    stack.processors()
    url = stack.edge()
    tail = subprocess.Popen(
        [sys.executable, "-m", "scrapeledger.cli", "replay", "tail", "--type", "ScrapeSucceeded",
         "--json", "--max", "2"],
        env=stack.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert tail.stderr is not None
        assert "tailing" in tail.stderr.readline()
        results = run_jobs(url, [f"{pages}/status/404", f"{pages}/page/1", f"{pages}/page/2"])
        out, _ = tail.communicate(timeout=60)
    finally:
        if tail.poll() is None:
            tail.kill()
            tail.communicate()
    lines = [orjson.loads(line) for line in out.splitlines()]
    assert [d["type"] for d in lines] == ["ScrapeSucceeded", "ScrapeSucceeded"]
    assert {d["job_id"] for d in lines} == {results[1]["job_id"], results[2]["job_id"]}


def test_redrive_refuses_a_status_it_cannot_select_and_names_the_allowed_ones() -> None:
    # `--status bogus` was accepted and found 0 jobs
    out = subprocess.run([sys.executable, "-m", "scrapeledger.cli", "replay", "redrive", "--status", "bogus"],
                         capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 2
    assert "bogus" in out.stderr and "dead_lettered or failed" in out.stderr


def test_a_replay_command_with_the_broker_down_fails_at_once_in_one_line() -> None:
    # it printed 10 s of librdkafka FAIL lines before its error
    env = {"PATH": "/usr/bin:/bin", "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}"}
    for args in (["history", ledger.new_job_id()], ["rebuild", "--dry-run"], ["tail", "--max", "1"]):
        out = subprocess.run([sys.executable, "-m", "scrapeledger.cli", "replay", *args], env=env,
                             capture_output=True, text=True, timeout=60, check=False)
        assert out.returncode == 2, out
        assert "FAIL" not in out.stderr and "Traceback" not in out.stderr
        assert "is not reachable" in out.stderr and "KAFKA_BOOTSTRAP_SERVERS" in out.stderr
