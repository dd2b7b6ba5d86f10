"""The edge's HTTP server, guarded at the TCP level: caps at accept, bounded accept errors.

Tornado's :class:`~tornado.httpserver.HTTPServer` accepts every connection, waits an hour for a
request's headers, and when ``accept()`` fails for want of descriptors its accept handler
raises on every wake-up of the loop (a traceback each time). 20,000 half-sent requests thus
exhausted the edge's descriptors, timed out new clients and ``/healthz``, and grew the log by
85 MB in 80 s. Here:

* every accepted connection is counted in a :class:`ConnectionBudget` before any byte is read;
  over it the client gets ``503`` at once (a few bytes, no parsing) and the socket is closed
  after a short linger, so the response is not lost to a reset;
* the header timeout (``EDGE_HEADER_TIMEOUT_S``) ends half-sent requests and idle handshakes;
* ``accept()`` errors such as EMFILE are logged at most once per second, and accepting pauses
  briefly instead of spinning on a listening socket that stays readable.

The count is released when the connection's descriptor is closed (``close_fd``), which covers
WebSocket connections too: Tornado's HTTP layer lets go of a connection at the upgrade.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import weakref
from collections.abc import Callable
from typing import Any

import tornado.httpserver
import tornado.iostream
from tornado.ioloop import IOLoop

from ._limits import Admission, ConnectionBudget, Throttled
from ._tornado import add_listener, hand_over

log = logging.getLogger(__name__)

REFUSED = (
    b"HTTP/1.1 503 Service Unavailable\r\n"
    b"Content-Type: text/plain\r\n"
    b"Retry-After: 1\r\n"
    b"Connection: close\r\n"
    b"Content-Length: 30\r\n"
    b"\r\n"
    b"too many connections; retry\r\n\r\n"
)
REFUSE_LINGER_S = 0.5
"""How long a refused socket is read (and discarded) after the 503: closing with unread request
bytes makes the kernel send a reset, which can destroy the 503 before the client reads it."""
MOST_LINGERING = 256
"""Refused sockets lingering at once; more are closed at once (a flood must not hold fds)."""
ACCEPT_PAUSE_S = 0.1
_OUT_OF_RESOURCES = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}
_BACKLOG = 128


class GuardedHTTPServer(tornado.httpserver.HTTPServer):
    """An :class:`HTTPServer` that admits connections through a :class:`ConnectionBudget`."""

    def initialize(self, app: Any, *, budget: ConnectionBudget, header_timeout_s: float,  # type: ignore[override]
                   **kwargs: Any) -> None:
        """Tornado's ``Configurable`` builds servers through ``initialize``, not ``__init__``."""
        super().initialize(app, idle_connection_timeout=header_timeout_s, **kwargs)
        self.budget = budget
        self.refused = 0
        self.reserve_streams: weakref.WeakSet[tornado.iostream.IOStream] = weakref.WeakSet()
        """Connections let in on the probe reserve: plain HTTP only (see ``JobSocket``)."""
        self._lingering: set[asyncio.Task[None]] = set()
        self._accept_errors = Throttled(log)

    # --- accepting ----------------------------------------------------------------------------

    def add_sockets(self, sockets: Any) -> None:
        """Tornado's, with :meth:`_accept_handler` instead of ``netutil.add_accept_handler``."""
        for sock in sockets:
            add_listener(self, sock, self._accept_handler(sock))

    def _accept_handler(self, sock: socket.socket) -> Callable[[], None]:
        loop = IOLoop.current()
        state = {"removed": False, "paused": False}

        def resume() -> None:
            if not state["removed"] and state["paused"]:
                state["paused"] = False
                loop.add_handler(sock, on_readable, IOLoop.READ)

        def on_readable(fd: Any, events: int) -> None:
            for _ in range(_BACKLOG):  # as Tornado: do not starve the loop under a flood
                if state["removed"]:
                    return
                try:
                    connection, address = sock.accept()
                except BlockingIOError:
                    return
                except ConnectionAbortedError:
                    continue
                except OSError as exc:
                    if exc.errno not in _OUT_OF_RESOURCES:
                        raise
                    self._accept_errors.warning(
                        "accept failed on port %s: %s; pausing accepts for %.0f ms",
                        sock.getsockname()[1], exc.strerror, ACCEPT_PAUSE_S * 1000,
                    )
                    # the listening socket stays readable: without a pause the loop spins
                    loop.remove_handler(sock)
                    state["paused"] = True
                    loop.call_later(ACCEPT_PAUSE_S, resume)
                    return
                hand_over(self, connection, address)

        def remove() -> None:
            if not state["paused"]:
                loop.remove_handler(sock)
            state["removed"] = True

        loop.add_handler(sock, on_readable, IOLoop.READ)
        return remove

    # --- admitting ----------------------------------------------------------------------------

    def handle_stream(self, stream: tornado.iostream.IOStream, address: tuple[Any, ...]) -> None:
        host = str(address[0]) if address else ""
        how = self.budget.admit(host)
        if how is None:
            self.refused += 1
            self._refuse(stream)
            return
        if how is Admission.RESERVE:
            self.reserve_streams.add(stream)
        close_fd = stream.close_fd
        released = False

        def close_and_release() -> None:
            # IOStream.close calls close_fd exactly once; WebSocket connections included
            nonlocal released
            try:
                close_fd()
            finally:
                if not released:
                    released = True
                    self.budget.release(host, how)

        stream.close_fd = close_and_release  # type: ignore[method-assign]
        super().handle_stream(stream, address)

    def _refuse(self, stream: tornado.iostream.IOStream) -> None:
        try:
            stream.socket.send(REFUSED)  # a few bytes into an empty send buffer: no wait
            stream.socket.shutdown(socket.SHUT_WR)
        except OSError:
            stream.close()
            return
        if len(self._lingering) >= MOST_LINGERING:
            stream.close()
            return
        task = asyncio.ensure_future(_linger(stream))
        self._lingering.add(task)
        task.add_done_callback(self._lingering.discard)


async def _linger(stream: tornado.iostream.IOStream) -> None:
    """Read and drop what the refused client sends until it closes or the linger ends."""
    try:
        async with asyncio.timeout(REFUSE_LINGER_S):
            while True:
                await stream.read_bytes(4096, partial=True)
    except (TimeoutError, tornado.iostream.StreamClosedError, OSError):
        pass
    finally:
        stream.close()
