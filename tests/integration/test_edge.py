"""The edge's own behaviour: bad frames, health endpoints, resume answers, draining on SIGTERM."""

from __future__ import annotations

import asyncio

import ledger
from tests.support.procs import http_get
from tests.support.stack import Stack

from .wsclient import Raw


def test_bad_frames_get_error_frames_and_the_connection_stays_open(stack: Stack, pages: str) -> None:
    stack.processors()
    url = stack.edge()

    async def go() -> list[dict[str, object]]:
        ws = await Raw.connect(url)
        errors = []
        for frame in ["not json", "[1]", '{"event":"dance"}', '{"event":"job","message":42}',
                      '{"event":"resume","job_id":"../../x"}',
                      '{"event":"job","message":"' + "x" * 70_000 + '"}']:
            await ws.send(frame)
            errors.append(await ws.recv())
        result = await ws.job(f"{pages}/page/7")  # the same connection still works
        await ws.close()
        return [*errors, result]

    *errors, result = asyncio.run(go())
    assert [e["event"] for e in errors] == ["error"] * 6
    assert [e["code"] for e in errors] == ["bad_json", "bad_frame", "unknown_event", "bad_frame",
                                           "invalid_job_id", "frame_too_large"]
    assert all(e["message"] for e in errors)
    assert result["status"] == "succeeded"


def test_health_and_readiness(stack: Stack) -> None:
    stack.processors()
    url = stack.edge()
    base = url.replace("ws://", "http://").rstrip("/")
    assert http_get(f"{base}/healthz") == (200, "ok\n")
    assert http_get(f"{base}/readyz") == (200, "ready\n")


def test_resume_finished_and_unknown_jobs(stack: Stack, pages: str) -> None:
    stack.processors()
    url = stack.edge("edge-a")
    other = stack.edge("edge-b")

    async def go() -> tuple[dict[str, object], dict[str, object], dict[str, object]]:
        ws = await Raw.connect(url)
        first = await ws.job(f"{pages}/page/3")
        await ws.close()
        ws2 = await Raw.connect(other)  # another pod: the result is routed there by pod id
        await ws2.send({"event": "resume", "job_id": first["job_id"]})
        again = await ws2.recv()
        await ws2.send({"event": "resume", "job_id": ledger.new_job_id()})
        unknown = await ws2.recv()
        await ws2.close()
        return first, again, unknown

    first, again, unknown = asyncio.run(go())
    assert again["event"] == "result"
    assert again["job_id"] == first["job_id"]
    assert again["html"] == first["html"]
    assert unknown["event"] == "unknown_job"


def test_sigterm_drains_jobs_in_flight_then_exits_cleanly(stack: Stack, pages: str) -> None:
    stack.processors()
    url = stack.edge("edge-a", EDGE_DRAIN_S="20")

    async def go() -> tuple[dict[str, object], int | None]:
        ws = await Raw.connect(url)
        await ws.send({"event": "job", "message": f"{pages}/slow?ms=1500"})
        accepted = await ws.recv()
        assert accepted["event"] == "accepted"
        stack.procs["edge-a"].popen.terminate()  # SIGTERM while the fetch is running
        result = await ws.recv()
        closed = await ws.conn.read_message()
        assert closed is None
        await ws.close()
        return result, ws.conn.close_code

    result, close_code = asyncio.run(go())
    assert result["status"] == "succeeded"
    assert close_code == 1001  # "going away": reconnect elsewhere
    assert stack.procs["edge-a"].popen.wait(30) == 0
    stack.procs["edge-a"].wait_for(r"edge edge-a drained")


def test_submit_exits_with_the_edges_error_instead_of_hanging(stack: Stack) -> None:
    # the edge's error frames did not echo `ref`, and the client matches replies by ref:
    # `submit ""` and `submit --resume <bad id>` waited forever
    import subprocess
    import sys

    url = stack.edge()
    for args, code in ((["submit", ""], "bad_frame"),
                       (["submit", "--resume", "doesnotexist123"], "invalid_job_id")):
        out = subprocess.run([sys.executable, "-m", "scrapeledger.cli", *args, "--server", url],
                             capture_output=True, text=True, timeout=60, check=False)
        # exit 1: the job did not succeed (docs/client.md); the edge's code is on the result line
        assert out.returncode == 1, (args, out.stdout, out.stderr[-2000:])
        assert code in out.stdout, (args, out.stdout, out.stderr[-2000:])


def test_browsers_from_other_origins_are_refused_unless_allowed(stack: Stack) -> None:
    from tornado.httpclient import HTTPClientError, HTTPRequest
    from tornado.websocket import websocket_connect

    strict = stack.edge("edge-a")
    opened = stack.edge("edge-b", EDGE_ALLOWED_ORIGINS="https://app.example")

    async def handshake(url: str, origin: str | None) -> int:
        headers = {"Origin": origin} if origin else {}
        try:
            conn = await websocket_connect(HTTPRequest(url, headers=headers))
        except HTTPClientError as exc:
            return exc.code
        conn.close()
        await conn.read_message()  # the close handshake
        return 101

    async def go() -> list[int]:
        host = strict.removeprefix("ws://").rstrip("/")
        return [
            await handshake(strict, None),  # scripts and the Python client send no Origin
            await handshake(strict, f"http://{host}"),  # the edge's own origin (a page it serves)
            await handshake(strict, "https://evil.example"),
            await handshake(opened, "https://app.example"),
            await handshake(opened, "https://evil.example"),
        ]

    assert asyncio.run(go()) == [101, 101, 403, 101, 403]


def test_a_text_frame_that_is_not_utf8_is_closed_with_1007(stack: Stack) -> None:
    # Tornado dropped the TCP connection without a close frame; RFC 6455 wants 1007
    import base64
    import os
    import struct

    url = stack.edge()
    port = int(url.rstrip("/").rsplit(":", 1)[1])

    async def go() -> tuple[int, int]:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write((f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                      f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                      "Sec-WebSocket-Version: 13\r\n\r\n").encode())
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
        assert head.startswith(b"HTTP/1.1 101"), head
        payload, mask = b"\xff\xfe not utf-8", os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        writer.write(bytes([0x81, 0x80 | len(payload)]) + mask + masked)  # FIN, text, masked
        first, length = await asyncio.wait_for(reader.readexactly(2), 30)
        body = await reader.readexactly(length & 0x7F)
        writer.close()
        return first, struct.unpack("!H", body[:2])[0]

    opcode_byte, code = asyncio.run(go())
    assert opcode_byte == 0x88  # FIN + close
    assert code == 1007
