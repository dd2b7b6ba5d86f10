"""A bare WebSocket client speaking the wire protocol frame by frame, as old clients do."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from tornado.websocket import WebSocketClientConnection, websocket_connect


class Raw:
    def __init__(self, conn: WebSocketClientConnection) -> None:
        self.conn = conn

    @classmethod
    async def connect(cls, url: str) -> Raw:
        return cls(await websocket_connect(url, max_message_size=64 * 1024 * 1024))

    async def send(self, frame: dict[str, Any] | bytes | str) -> None:
        if isinstance(frame, dict):
            frame = orjson.dumps(frame).decode()
        await self.conn.write_message(frame)

    async def recv(self, timeout: float = 60.0) -> dict[str, Any]:
        raw = await asyncio.wait_for(self.conn.read_message(), timeout)
        assert raw is not None, "connection closed"
        frame = orjson.loads(raw)
        assert isinstance(frame, dict)
        return frame

    async def job(self, message: Any, ref: Any = None, timeout: float = 60.0) -> dict[str, Any]:
        """Submit and return the result frame (asserting the accepted frame on the way)."""
        await self.send({"event": "job", "message": message, "ref": ref})
        accepted = await self.recv(timeout)
        assert accepted["event"] == "accepted", accepted
        result = await self.recv(timeout)
        assert result["job_id"] == accepted["job_id"]
        return result

    async def close(self) -> None:
        """Close and wait until the socket is really closed: closing without waiting leaves the
        close handshake to a loop that ``asyncio.run`` is about to shut, leaking the socket."""
        self.conn.close()
        try:
            while await asyncio.wait_for(self.conn.read_message(), 5) is not None:
                pass
        except TimeoutError:
            pass
        stream = getattr(self.conn, "stream", None)
        if stream is not None and not stream.closed():
            stream.close()
