"""The dashboard's reads on the real broker: ``GET /v1/jobs`` pages and filters 12,000 jobs from
``job-state`` with the index bounded at 5,000, two edge pods give the same pages, and a pod
killed and started again rebuilds the same index from the topic."""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import httpx

import ledger
from scrapeledger import topics
from scrapeledger.clients import make_producer
from tests.support.stack import Stack

JOBS = 12_000
CAPACITY = 5_000


def states(now: float) -> list[ledger.JobState]:
    """Synthetic job states, one per job, submitted one millisecond apart (newest last): every
    tenth failed with http_404, every seventh still in flight, the rest succeeded."""
    out = []
    for i in range(JOBS):
        t = now - (JOBS - i) / 1000
        base = ledger.JobState(job_id=f"job{i:05d}-{'x' * 16}", url=f"http://h{i % 3}.test/p/{i}",
                          submitted_at=t, updated_at=t + 0.5, events=4, attempts=1)
        if i % 10 == 0:
            s = dataclasses.replace(base, status="failed", finished_at=t + 0.5,
                                    error=ledger.JobError(code="http_404", message="not found"))
        elif i % 7 == 0:
            s = dataclasses.replace(base, status="validated")
        else:
            s = dataclasses.replace(base, status="succeeded", finished_at=t + 0.5)
        out.append(s)
    return out


def write_states(stack: Stack, records: list[ledger.JobState]) -> None:
    producer = make_producer(stack.settings)
    topic = stack.settings.topic(topics.JOB_STATE)
    for s in records:
        producer.produce(topic, key=s.job_id.encode(), value=s.to_json())
        producer.poll(0)
    assert producer.flush(60) == 0


def all_pages(api: httpx.Client, **params: Any) -> list[dict[str, Any]]:
    jobs: list[dict[str, Any]] = []
    cursor = None
    while True:
        r = api.get("/v1/jobs", params={**params, "limit": 200, **({"cursor": cursor} if cursor else {})})
        assert r.status_code == 200, r.text
        body = r.json()
        jobs += body["jobs"]
        cursor = body["next_cursor"]
        if cursor is None:
            return jobs


def test_the_list_pages_and_filters_a_bounded_index(stack: Stack) -> None:
    a = stack.edge("edge-a", EDGE_INDEX_JOBS=str(CAPACITY)).replace("ws://", "http://").rstrip("/")
    records = states(time.time())
    write_states(stack, records)
    newest = sorted(records, key=lambda s: s.submitted_at or 0, reverse=True)[:CAPACITY]

    with httpx.Client(base_url=a, timeout=60) as api:
        everything = all_pages(api)
        # bounded: the newest CAPACITY jobs, newest first, each once
        assert [j["job_id"] for j in everything] == [s.job_id for s in newest]
        first = api.get("/v1/jobs", params={"limit": 10}).json()
        assert first["indexed"] == CAPACITY and first["capacity"] == CAPACITY
        assert len(first["jobs"]) == 10 and first["next_cursor"]

        failed = all_pages(api, status="failed")
        assert [j["job_id"] for j in failed] == [s.job_id for s in newest if s.status == "failed"]
        assert {j["error"]["code"] for j in failed} == {"http_404"}
        active = all_pages(api, status="active")
        assert {j["job_id"] for j in active} == {s.job_id for s in newest if s.status == "validated"}
        # search: by an id prefix and by a URL fragment, case-insensitive
        some = newest[123]
        hit = api.get("/v1/jobs", params={"q": some.job_id[:8].upper()}).json()["jobs"]
        assert [j["job_id"] for j in hit] == [some.job_id]
        assert hit[0]["host"] == some.url.split("/")[2] and hit[0]["duration_s"] is not None
        by_url = all_pages(api, q="h1.test/", status="succeeded")
        assert [j["job_id"] for j in by_url] == [
            s.job_id for s in newest if "h1.test/" in s.url and s.status == "succeeded"]

        # a cursor names a position: a job arriving meanwhile does not shift the next page
        page1 = api.get("/v1/jobs", params={"limit": 50}).json()
        late = dataclasses.replace(records[-1], job_id="late-job-" + "y" * 16, submitted_at=time.time() + 5)
        write_states(stack, [late])
        page2 = api.get("/v1/jobs", params={"limit": 50, "cursor": page1["next_cursor"]}).json()
        assert [j["job_id"] for j in page2["jobs"]] == [s.job_id for s in newest[50:100]]

        stats = api.get("/v1/stats").json()
        assert stats["indexed"] == CAPACITY
        in_window = newest
        assert stats["in_flight"] + sum(
            n for s, n in stats["counts"].items() if s in ledger.TERMINAL) == stats["indexed"]
        assert sum(b["submitted"] for b in stats["buckets"]) >= len(in_window)

        # errors: stable codes
        for params, code in [({"status": "nope"}, "invalid_status"), ({"limit": "0"}, "invalid_limit"),
                             ({"limit": "201"}, "invalid_limit"), ({"cursor": "garbage"}, "invalid_cursor")]:
            r = api.get("/v1/jobs", params=params)
            assert r.status_code == 400 and r.json()["error"]["code"] == code, (params, r.text)

    # another pod reads the same topic: the same pages; a killed pod comes back with them too
    expected = [j["job_id"] for j in everything]
    b = stack.edge("edge-b", EDGE_INDEX_JOBS=str(CAPACITY)).replace("ws://", "http://").rstrip("/")
    stack.kill("edge-a")
    a2 = stack.edge("edge-a2", EDGE_INDEX_JOBS=str(CAPACITY)).replace("ws://", "http://").rstrip("/")
    for url in (b, a2):
        with httpx.Client(base_url=url, timeout=60) as api:
            listed = [j["job_id"] for j in all_pages(api)]
            assert listed == ["late-job-" + "y" * 16, *expected[:-1]], url
