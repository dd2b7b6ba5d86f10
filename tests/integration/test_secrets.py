"""Credentials end to end: they reach the target and its proxy, and nothing else, ever.

A job with ``Authorization``, ``Cookie``, a header named in ``SCRAPELEDGER_SECRET_HEADERS`` and
a per-job proxy with a password runs through the real pipeline: once directly, once after a
retry, once after a dead letter and ``replay redrive``. The page answers with SHA-256 digests of
the headers it received (so the page itself, hence the bodies topic, never holds them) and the
proxy refuses requests without its password (407). Then the raw records of every topic of the
deployment (ledger, job-state, deliveries, bodies, dlq, the state store's changelog), the output
of ``replay history``, ``replay redrive`` and every process's log (at DEBUG, so every per-job
line is there) are searched: no secret, and in the logs no whole job id and no query string.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import secrets
import subprocess
import sys
from typing import Any

import orjson

import ledger
from replay import current_state, history, read_to_end
from scrapeledger.redact import job_ref
from scrapeledger.topics import admin_client
from tests.support.proxy import spawn_proxy
from tests.support.stack import Stack, eventually

from .wsclient import Raw


def sha(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def test_credentials_never_reach_a_topic_a_log_or_the_replay_output(stack: Stack, pages: str) -> None:
    token, cookie, session, password = (f"S{i}{secrets.token_hex(12)}" for i in range(4))
    queries = [f"q{i}{secrets.token_hex(10)}" for i in range(3)]
    headers = {"Authorization": f"Bearer {token}", "Cookie": f"sid={cookie}", "X-Session-Token": session}
    stack.env.update(SCRAPELEDGER_SECRET_HEADERS="X-Session-Token", SCRAPELEDGER_LOG_LEVEL="DEBUG",
                     SCRAPER_MAX_ATTEMPTS="2")
    stack.processors()
    edge = stack.edge()
    with spawn_proxy("auth", auth=f"user:{password}") as proxy_url:
        proxy = proxy_url.replace("http://", f"http://user:{password}@")
        paths = [
            f"/digest-headers?token={queries[0]}",                          # succeeds at once
            f"/digest-headers?key={queries[1]}&fail=1&token={queries[1]}",  # after one retry
            f"/digest-headers?key={queries[2]}&fail=2&token={queries[2]}",  # dead-lettered, redriven
        ]

        async def submit() -> list[dict[str, Any]]:
            ws = await Raw.connect(edge)
            out = [await ws.job({"url": pages + p, "headers": headers, "proxy": proxy}) for p in paths]
            await ws.close()
            return out

        results = asyncio.run(submit())
        assert [r["status"] for r in results] == ["succeeded", "succeeded", "dead_lettered"], results
        job_ids = [str(r["job_id"]) for r in results]
        redrive = subprocess.run(
            [sys.executable, "-m", "scrapeledger.cli", "replay", "redrive", "--job", job_ids[2]],
            env=stack.env, capture_output=True, text=True, timeout=120, check=False,
        )
        assert redrive.returncode == 0, redrive.stderr
        eventually(lambda: any(isinstance(e, ledger.ScrapeSucceeded) for e in history(stack.settings,
                                                                                      job_ids[2])),
                   what="the redriven job to succeed")

        async def resume() -> dict[str, Any]:
            ws = await Raw.connect(edge)
            await ws.send({"event": "resume", "job_id": job_ids[2]})
            frame = await ws.recv()
            await ws.close()
            return frame

        results[2] = asyncio.run(resume())
    assert results[2]["status"] == "succeeded" and results[2]["attempts"] == 3
    assert results[1]["attempts"] == 2
    for result in results:  # each attempt that succeeded carried every credential (the proxy's too)
        digests = orjson.loads(str(result["html"]))
        assert digests["authorization"] == sha(f"Bearer {token}")
        assert digests["cookie"] == sha(f"sid={cookie}")
        assert digests["x-session-token"] == sha(session)

    def settled() -> bool:  # every job's final state (and delivery) written before the topics are read
        return all(
            (state := current_state(stack.settings, j)) is not None and state.status == "succeeded"
            and "ResultDelivered" in {e.TYPE for e in history(stack.settings, j)}
            for j in job_ids
        )

    eventually(settled, what="job-state to hold every job's final state")
    replay_out = [redrive.stdout + redrive.stderr]
    for job_id in job_ids:
        for args in (("history", job_id), ("history", job_id, "--json")):
            out = subprocess.run([sys.executable, "-m", "scrapeledger.cli", "replay", *args], env=stack.env,
                                 capture_output=True, text=True, timeout=120, check=False)
            assert out.returncode == 0, out.stderr
            replay_out.append(out.stdout + out.stderr)
    stack.stop_all()  # every log complete

    secret_values = [token, cookie, session, password,
                     base64.b64encode(f"user:{password}".encode()).decode()]  # Proxy-Authorization
    topics = sorted(t for t in admin_client(stack.settings).list_topics(timeout=10).topics
                    if stack.settings.topic_prefix in t)
    assert any(t.startswith("changelog__") for t in topics), topics  # the state store's copy too
    records = 0
    for topic in topics:
        for msg in read_to_end(stack.settings, topic):
            records += 1
            extra = b"".join(v or b"" for _, v in msg.headers() or [])
            raw = (msg.key() or b"") + (msg.value() or b"") + extra
            for value in secret_values:
                assert value.encode() not in raw, (topic, value)
    assert records > 30
    submitted = history(stack.settings, job_ids[0])[0]
    assert isinstance(submitted, ledger.JobSubmitted) and submitted.sealed and submitted.headers == {}

    tables = replay_out[1::2]  # the human view: jobs by prefix, URLs without queries
    assert all("JobSubmitted" in t and "sealed=yes" in t for t in tables)
    logs = {name: proc.output() for name, proc in stack.procs.items()}
    logs["replay"] = "\n".join(replay_out)
    for name, text in logs.items():
        for value in secret_values:
            assert value not in text, (name, value)
        if name == "replay":
            continue  # history --json is the record itself: whole ids and URLs by design
        for job_id in job_ids:
            assert job_id not in text, (name, job_id)
        for query in queries:
            assert query not in text, (name, query)
    for table in tables:
        for value in (*job_ids, *queries):
            assert value not in table, value
    # not vacuous: the DEBUG per-job lines are there, naming jobs by prefix and pages by path
    assert job_ref(job_ids[0]) in logs["edge-a"] and "/digest-headers" in logs["edge-a"]
    assert job_ref(job_ids[0]) in logs["scraper"] and job_ref(job_ids[0]) in logs["validator"]
