"""The product end to end: WebSocket edge -> validator -> scraper -> state -> delivery by pod id.

Every component is a real process on the real broker; pages come from a local HTTP server.
"""

from __future__ import annotations

import asyncio

import orjson

import ledger
from replay import current_state, history, read_to_end
from scrapeledger import topics
from scrapeledger.broker import free_port
from scrapeledger.partitioner import partition_for
from tests.support.stack import Stack, eventually

from .wsclient import Raw


def test_the_old_clients_exact_frame_gets_the_pages_html(stack: Stack, pages: str) -> None:
    stack.processors()
    url = stack.edge()

    async def go() -> tuple[dict[str, object], dict[str, object]]:
        ws = await Raw.connect(url)
        await ws.send('{"event": "job", "message": "' + pages + '/page/1"}')
        accepted = await ws.recv()
        result = await ws.recv()
        await ws.close()
        return accepted, result

    accepted, result = asyncio.run(go())
    assert accepted["event"] == "accepted"
    assert ledger.is_valid_job_id(accepted["job_id"])
    assert result["event"] == "result"
    assert result["status"] == "succeeded"
    assert result["http_status"] == 200
    assert result["url"] == f"{pages}/page/1"
    assert "page 1" in str(result["html"])
    assert isinstance(result["headers"], dict)
    assert result["elapsed_ms"] >= 0  # type: ignore[operator]

    # the ledger holds the job's full history, in order; the compacted topic its final state
    events = history(stack.settings, str(result["job_id"]))
    # the scraper records each attempt's start (acknowledged) before it fetches
    assert [e.TYPE for e in events[:4]] == [
        "JobSubmitted", "JobValidated", "AttemptStarted", "ScrapeSucceeded"
    ]
    job_id = str(result["job_id"])

    def converged() -> ledger.JobState | None:
        # the delivery is recorded after the result went out, and job-state is written once per
        # checkpoint: read both until the compacted state is the fold of the ledger's history
        final = current_state(stack.settings, job_id)
        events = history(stack.settings, job_id)
        done = final is not None and "ResultDelivered" in {e.TYPE for e in events}
        return final if done and final == ledger.fold_all(events)[job_id] else None

    final = eventually(converged, what="job-state to equal the fold of the ledger")
    assert final.status == "succeeded"


def test_200_jobs_over_10_connections_all_return_the_right_bodies(stack: Stack, pages: str) -> None:
    stack.processors()
    url = stack.edge()

    async def one_connection(c: int) -> list[tuple[int, dict[str, object]]]:
        ws = await Raw.connect(url)
        for i in range(20):
            n = c * 20 + i
            await ws.send({"event": "job", "message": f"{pages}/page/{n}", "ref": n})
        accepted: dict[str, int] = {}
        results: list[tuple[int, dict[str, object]]] = []
        while len(results) < 20:
            frame = await ws.recv(timeout=120)
            if frame["event"] == "accepted":
                accepted[frame["job_id"]] = frame["ref"]
            else:
                assert frame["event"] == "result", frame
                results.append((accepted[frame["job_id"]], frame))
        await ws.close()
        return results

    async def go() -> list[tuple[int, dict[str, object]]]:
        batches = await asyncio.gather(*(one_connection(c) for c in range(10)))
        return [r for b in batches for r in b]

    results = asyncio.run(go())
    assert sorted(n for n, _ in results) == list(range(200))
    for n, frame in results:
        assert frame["status"] == "succeeded", frame
        assert frame["ref"] == n
        assert f"page {n}<" in str(frame["html"]) or f"page {n} " in str(frame["html"])


def test_each_failure_ends_in_the_right_status_and_code(stack: Stack, pages: str) -> None:
    stack.start("state")
    validator = stack.start("validator")  # the stack allows private targets: the fixture server
    stack.start("scraper", SCRAPER_MAX_ATTEMPTS="3", SCRAPER_MAX_BODY_BYTES="4096")
    url = stack.edge()
    Case = tuple[object, str, str | None]
    fetched: dict[str, Case] = {
        "404": (f"{pages}/status/404", "failed", "http_404"),
        "timeout": ({"url": f"{pages}/hang", "timeout_s": 0.5}, "dead_lettered", "timeout"),
        "refused": (f"http://127.0.0.1:{free_port()}/", "dead_lettered", "connect_error"),
        "redirects": (f"{pages}/redirect/3", "succeeded", None),
        "too_big": (f"{pages}/big?bytes=100000", "succeeded", None),
        "ftp": ("ftp://example.org/file", "rejected", "unsupported_scheme"),
    }
    # with the guard on (the default), the validator refuses private targets, names included
    guarded: dict[str, Case] = {
        "metadata": ("http://169.254.169.254/latest/meta-data/", "rejected", "blocked_address"),
        "localhost": (pages.replace("127.0.0.1", "localhost"), "rejected", "blocked_address"),
    }

    async def go(cases: dict[str, Case]) -> dict[str, dict[str, object]]:
        ws = await Raw.connect(url)
        for name, (message, _, _) in cases.items():
            await ws.send({"event": "job", "message": message, "ref": name})
        jobs: dict[str, str] = {}
        out: dict[str, dict[str, object]] = {}
        while len(out) < len(cases):
            frame = await ws.recv(timeout=120)
            if frame["event"] == "accepted":
                jobs[frame["job_id"]] = frame["ref"]
            else:
                out[jobs[frame["job_id"]]] = frame
        await ws.close()
        return out

    results = asyncio.run(go(fetched))
    assert stack.terminate(validator.name) == 0
    stack.start("validator", SCRAPER_ALLOW_PRIVATE="0")
    results |= asyncio.run(go(guarded))
    for name, (_, status, code) in (fetched | guarded).items():
        frame = results[name]
        assert frame["status"] == status, (name, frame)
        if code is not None:
            assert frame["error"]["code"] == code, (name, frame)  # type: ignore[index]
    assert results["redirects"]["final_url"] == f"{pages}/page/0"
    assert results["too_big"]["truncated"] is True
    assert len(str(results["too_big"]["html"])) == 4096
    # retryable failures used exactly SCRAPER_MAX_ATTEMPTS attempts, recorded in the ledger
    for name in ("timeout", "refused"):
        events = history(stack.settings, str(results[name]["job_id"]))
        outcomes = [e for e in events if e.event_id.endswith("/outcome")]
        assert [e.attempt for e in outcomes] == [1, 2, 3], name
        assert isinstance(outcomes[-1], ledger.JobDeadLettered)
        assert results[name]["attempts"] == 3
    # a dead letter is also copied to the DLQ topic
    dlq = [ledger.decode_event(m.value()) for m in read_to_end(stack.settings,
                                                               stack.settings.topic(topics.DLQ))]
    assert {e.job_id for e in dlq} >= {str(results["timeout"]["job_id"]), str(results["refused"]["job_id"])}


def test_a_flaky_server_succeeds_on_the_third_attempt(stack: Stack, pages: str) -> None:
    stack.processors()
    url = stack.edge()
    key = ledger.new_job_id()

    async def go() -> dict[str, object]:
        ws = await Raw.connect(url)
        result = await ws.job(f"{pages}/flaky/{key}?fail=2")
        await ws.close()
        return result

    result = asyncio.run(go())
    assert result["status"] == "succeeded"
    assert result["attempts"] == 3
    events = history(stack.settings, str(result["job_id"]))
    assert [(e.TYPE, e.attempt) for e in events if e.attempt > 0 and e.TYPE != "JobValidated"] == [
        ("AttemptStarted", 1), ("AttemptFailed", 1), ("RetryScheduled", 2),
        ("AttemptStarted", 2), ("AttemptFailed", 2), ("RetryScheduled", 3),
        ("AttemptStarted", 3), ("ScrapeSucceeded", 3),
    ]


def test_two_edges_each_receive_only_their_own_deliveries(stack: Stack, pages: str) -> None:
    stack.processors()
    partitions = stack.settings.delivery_partitions
    pods = ["edge-a"]
    n = 0
    while len(pods) < 2:  # two pod ids that hash to different deliveries partitions
        n += 1
        if partition_for(f"edge-{n}", partitions) != partition_for(pods[0], partitions):
            pods.append(f"edge-{n}")
    urls = {pod: stack.edge(pod) for pod in pods}

    async def client(pod: str) -> list[dict[str, object]]:
        ws = await Raw.connect(urls[pod])
        frames = [await ws.job(f"{pages}/page/{i}") for i in range(10)]
        await ws.close()
        return frames

    async def go() -> dict[str, list[dict[str, object]]]:
        a, b = await asyncio.gather(client(pods[0]), client(pods[1]))
        return {pods[0]: a, pods[1]: b}

    results = asyncio.run(go())
    jobs = {pod: {str(f["job_id"]) for f in frames} for pod, frames in results.items()}
    for frames in results.values():
        assert all(f["status"] == "succeeded" for f in frames)
    # every notice for a pod's jobs was keyed by that pod and sits in that pod's partition only
    topic = stack.settings.topic(topics.DELIVERIES)
    for msg in read_to_end(stack.settings, topic):
        pod = msg.key().decode()
        job = orjson.loads(msg.value())["job_id"]
        assert job in jobs[pod]
        assert msg.partition() == partition_for(pod, partitions)
    # and each edge read just its own partition
    for pod in pods:
        mine = partition_for(pod, partitions)
        stack.procs[pod].wait_for(rf"reading deliveries for pod {pod} from \S+\[{mine}\]")
