"""The HTTP API on the edge's port, on the real broker: every endpoint, every error, idempotent
resubmits across pods, cancellation of a fetch in flight, and SSE resumed on another pod."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest

import ledger
from replay import history
from scrapeledger.errors import UnknownJobError
from tests.support.stack import Stack, eventually

from .wsclient import Raw


def http_of(ws_url: str) -> str:
    return ws_url.replace("ws://", "http://").rstrip("/")


def types_of(stack: Stack, job_id: str) -> list[str]:
    return [e.TYPE for e in history(stack.settings, job_id)]


def error_code(response: httpx.Response) -> str:
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    return str(body["error"]["code"])


def sse(response: httpx.Response) -> Iterator[dict[str, Any]]:
    """Parse a text/event-stream response into ``{"id", "event", "data"}`` dicts."""
    event: dict[str, Any] = {}
    for line in response.iter_lines():
        if not line:
            if "data" in event:
                event["data"] = orjson.loads(event["data"])
                yield event
            event = {}
        elif not line.startswith(":"):
            name, _, value = line.partition(": ")
            event[name] = value


def test_endpoints_and_their_errors(stack: Stack, pages: str) -> None:
    stack.processors()
    ws = stack.edge()
    with httpx.Client(base_url=http_of(ws), timeout=60) as api:
        # submit, then wait for the result
        r = api.post("/v1/jobs", json={"url": f"{pages}/page/7", "ref": "r7"})
        assert r.status_code == 202, r.text
        job_id = r.json()["job_id"]
        assert r.json() == {"job_id": job_id, "status": "submitted", "ref": "r7"}
        assert r.headers["location"] == f"/v1/jobs/{job_id}"
        job = api.get(f"/v1/jobs/{job_id}", params={"wait": 30}).json()
        assert job["status"] == "succeeded" and job["result"]["http_status"] == 200
        assert "page 7 " in job["result"]["html"] and job["result"]["job_id"] == job_id
        # the same fields as the WebSocket result frame
        async def ws_result() -> dict[str, Any]:
            raw = await Raw.connect(ws)
            await raw.send({"event": "resume", "job_id": job_id})
            frame = await raw.recv()
            await raw.close()
            return frame

        frame = asyncio.run(ws_result())
        frame.pop("event")
        assert job["result"] == frame
        # its ledger history: the replay history --json records
        events = api.get(f"/v1/jobs/{job_id}/events").json()
        assert events["job_id"] == job_id
        recorded = [ledger.event_to_dict(e) for e in history(stack.settings, job_id)]
        # (the ledger may have grown since: a ResultDelivered written in the background)
        assert events["events"] == recorded[: len(events["events"])]
        assert {"JobSubmitted", "JobValidated", "AttemptStarted", "ScrapeSucceeded"} <= {
            e["type"] for e in events["events"]}
        # a finished job's stream: every transition, then the result
        with api.stream("GET", f"/v1/jobs/{job_id}/stream") as s:
            assert s.headers["content-type"].startswith("text/event-stream")
            streamed = list(sse(s))
        assert streamed[-1]["event"] == "result" and streamed[-1]["data"]["status"] == "succeeded"
        assert [e["data"]["type"] for e in streamed[:-1]] == [
            t for t in types_of(stack, job_id) if t not in ("ClientAttached", "ResultDelivered")
        ]
        # cancelling a finished job changes nothing
        before = api.get(f"/v1/jobs/{job_id}").json()
        r = api.delete(f"/v1/jobs/{job_id}")
        assert r.status_code == 409 and error_code(r) == "already_finished"
        assert api.get(f"/v1/jobs/{job_id}").json() == before
        # output formats pass through as on the WebSocket, and come back as result fields
        r = api.post("/v1/jobs", json={"url": f"{pages}/page/6", "formats": ["text", "links"]})
        formatted = api.get(f"/v1/jobs/{r.json()['job_id']}", params={"wait": 30}).json()["result"]
        assert formatted["status"] == "succeeded" and "page 6" in formatted["text"]
        assert "html" not in formatted and isinstance(formatted["links"], list)
        # a batch: one answer per job, in order
        r = api.post("/v1/jobs", json={"jobs": [{"url": f"{pages}/page/1"}, {"url": f"{pages}/page/2"}]})
        assert r.status_code == 202
        answers = r.json()["jobs"]
        assert [a["status"] for a in answers] == ["submitted", "submitted"]
        assert len({a["job_id"] for a in answers}) == 2
        # a batch with one bad entry submits nothing
        key = f"k-{uuid.uuid4()}"
        r = api.post("/v1/jobs", json={"jobs": [{"url": f"{pages}/page/3", "idempotency_key": key},
                                                {"url": 42}]})
        assert r.status_code == 400 and error_code(r) == "invalid_request"
        assert "jobs[1]" in r.json()["error"]["message"]
        with pytest.raises(UnknownJobError):
            history(stack.settings, ledger.idempotent_job_id(None, key))
        # an idempotency key reused for another URL
        first = api.post("/v1/jobs", json={"url": f"{pages}/page/4"}, headers={"Idempotency-Key": key})
        assert first.status_code == 202
        again = api.post("/v1/jobs", json={"url": f"{pages}/page/4"}, headers={"Idempotency-Key": key})
        assert again.status_code == 202 and again.json()["job_id"] == first.json()["job_id"]
        other = api.post("/v1/jobs", json={"url": f"{pages}/page/5", "idempotency_key": key})
        assert other.status_code == 409 and error_code(other) == "idempotency_conflict"
        # bad input: a clear 4xx with a stable code
        unknown = ledger.new_job_id()
        bad = [
            (api.post("/v1/jobs", content=b"{nope"), 400, "invalid_json"),
            (api.post("/v1/jobs", json=["http://x/"]), 400, "invalid_request"),
            (api.post("/v1/jobs", json={"url": "http://x/", "colour": "red"}), 400, "invalid_request"),
            (api.post("/v1/jobs", json={"jobs": []}), 400, "invalid_request"),
            (api.post("/v1/jobs", json={"url": "http://x/"}, headers={"Idempotency-Key": "a b"}),
             400, "invalid_idempotency_key"),
            (api.post("/v1/jobs", content=b" " * (1024 * 1024 + 1)), 413, "body_too_large"),
            (api.get(f"/v1/jobs/{unknown}"), 404, "unknown_job"),
            (api.get("/v1/jobs/not-an-id"), 404, "unknown_job"),
            (api.get(f"/v1/jobs/{job_id}", params={"wait": 61}), 400, "invalid_wait"),
            (api.get(f"/v1/jobs/{job_id}", params={"wait": "soon"}), 400, "invalid_wait"),
            (api.get(f"/v1/jobs/{unknown}/events"), 404, "unknown_job"),
            (api.get(f"/v1/jobs/{unknown}/stream"), 404, "unknown_job"),
            (api.get(f"/v1/jobs/{job_id}/stream", headers={"Last-Event-ID": "x"}), 400,
             "invalid_last_event_id"),
            (api.delete(f"/v1/jobs/{unknown}"), 404, "unknown_job"),
            (api.get("/v2/anything"), 404, "not_found"),
            (api.put("/v1/jobs", json={}), 405, "method_not_allowed"),
        ]
        for response, status, code in bad:
            assert (response.status_code, error_code(response)) == (status, code), response.request.url
        # the contract is served
        doc = api.get("/openapi.json").json()
        assert doc["openapi"].startswith("3.1")
        assert set(doc["paths"]) == {"/v1/jobs", "/v1/jobs/{job_id}", "/v1/jobs/{job_id}/events",
                                     "/v1/jobs/{job_id}/stream", "/v1/stats"}  # + the dashboard's


def test_an_idempotent_resubmit_on_another_pod_after_sigkill_runs_once(stack: Stack, pages: str) -> None:
    stack.processors()
    first = http_of(stack.edge("edge-a"))
    second = http_of(stack.edge("edge-b"))
    key = f"order-{uuid.uuid4()}"
    job = {"url": f"{pages}/slow?ms=1500", "timeout_s": 30}
    r = httpx.post(f"{first}/v1/jobs", json=job, headers={"Idempotency-Key": key}, timeout=60)
    assert r.status_code == 202
    job_id = r.json()["job_id"]
    stack.kill("edge-a")  # SIGKILL: the client never heard more than this
    r = httpx.post(f"{second}/v1/jobs", json=job, headers={"Idempotency-Key": key}, timeout=60)
    assert r.status_code == 202 and r.json()["job_id"] == job_id
    result = httpx.get(f"{second}/v1/jobs/{job_id}", params={"wait": 30}, timeout=60).json()
    assert result["status"] == "succeeded"
    # and once more, finished: the first job's id and its status, nothing started
    r = httpx.post(f"{second}/v1/jobs", json={"url": "ignored", "idempotency_key": key}, timeout=60)
    assert r.status_code == 409  # another URL
    r = httpx.post(f"{second}/v1/jobs", json={**job, "idempotency_key": key}, timeout=60)
    assert r.json() == {"job_id": job_id, "status": "succeeded"}
    types = types_of(stack, job_id)
    assert types.count("JobSubmitted") == 4
    assert types.count("JobValidated") == 1  # one run: validated once, fetched once
    assert types.count("AttemptStarted") == 1 and types.count("ScrapeSucceeded") == 1


def test_the_websocket_takes_idempotency_keys_and_cancels(stack: Stack, pages: str) -> None:
    stack.processors()
    ws = stack.edge()

    async def go() -> None:
        raw = await Raw.connect(ws)
        key = f"ws-{uuid.uuid4()}"
        result = await raw.job({"url": f"{pages}/page/9", "idempotency_key": key})
        assert result["status"] == "succeeded"
        # the same key again: the same job, answered with its result at once
        again = await raw.job({"url": f"{pages}/page/9", "idempotency_key": key})
        assert again["job_id"] == result["job_id"] and again["status"] == "succeeded"
        await raw.send({"event": "job", "message": {"url": f"{pages}/page/8", "idempotency_key": key},
                        "ref": 3})
        assert await raw.recv() == {"event": "error", "code": "idempotency_conflict",
                                    "message": "this idempotency key was already used for another URL",
                                    "ref": 3}
        await raw.send({"event": "cancel", "job_id": result["job_id"], "ref": 4})
        frame = await raw.recv()
        assert (frame["event"], frame["code"], frame["ref"]) == ("error", "already_finished", 4)
        unknown = ledger.new_job_id()
        await raw.send({"event": "cancel", "job_id": unknown, "ref": 5})
        assert await raw.recv() == {"event": "unknown_job", "job_id": unknown, "ref": 5}
        # a job in flight: cancelled, and its client gets the cancelled result
        await raw.send({"event": "job", "message": {"url": f"{pages}/hang", "timeout_s": 60}})
        job_id = (await raw.recv())["job_id"]
        await raw.send({"event": "cancel", "job_id": job_id, "ref": 6})
        frames = [await raw.recv(), await raw.recv()]
        assert {"event": "cancelled", "job_id": job_id, "ref": 6} in frames
        (res,) = [f for f in frames if f["event"] == "result"]
        assert res["status"] == "cancelled" and res["error"]["code"] == "cancelled"
        await raw.close()

    asyncio.run(go())


def hangs_now(pages: str) -> int:
    return int(httpx.get(f"{pages}/count", timeout=10).json().get("/hang", {}).get("concurrent", 0))


def test_a_cancel_abandons_the_fetch_in_flight_and_no_retry_runs(stack: Stack, pages: str) -> None:
    stack.processors()
    api = http_of(stack.edge())
    hanging = hangs_now(pages)
    r = httpx.post(f"{api}/v1/jobs", json={"url": f"{pages}/hang", "timeout_s": 100}, timeout=60)
    job_id = r.json()["job_id"]
    eventually(lambda: hangs_now(pages) > hanging, what="the fetch in flight at the page server")
    assert "AttemptStarted" in types_of(stack, job_id)
    r = httpx.delete(f"{api}/v1/jobs/{job_id}", timeout=60)
    assert r.status_code == 200 and r.json() == {"job_id": job_id, "status": "cancelled"}
    assert httpx.get(f"{api}/v1/jobs/{job_id}", timeout=60).json()["status"] == "cancelled"
    # the scraper let go of the connection, and closed the attempt without scheduling another
    eventually(lambda: hangs_now(pages) == hanging, what="the fetch abandoned", interval=0.2)
    events = eventually(
        lambda: [e for e in history(stack.settings, job_id) if isinstance(e, ledger.AttemptFailed)] and
        history(stack.settings, job_id), what="the abandoned attempt's outcome",
    )
    (failed,) = [e for e in events if isinstance(e, ledger.AttemptFailed)]
    assert (failed.code, failed.retryable, failed.attempt) == ("cancelled", False, 1)
    assert not [e for e in events if isinstance(e, ledger.RetryScheduled) or e.attempt > 1]
    assert ledger.fold_all(events)[job_id].status == "cancelled"
    # cancelling again is no error: it is cancelled
    assert httpx.delete(f"{api}/v1/jobs/{job_id}", timeout=60).json()["status"] == "cancelled"


def test_sse_resumed_on_another_pod_after_sigkill_gets_the_rest(stack: Stack, pages: str) -> None:
    stack.processors()
    first = http_of(stack.edge("edge-a"))
    second = http_of(stack.edge("edge-b"))
    gate = uuid.uuid4().hex
    r = httpx.post(f"{first}/v1/jobs", json={"url": f"{pages}/gate/{gate}", "timeout_s": 60}, timeout=60)
    job_id = r.json()["job_id"]
    seen: list[dict[str, Any]] = []
    with httpx.stream("GET", f"{first}/v1/jobs/{job_id}/stream", timeout=60) as s:
        for event in sse(s):
            seen.append(event)
            if event["data"].get("type") == "AttemptStarted":
                break  # the fetch is waiting at the gate: the job is mid-way
        stack.kill("edge-a")  # the pod serving the stream dies
    httpx.get(f"{pages}/release/{gate}", timeout=10)
    headers = {"Last-Event-ID": seen[-1]["id"]}
    with httpx.stream("GET", f"{second}/v1/jobs/{job_id}/stream", headers=headers, timeout=60) as s:
        rest = list(sse(s))
    assert [e["event"] for e in rest][-1] == "result"
    streamed = [e["data"] for e in seen + rest[:-1]]
    recorded = [ledger.event_to_dict(e) for e in history(stack.settings, job_id)
              if not isinstance(e, ledger.ClientAttached | ledger.ResultDelivered)]
    assert streamed == recorded  # every transition once, in order, across both pods
    assert all(int(e["id"]) > int(seen[-1]["id"]) for e in rest[:-1])
    assert rest[-1]["data"]["status"] == "succeeded"
