"""API keys on the real broker: 401 without a valid key (HTTP and the WebSocket upgrade), a key
sees only its own jobs (another key's job answers byte for byte as an unknown id, on every
endpoint and over WebSocket resume and cancel), idempotency keys are scoped by key, the per-key
limits answer 429 + Retry-After / ``rate_limited``, and no key reaches a topic or a log line."""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import sys
import uuid
from typing import Any

import httpx
import orjson
import pytest
from tornado.httpclient import HTTPClientError, HTTPRequest
from tornado.websocket import websocket_connect

import ledger
from replay import read_to_end
from scrapeledger.topics import admin_client
from tests.support.stack import Stack, eventually

from .test_http_api import error_code, http_of
from .wsclient import Raw

KEY_A, KEY_B, KEY_C, KEY_D = (secrets.token_urlsafe(24) for _ in range(4))
KEYS = f"alice:{KEY_A},{KEY_B},carol:{KEY_C},dave:{KEY_D}"  # KEY_B has no name: key-<hash>
LIMITS = {"EDGE_KEY_MAX_IN_FLIGHT": "4", "EDGE_KEY_SUBMIT_BURST": "3", "EDGE_KEY_SUBMITS_PER_S": "0.2"}


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def same_answer(foreign: httpx.Response, job_id: str, unknown: httpx.Response, unknown_id: str) -> None:
    """Status, content type and body as for an unknown id (the body names the id asked for)."""
    assert foreign.status_code == unknown.status_code == 404
    assert foreign.headers["content-type"] == unknown.headers["content-type"]
    assert (foreign.content.replace(job_id.encode(), b"ID")
            == unknown.content.replace(unknown_id.encode(), b"ID"))
    assert error_code(foreign) == "unknown_job"


async def ws(url: str, key: str | None = None, *, query: bool = False) -> Raw:
    if key is not None and query:
        return await Raw.connect(f"{url}?api_key={key}")
    request = HTTPRequest(url, headers=bearer(key) if key else {})
    return Raw(await websocket_connect(request, max_message_size=64 * 1024 * 1024))


async def limited_over_websocket(url: str, key: str) -> None:
    raw = await ws(url, key)
    await raw.send({"event": "job", "message": "http://127.0.0.1:1/", "ref": "x"})
    frame = await raw.recv(30)
    assert (frame["event"], frame["code"], frame["ref"]) == ("error", "rate_limited", "x")
    assert frame["retry_after"] > 0
    await raw.close()


def test_api_keys(stack: Stack, pages: str) -> None:
    stack.processors()
    url = stack.edge(SCRAPELEDGER_API_KEYS=KEYS, SCRAPELEDGER_LOG_LEVEL="DEBUG", **LIMITS)
    base = http_of(url)
    a = httpx.Client(base_url=base, timeout=60, headers=bearer(KEY_A))
    b = httpx.Client(base_url=base, timeout=60, headers=bearer(KEY_B))
    anon = httpx.Client(base_url=base, timeout=60)
    wrong = httpx.Client(base_url=base, timeout=60, headers=bearer(secrets.token_urlsafe(24)))
    try:
        # --- no key, a wrong key: 401 with a stable code; the probes, the contract, the page stay open
        some_id = ledger.new_job_id()
        for client in (anon, wrong):
            for r in (client.post("/v1/jobs", json={"url": f"{pages}/page/1"}), client.get("/v1/jobs"),
                      client.get("/v1/stats"), client.get(f"/v1/jobs/{some_id}"),
                      client.delete(f"/v1/jobs/{some_id}"), client.get(f"/v1/jobs/{some_id}/stream")):
                assert r.status_code == 401 and error_code(r) == "unauthorized", r.request.url
                assert r.headers["www-authenticate"].startswith("Bearer")
        for path in ("/healthz", "/readyz", "/openapi.json", "/ui/", "/ui/app.js"):
            assert anon.get(path).status_code == 200, path
        doc = anon.get("/openapi.json").json()
        assert doc["components"]["securitySchemes"]["apiKey"]["scheme"] == "bearer"
        assert "401" in doc["paths"]["/v1/jobs/{job_id}"]["get"]["responses"]

        async def refused() -> None:
            for key, query in ((None, False), (secrets.token_urlsafe(24), True), ("x" * 30, False)):
                with pytest.raises(HTTPClientError) as err:
                    await ws(url, key, query=query)
                assert err.value.code == 401
                assert err.value.response is not None
                assert orjson.loads(err.value.response.body)["error"]["code"] == "unauthorized"

        asyncio.run(refused())

        # --- alice's jobs are hers: B gets exactly what an unknown id gets, everywhere
        r = a.post("/v1/jobs", json={"url": f"{pages}/page/3"})
        assert r.status_code == 202, r.text
        done_id = r.json()["job_id"]
        assert a.get(f"/v1/jobs/{done_id}", params={"wait": 30}).json()["status"] == "succeeded"
        running_id = a.post("/v1/jobs", json={"url": f"{pages}/hang", "timeout_s": 60}).json()["job_id"]
        unknown_id = ledger.new_job_id()
        every = (("GET", ""), ("GET", "?wait=1"), ("GET", "/events"), ("GET", "/stream"), ("DELETE", ""))
        for job_id, endpoints in ((done_id, every[::2]), (running_id, every)):
            for method, path in endpoints:
                foreign = b.request(method, f"/v1/jobs/{job_id}{path}")
                same_answer(foreign, job_id, b.request(method, f"/v1/jobs/{unknown_id}{path}"), unknown_id)

        async def over_websocket() -> None:
            raw = await ws(url, KEY_B, query=True)  # as a browser would
            for job_id in (done_id, running_id, unknown_id):
                for n, event in enumerate(("resume", "cancel")):
                    await raw.send({"event": event, "job_id": job_id, "ref": n})
                    assert await raw.recv(30) == {"event": "unknown_job", "job_id": job_id, "ref": n}
            await raw.close()
            mine = await ws(url, KEY_A)
            await mine.send({"event": "resume", "job_id": done_id})
            frame = await mine.recv(30)
            assert (frame["event"], frame["status"]) == ("result", "succeeded")
            await mine.close()

        asyncio.run(over_websocket())
        # B's cancels changed nothing; alice's own cancel works
        assert a.get(f"/v1/jobs/{running_id}").json()["status"] not in ledger.TERMINAL
        r = a.delete(f"/v1/jobs/{running_id}")
        assert r.status_code == 200 and r.json()["status"] == "cancelled"

        # --- the same idempotency key from two keys: two jobs
        idem = {"Idempotency-Key": f"order-{uuid.uuid4()}"}
        job = {"url": f"{pages}/page/4"}
        ida = a.post("/v1/jobs", json=job, headers=idem).json()["job_id"]
        idb = b.post("/v1/jobs", json=job, headers=idem).json()["job_id"]
        assert ida != idb
        assert b.get(f"/v1/jobs/{idb}", params={"wait": 30}).json()["status"] == "succeeded"

        # --- the list and the counters show one key's jobs only
        def listed(client: httpx.Client) -> set[str]:
            return {j["job_id"] for j in client.get("/v1/jobs").json()["jobs"]}

        eventually(lambda: listed(a) == {done_id, running_id, ida}, what="alice's jobs listed", interval=0.2)
        eventually(lambda: listed(b) == {idb}, what="B's jobs listed", interval=0.2)
        assert sum(b.get("/v1/stats").json()["counts"].values()) == 1

        # --- per-key limits: jobs in flight (carol), submits per second (dave)
        c = httpx.Client(base_url=base, timeout=60, headers=bearer(KEY_C))
        d = httpx.Client(base_url=base, timeout=60, headers=bearer(KEY_D))
        hang = {"url": f"{pages}/hang", "timeout_s": 60}
        batch = c.post("/v1/jobs", json={"jobs": [hang] * 4})  # larger than the burst: allowed once
        assert batch.status_code == 202, batch.text
        r = c.post("/v1/jobs", json={"url": f"{pages}/page/5"})
        assert r.status_code == 429 and error_code(r) == "rate_limited" and r.headers["retry-after"] == "1"
        assert "in flight" in r.json()["error"]["message"]
        asyncio.run(limited_over_websocket(url, KEY_C))
        for j in batch.json()["jobs"]:  # hanging fetches hold the scraper's checkpoint: let go
            assert c.delete(f"/v1/jobs/{j['job_id']}").status_code == 200
        for _ in range(3):
            assert d.post("/v1/jobs", json={"url": f"{pages}/page/6"}).status_code == 202
        r = d.post("/v1/jobs", json={"url": f"{pages}/page/6"})
        assert r.status_code == 429 and error_code(r) == "rate_limited"
        assert int(r.headers["retry-after"]) >= 1 and "per second" in r.json()["error"]["message"]
        assert b.post("/v1/jobs", json={"url": f"{pages}/page/7"}).status_code == 202  # others go on

        asyncio.run(limited_over_websocket(url, KEY_D))

        # --- the submit CLI takes the key from the environment (or --api-key), and never says it
        def submit(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [sys.executable, "-m", "scrapeledger.cli", "submit", "--server", url, "--json",
                 f"{pages}/page/9"], env={**os.environ, "SCRAPELEDGER_LOG_LEVEL": "DEBUG", **env},
                capture_output=True, text=True, timeout=60)

        ok = submit({"SCRAPELEDGER_API_KEY": KEY_A})
        assert ok.returncode == 0 and orjson.loads(ok.stdout)["status"] == "succeeded", ok.stderr
        refused_cli = submit({"SCRAPELEDGER_API_KEY": KEY_A[::-1]})
        assert refused_cli.returncode == 2 and "401" in refused_cli.stderr
        for out in (ok, refused_cli):
            assert KEY_A not in out.stdout + out.stderr and KEY_A[::-1] not in out.stdout + out.stderr
        c.close()
        d.close()
    finally:
        for client in (a, b, anon, wrong):
            client.close()

    # --- no key in any topic record, nor in any line any process wrote
    secret = [k.encode() for k in (KEY_A, KEY_B, KEY_C, KEY_D)]
    topics = [t for t in admin_client(stack.settings).list_topics(timeout=10).topics
              if t.startswith(stack.settings.topic_prefix)]
    assert any(t.endswith("ledger") for t in topics)
    records = 0
    for topic in topics:
        for msg in read_to_end(stack.settings, topic):
            blob = (msg.key() or b"") + (msg.value() or b"") + b"".join(
                v or b"" for _, v in (msg.headers() or []))
            assert not any(k in blob for k in secret), topic
            records += 1
    assert records > 0
    stack.stop_all()
    output: dict[str, Any] = {name: proc.output() for name, proc in stack.procs.items()}
    assert "tornado.access" in output["edge-a"]  # the access log was on, and named no key
    for name, text in output.items():
        assert not any(k.decode() in text for k in secret), name
