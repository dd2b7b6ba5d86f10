"""An edge serves the clients that connect while it is still connecting to Kafka."""

from __future__ import annotations

import asyncio

from scrapeledger.settings import Settings
from scrapeledger.topics import ensure_topics
from tests.support.procs import http_get
from ws_edge import Edge

from .wsclient import Raw


def test_a_client_connecting_before_the_edge_is_ready_is_held_then_served(settings: Settings) -> None:
    # it was closed with 1013 "edge not ready" for the seconds between listening and ready
    ensure_topics(settings)

    async def go() -> tuple[int, dict[str, object], int]:
        edge = Edge(settings)
        port = edge.listen(0)
        loop = asyncio.get_running_loop()  # liveness is up, readiness not yet:
        before = (await loop.run_in_executor(None, http_get, f"http://127.0.0.1:{port}/readyz"))[0]
        ws = await Raw.connect(f"ws://127.0.0.1:{port}/")
        await ws.send({"event": "job", "message": "https://example.org/", "ref": "early"})
        await edge.connect()
        accepted = await ws.recv(timeout=30)
        await ws.close()
        await edge.drain()
        return before, accepted, port

    before, accepted, _ = asyncio.run(go())
    assert before == 503
    assert accepted["event"] == "accepted" and accepted["ref"] == "early"


def test_a_client_is_refused_with_1013_only_after_the_hold(settings: Settings) -> None:
    held = settings.model_copy(update={"edge_ready_wait_s": 0.5})

    async def go() -> int | None:
        edge = Edge(held)
        port = edge.listen(0)
        ws = await Raw.connect(f"ws://127.0.0.1:{port}/")
        assert await ws.conn.read_message() is None  # closed once the hold ran out
        code = ws.conn.close_code
        await ws.close()
        await edge.drain()
        return code

    assert asyncio.run(go()) == 1013
