"""The dashboard's recent-jobs index (no broker): bounded memory, exact newest-N, paging by cursor,
filters, counters that never count a job twice, and answers that match the OpenAPI schemas."""

from __future__ import annotations

import dataclasses
import gc
import tracemalloc
from typing import Any

import jsonschema
import pytest

import ledger
from ws_edge._index import BUCKET_S, BUCKETS, CURSOR, CursorError, RecentJobs
from ws_edge._openapi import openapi_document

NOW = 1_800_000_000.0


def job(i: int, status: str = "succeeded", *, events: int = 4, owner: str | None = None,
        at: float | None = None) -> ledger.JobState:
    t = NOW - 600 + i * 0.01 if at is None else at
    terminal = status in ledger.TERMINAL
    return ledger.JobState(
        job_id=f"j{i:06d}-{'a' * 16}", status=status, url=f"https://h{i % 4}.example/p/{i}",  # type: ignore[arg-type]
        submitted_at=t, updated_at=t + 1, finished_at=t + 1 if terminal else None, attempts=1,
        events=events, owner=owner,
        error=ledger.JobError(code="http_404", message="gone") if status == "failed" else None,
    )


def filled(n: int, capacity: int, **kw: Any) -> RecentJobs:
    index = RecentJobs(capacity, clock=lambda: NOW)
    index.apply(job(i, **kw) for i in range(n))
    return index


def test_the_index_keeps_exactly_the_newest_jobs_whatever_the_order() -> None:
    index = RecentJobs(1000, clock=lambda: NOW)
    order = [*range(0, 5000, 2), *range(1, 5000, 2)]  # two partitions read one after the other
    index.apply(job(i) for i in order)
    assert len(index) == 1000
    page = index.page(limit=200)
    assert [j.job_id for j in page.jobs] == [job(i).job_id for i in range(4999, 4799, -1)]
    assert index.stats()["counts"] == {"succeeded": 1000}


def test_memory_is_bounded_by_the_capacity() -> None:
    def held(n: int) -> int:
        gc.collect()
        tracemalloc.start()
        index = RecentJobs(2000, clock=lambda: NOW)
        for start in range(0, n, 1000):
            index.apply(job(i) for i in range(start, start + 1000))
        size = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        assert len(index) == 2000
        return size

    small, large = held(2000), held(20_000)
    assert large < small * 1.25, (small, large)  # ten times the jobs, the same memory


def test_a_dropped_job_never_comes_back_nor_counts_twice() -> None:
    index = filled(3000, 1000)
    before = index.stats()
    submitted = sum(b["submitted"] for b in before["buckets"])
    assert submitted == 3000
    index.apply([job(5, "failed", events=9)])  # a late state of a dropped job
    after = index.stats()
    assert sum(b["submitted"] for b in after["buckets"]) == 3000
    assert after["counts"] == {"succeeded": 1000}
    assert not index.page(query=job(5).job_id[:7]).jobs


def test_finishing_counts_once_per_finish_and_older_records_are_ignored() -> None:
    index = RecentJobs(100, clock=lambda: NOW)
    running = job(1, "validated", events=3)
    done = dataclasses.replace(job(1, "failed", events=5))
    index.apply([running, done, dataclasses.replace(done, events=6)])  # ResultDelivered: still failed
    index.apply([running])  # an older record (a re-read): ignored
    stats = index.stats()
    assert stats["counts"] == {"failed": 1} and stats["in_flight"] == 0
    finished = [b["finished"] for b in stats["buckets"] if b["finished"]]
    assert finished == [{"failed": 1}]
    assert stats["buckets"][-1]["t"] == int(NOW // BUCKET_S) * BUCKET_S and len(stats["buckets"]) == BUCKETS


def test_counters_cover_the_last_fifteen_minutes_only() -> None:
    clock = [NOW]
    index = RecentJobs(100, clock=lambda: clock[0])
    index.apply([job(1, at=NOW - 5), job(2, "validated", at=NOW - 5)])
    assert sum(b["submitted"] for b in index.stats()["buckets"]) == 2
    clock[0] = NOW + 16 * 60
    stats = index.stats()
    assert sum(b["submitted"] for b in stats["buckets"]) == 0
    assert stats["in_flight"] == 1 and stats["indexed"] == 2  # the jobs themselves stay


def test_pages_filters_and_cursors() -> None:
    index = RecentJobs(10_000, clock=lambda: NOW)
    index.apply(job(i, "failed" if i % 10 == 0 else "validated" if i % 7 == 0 else "succeeded")
                for i in range(1000))
    seen: list[str] = []
    cursor = None
    while True:
        page = index.page(statuses=frozenset({"failed"}), cursor=cursor, limit=30)
        seen += [j.job_id for j in page.jobs]
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
        index.apply([job(5000 + len(seen), "failed", at=NOW)])  # newer jobs never shift the pages
    assert seen == [job(i).job_id for i in range(990, -1, -10)]
    active = index.page(statuses=frozenset({"active"}), limit=500).jobs
    assert {j.status for j in active} == {"validated"} and len(active) == len(
        [i for i in range(1000) if i % 7 == 0 and i % 10])
    assert [j.job_id for j in index.page(query="H3.EXAMPLE/P/99", limit=500).jobs] == [
        job(i).job_id for i in (999, 995, 991, 99)]  # 99 and 99x on host 3
    assert [j.job_id for j in index.page(query=job(123).job_id[:7]).jobs] == [job(123).job_id]


def test_tombstones_remove_and_bad_cursors_are_refused() -> None:
    index = filled(10, 100)
    index.apply([(job(3).job_id, None)])
    assert len(index) == 9 and job(3).job_id not in {j.job_id for j in index.page().jobs}
    for bad in ("not-a-cursor", "1.5", "~abc", "1e9~abc", "-1~abc", "1~a b"):
        with pytest.raises(CursorError):
            index.page(cursor=bad)


def test_any_cursor_of_the_documented_shape_is_a_position() -> None:
    index = RecentJobs(100, clock=lambda: NOW)
    t = NOW + 0.123456789  # more digits than a fixed format would keep
    index.apply([job(i, at=t + i / 7) for i in range(5)])
    page = index.page(limit=2)
    assert page.next_cursor is not None and CURSOR.fullmatch(page.next_cursor)
    rest = index.page(cursor=page.next_cursor, limit=10).jobs
    assert [j.job_id for j in rest] == [job(i).job_id for i in (2, 1, 0)]  # none repeated
    between = index.page(cursor=f"{t + 2.5 / 7}~", limit=10).jobs  # a cursor no page handed out
    assert [j.job_id for j in between] == [job(i).job_id for i in (2, 1, 0)]


def test_views_per_owner() -> None:
    index = RecentJobs(100, clock=lambda: NOW)
    index.apply([job(1, owner="alice"), job(2, owner="bob"), job(3, "validated", owner="alice")])
    assert index.stats("alice")["counts"] == {"succeeded": 1, "validated": 1}
    assert [j.job_id for j in index.page(owner="bob").jobs] == [job(2).job_id]
    assert index.stats()["indexed"] == 3


def test_answers_match_the_openapi_document() -> None:
    doc = openapi_document()

    def check(instance: Any, name: str) -> None:
        schema = {"$ref": f"#/components/schemas/{name}", "components": doc["components"]}
        jsonschema.validate(instance, schema)

    index = RecentJobs(100, clock=lambda: NOW)
    index.apply([job(1), job(2, "failed"), job(3, "validated")])
    for summary in index.page().jobs:
        check(summary.to_dict(), "JobSummary")
    check(index.stats(), "Stats")
    assert "get" in doc["paths"]["/v1/jobs"] and "post" in doc["paths"]["/v1/jobs"]
