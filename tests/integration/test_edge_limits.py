"""Edge limits against a real edge process (issue 10, items 4 and 6): connection caps, header
timeout, accept errors, jobs in flight, slow readers, resume rate and the attach window.

Most need only the broker (a submit is durable without processors; a job nobody scrapes stays
in flight), so only the tests that need results start the processors.
"""

from __future__ import annotations

import asyncio
import resource
import socket
import time
from pathlib import Path

import orjson
from tornado.websocket import websocket_connect

import ledger
from replay import history, latest_states, read_to_end, rebuild
from scrapeledger import topics
from scrapeledger.clients import make_producer
from scrapeledger.settings import Settings
from scrapeledger.topics import ensure_topics
from tests.support.stack import Stack, eventually

from .wsclient import Raw

UPGRADE = (
    b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1].strip("/"))


def connect(port: int, source: str, send: bytes = b"") -> socket.socket:
    """A TCP connection from a loopback address of our choice (every 127/8 address is local)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(source, 0))
    if send:
        s.sendall(send)
    return s


def status_line(s: socket.socket) -> bytes:
    """The first line the edge answers with (b"" if it closed without one)."""
    data = b""
    while b"\r\n" not in data:
        chunk = s.recv(4096)
        if not chunk:
            break
        data += chunk
    return data.split(b"\r\n", 1)[0]


def test_connections_over_the_caps_get_503_before_the_upgrade_and_probes_still_answer(
    stack: Stack,
) -> None:
    url = stack.edge(EDGE_MAX_CONNECTIONS="6", EDGE_MAX_CONNECTIONS_PER_ADDRESS="4",
                     EDGE_RESERVED_CONNECTIONS="2")
    port = port_of(url)
    half = b"GET /ws HTTP/1.1\r\nHost: x\r\n"  # half-sent: the head never ends
    held = [connect(port, "127.0.0.2", half) for _ in range(4)]
    try:
        over_address = connect(port, "127.0.0.2", UPGRADE)
        assert status_line(over_address) == b"HTTP/1.1 503 Service Unavailable"
        over_address.close()
        held += [connect(port, "127.0.0.3", half) for _ in range(2)]  # the total cap (6) is full
        over_total = connect(port, "127.0.0.3", UPGRADE)
        assert status_line(over_total) == b"HTTP/1.1 503 Service Unavailable"
        over_total.close()
        # an address holding nothing gets a reserve place: a probe answers, an upgrade does not
        probe = connect(port, "127.0.0.4", b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert status_line(probe) == b"HTTP/1.1 200 OK"
        probe.close()
        upgrade = connect(port, "127.0.0.5", UPGRADE)
        assert status_line(upgrade) == b"HTTP/1.1 503 Service Unavailable"
        upgrade.close()
    finally:
        for s in held:
            s.close()

    async def after() -> dict[str, object]:  # places are given back when connections close
        async def attempt() -> Raw | None:
            try:
                return await Raw.connect(url)
            except Exception:
                return None
        deadline = time.monotonic() + 30
        while (ws := await attempt()) is None and time.monotonic() < deadline:
            await asyncio.sleep(0.1)  # pacing between attempts while the edge sees the closes
        assert ws is not None, "the edge never took a connection again"
        await ws.send("not json")
        reply = await ws.recv()
        await ws.close()
        return reply

    assert asyncio.run(after())["code"] == "bad_json"


def test_half_sent_requests_and_idle_handshakes_time_out(stack: Stack) -> None:
    url = stack.edge(EDGE_HEADER_TIMEOUT_S="1")
    port = port_of(url)
    half = connect(port, "127.0.0.1", b"GET /ws HTTP/1.1\r\nHost: x\r\n")
    idle = connect(port, "127.0.0.1")
    try:
        for s in (half, idle):
            s.settimeout(15)  # the old edge waited an hour; this fails the test instead
            assert s.recv(4096) == b""  # closed by the edge
    finally:
        half.close()
        idle.close()


def test_accept_errors_are_logged_at_most_once_per_second(stack: Stack) -> None:
    url = stack.edge()
    port = port_of(url)
    proc = stack.procs["edge-a"]
    pid = proc.popen.pid
    limit = resource.prlimit(pid, resource.RLIMIT_NOFILE)
    in_use = len(list(Path(f"/proc/{pid}/fd").iterdir()))
    resource.prlimit(pid, resource.RLIMIT_NOFILE, (in_use + 3, limit[1]))  # out of descriptors
    socks = []
    try:
        start = time.monotonic()
        socks = [connect(port, "127.0.0.1") for _ in range(40)]  # most wait in the backlog
        # the edge's own accept line; librdkafka's reconnects starve too and log with their own
        # back-off ("Failed to create socket"), which is not what this limit is about
        def accept_lines() -> list[str]:
            return [line for line in proc.lines if "accept failed" in line]

        eventually(lambda: bool(accept_lines()), what="an accept error logged", timeout=30)
        while time.monotonic() - start < 3:  # keep the listener starved for a few seconds
            time.sleep(0.2)  # the condition is elapsed time itself, not readiness
        seconds = time.monotonic() - start
        lines = accept_lines()
        assert 1 <= len(lines) <= seconds + 2, lines[:5]
        assert all("Too many open files" in line for line in lines), lines[:5]
        assert not any("Traceback" in line for line in proc.lines)
    finally:
        for s in socks:
            s.close()
        resource.prlimit(pid, resource.RLIMIT_NOFILE, limit)

    async def works() -> str:
        ws = await Raw.connect(url)
        await ws.send("[1]")
        reply = await ws.recv()
        await ws.close()
        return str(reply["code"])

    assert asyncio.run(works()) == "bad_frame"  # accepting again once descriptors are back


def ledger_events(settings: Settings, job_ids: set[str]) -> list[ledger.Event]:
    out = []
    for msg in read_to_end(settings, settings.topic(topics.LEDGER)):
        event = ledger.decode_event(msg.value())
        if event.job_id in job_ids:
            out.append(event)
    return out


def test_jobs_in_flight_and_resumes_per_second_per_connection(stack: Stack) -> None:
    url = stack.edge(EDGE_MAX_JOBS_PER_CONNECTION="3", EDGE_RESUMES_PER_S="0.2",
                     EDGE_RESUME_BURST="3")
    unknown = [ledger.new_job_id() for _ in range(20)]

    async def go() -> tuple[list[dict[str, object]], list[dict[str, object]]]:
        jobs = await Raw.connect(url)  # no processors: accepted jobs stay in flight
        for i in range(4):
            await jobs.send({"event": "job", "message": "http://127.0.0.1:9/x", "ref": f"j{i}"})
        job_frames = [await jobs.recv() for _ in range(4)]
        resumes = await Raw.connect(url)
        for i, job_id in enumerate(unknown):
            await resumes.send({"event": "resume", "job_id": job_id, "ref": f"r{i}"})
        resume_frames = [await resumes.recv() for _ in range(len(unknown) - 3)]
        await jobs.close()
        await resumes.close()
        return job_frames, resume_frames

    job_frames, resume_frames = asyncio.run(go())
    assert sorted(str(f["event"]) for f in job_frames) == ["accepted"] * 3 + ["error"]
    refused = next(f for f in job_frames if f["event"] == "error")
    assert refused["code"] == "too_many_jobs" and refused["ref"] == "j3"
    # no processors answer the resumes: every frame is a refusal, with a retry_after and the ref
    assert {f["code"] for f in resume_frames} == {"rate_limited"}
    assert all(isinstance(f["retry_after"], float) and 0 < f["retry_after"] <= 5
               for f in resume_frames)
    assert len({f["ref"] for f in resume_frames}) == len(resume_frames)
    attaches = [e for e in ledger_events(stack.settings, set(unknown))
                if isinstance(e, ledger.ClientAttached)]
    assert len(attaches) == 3  # the burst; a token takes 5 s to come back


def test_a_slow_reader_is_closed_with_1013_and_resumes(stack: Stack, pages: str) -> None:
    stack.processors()
    url = stack.edge(EDGE_MAX_QUEUED_BYTES=str(1024 * 1024))
    edge = stack.procs["edge-a"]

    async def go() -> tuple[int | None, dict[str, object]]:
        conn = await websocket_connect(url, max_message_size=64 * 1024 * 1024)
        n = 24
        for i in range(n):  # 24 pages of 1 MiB, never read: more than the socket buffers hold
            await conn.write_message(orjson.dumps(
                {"event": "job", "message": f"{pages}/page/{i}?kb=1024", "ref": i}).decode())
        await asyncio.get_running_loop().run_in_executor(
            None, lambda: edge.wait_for("closing a slow reader", timeout=90))
        job_id = None
        while (raw := await asyncio.wait_for(conn.read_message(), 30)) is not None:
            frame = orjson.loads(raw)
            if frame["event"] == "accepted" and job_id is None:
                job_id = frame["job_id"]
        code = conn.close_code
        await Raw(conn).close()  # the edge closed it; let go of the stream too
        ws = await Raw.connect(url)  # the client reconnects and resumes
        await ws.send({"event": "resume", "job_id": job_id})
        result = await ws.recv(timeout=90)
        await ws.close()
        return code, result

    code, result = asyncio.run(go())
    assert code == 1013
    assert result["event"] == "result" and result["status"] == "succeeded"
    assert len(str(result["html"])) >= 1024 * 1024


def test_resume_spam_writes_one_attach_per_job_and_pod(stack: Stack, pages: str) -> None:
    stack.processors()
    spam = {"EDGE_RESUMES_PER_S": "10000", "EDGE_RESUME_BURST": "1000"}
    url_a = stack.edge("edge-a", **spam)
    url_b = stack.edge("edge-b", **spam)
    never = ledger.new_job_id()

    async def spam_resumes(url: str, job_id: str, times: int) -> dict[str, object]:
        ws = await Raw.connect(url)
        for _ in range(times):
            await ws.send({"event": "resume", "job_id": job_id})
        answer = await ws.recv(timeout=90)
        await ws.close()
        return answer

    async def go() -> tuple[dict[str, object], list[dict[str, object]], dict[str, object]]:
        ws = await Raw.connect(url_a)
        first = await ws.job(f"{pages}/page/5")
        await ws.close()
        job_id = str(first["job_id"])
        answers = await asyncio.gather(
            *(spam_resumes(url, job_id, 100) for url in (url_a, url_a, url_b, url_b)))
        unknown = await spam_resumes(url_b, never, 100)
        again = await spam_resumes(url_b, never, 1)  # answered from the window, nothing written
        return first, [*answers, again], unknown

    first, answers, unknown = asyncio.run(go())
    job_id = str(first["job_id"])
    assert all(a["event"] == "result" and a["html"] == first["html"] for a in answers[:4])
    assert unknown["event"] == "unknown_job" and answers[4]["event"] == "unknown_job"

    def attaches() -> list[ledger.Event]:
        events = history(stack.settings, job_id)
        return [e for e in events if isinstance(e, ledger.ClientAttached | ledger.ResultDelivered)]

    found = eventually(lambda: len(attaches()) >= 3 and attaches(), what="the attach records")
    kinds = sorted((type(e).__name__, e.pod) for e in found)  # type: ignore[attr-defined]
    # edge-a submitted the job (no attach needed); edge-b attached once; one delivery per pod
    assert kinds == [("ClientAttached", "edge-b"), ("ResultDelivered", "edge-a"),
                     ("ResultDelivered", "edge-b")], kinds
    assert len([e for e in history(stack.settings, never) if isinstance(e, ledger.ClientAttached)]) == 1


def test_rebuild_keeps_no_state_for_a_resume_of_an_unknown_id(settings: Settings) -> None:
    ensure_topics(settings)
    job_id = ledger.new_job_id()
    attach = ledger.ClientAttached(job_id=job_id, event_id=ledger.new_event_id(), at=ledger.now(),
                              source="edge-x", pod="edge-x")
    producer = make_producer(settings)  # the service's partitioner: the keys land where its do
    producer.produce(settings.topic(topics.LEDGER), key=job_id, value=ledger.encode_event(attach))
    # and the state an older rebuild left for such an id
    producer.produce(settings.topic(topics.JOB_STATE), key=job_id,
                     value=ledger.fold(None, attach).to_json())
    assert producer.flush(30) == 0
    rebuild(settings)
    assert latest_states(settings).get(job_id) is None
