"""The Python client's connection handling, against in-process Tornado servers (no broker)."""

from __future__ import annotations

import asyncio

import pytest
from tornado.httpserver import HTTPServer
from tornado.testing import bind_unused_port
from tornado.web import Application, RequestHandler
from tornado.websocket import WebSocketHandler

from scrapeledger.errors import ScrapeledgerError
from ws_edge import Client


class NotYet(RequestHandler):
    def get(self) -> None:  # a pod that answers HTTP but does not serve WebSockets (yet)
        self.set_status(503)


class Quiet(WebSocketHandler):
    def on_message(self, message: str | bytes) -> None:
        pass


async def serve(handler: type[RequestHandler]) -> tuple[HTTPServer, str]:
    sock, port = bind_unused_port()
    server = HTTPServer(Application([("/", handler)]))
    server.add_sockets([sock])
    return server, f"ws://127.0.0.1:{port}/"


def test_a_failed_websocket_handshake_moves_on_to_the_next_server() -> None:
    async def go() -> tuple[str, str]:
        bad, bad_url = await serve(NotYet)
        good, good_url = await serve(Quiet)
        try:
            async with Client([bad_url, good_url], connect_timeout=5) as client:
                return client.server, good_url
        finally:
            bad.stop()
            good.stop()
            await bad.close_all_connections()
            await good.close_all_connections()

    # the first answers 503 (a pod starting or draining), which used to end the client for good
    connected, good_url = asyncio.run(go())
    assert connected == good_url


def test_a_client_that_cannot_connect_anywhere_says_so() -> None:
    async def go() -> None:
        bad, bad_url = await serve(NotYet)
        try:
            async with Client([bad_url], connect_timeout=1, max_reconnect_s=0.5):
                pass
        finally:
            bad.stop()
            await bad.close_all_connections()

    with pytest.raises(ScrapeledgerError, match="cannot connect"):
        asyncio.run(go())


class SlowHandshake(Quiet):
    arrived: asyncio.Event

    async def get(self, *args: str, **kwargs: str) -> None:
        SlowHandshake.arrived.set()
        await asyncio.sleep(0.3)  # the pod is slow to accept: the handshake outlasts close()'s start
        await super().get(*args, **kwargs)


def test_close_during_a_reconnect_leaves_no_connection_open() -> None:
    import gc
    import warnings

    async def go() -> None:
        SlowHandshake.arrived = asyncio.Event()
        fast, fast_url = await serve(Quiet)
        slow, slow_url = await serve(SlowHandshake)
        try:
            client = Client([fast_url, slow_url], connect_timeout=5)
            await client.__aenter__()
            await client.reconnect()  # the reader moves on to the slow server...
            await SlowHandshake.arrived.wait()  # ...and is inside its handshake when we close
            await client.close()
        finally:
            for server in (fast, slow):
                server.stop()
                await server.close_all_connections()

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        asyncio.run(go())
        gc.collect()
    assert [w for w in caught if issubclass(w.category, ResourceWarning)] == []
