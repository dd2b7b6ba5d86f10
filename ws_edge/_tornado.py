"""Where the edge leans on Tornado's private internals: all of it here, nowhere else in ws_edge.

Written against **Tornado 6.6.1** (the UTF-8 hook was first checked on 6.4-6.6; pyproject asks
for ``tornado>=6.4``). Tornado documents none of these names, so an upgrade may move them; each
piece below names what it touches, and the tests that would notice:

* :class:`Utf8Protocol` (:func:`checked_utf8`) - ``WebSocketProtocol13._handle_message`` and the
  state it reads, ``_frame_compressed``, ``_message_bytes_in``, ``_run_callback``: a text frame
  that is not UTF-8 closes the socket with 1007 (RFC 6455 7.1.7) instead of aborting the TCP
  connection (tests/integration/test_edge.py).
* :class:`PathSummary` - ``RequestHandler._request_summary``, how Tornado's own warnings (a 405,
  a bad request) name a request: by its URI, query and all. Ours name the path only, so an
  ``?api_key=`` never reaches a log (tests/integration/test_api_keys.py).
* :func:`finished`, :func:`reason` - ``RequestHandler._finished`` and ``_reason``, which have no
  public reader (tests/integration/test_http_api.py, test_api_keys.py).
* :func:`add_listener`, :func:`hand_over` - ``TCPServer._sockets``, ``_handlers`` and
  ``_handle_connection``: ``GuardedHTTPServer`` (``_listener``) accepts with its own handler
  instead of ``netutil.add_accept_handler``, and Tornado's ``stop()`` must still find it
  (tests/integration/test_edge_limits.py).
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from typing import Any, ClassVar

import tornado.httputil
import tornado.tcpserver
import tornado.web
import tornado.websocket


class Utf8Protocol(tornado.websocket.WebSocketProtocol13):
    """Tornado 6 aborts the TCP connection on a text frame that is not UTF-8; RFC 6455 7.1.7
    wants close code 1007, so a client learns why. Only the text-frame branch of Tornado's
    private ``_handle_message`` is replaced; the rest is Tornado's."""

    def _handle_message(self, opcode: int, data: bytes) -> asyncio.Future[None] | None:
        if opcode != 0x1 or self.client_terminated or self._frame_compressed:
            return super()._handle_message(opcode, data)
        self._message_bytes_in += len(data)
        try:
            decoded = data.decode("utf-8")
        except UnicodeDecodeError:
            self.close(1007, "text frame is not valid UTF-8")
            return None
        return self._run_callback(self.handler.on_message, decoded)


def checked_utf8(
    protocol: tornado.websocket.WebSocketProtocol | None,
) -> tornado.websocket.WebSocketProtocol | None:
    """``protocol`` (from ``WebSocketHandler.get_websocket_protocol``), made a :class:`Utf8Protocol`
    when it is Tornado's RFC 6455 protocol: same state, one method replaced."""
    if type(protocol) is tornado.websocket.WebSocketProtocol13:
        protocol.__class__ = Utf8Protocol
    return protocol


class PathSummary:
    """Mixin for request handlers (put it before Tornado's class): Tornado's warnings name the
    request by method and path, never the query - ``?api_key=`` stays out of every log.

    ``summary_names_address``: whether the client's address follows, as in Tornado's own."""

    request: tornado.httputil.HTTPServerRequest
    summary_names_address: ClassVar[bool] = True

    def _request_summary(self) -> str:
        summary = f"{self.request.method} {self.request.path}"
        return f"{summary} ({self.request.remote_ip})" if self.summary_names_address else summary


def finished(handler: tornado.web.RequestHandler) -> bool:
    """Whether the handler has sent its response already (``finish()`` was called)."""
    return bool(handler._finished)


def reason(handler: tornado.web.RequestHandler) -> str:
    """The reason phrase of the handler's status (what ``set_status`` or Tornado chose)."""
    return str(handler._reason)


def add_listener(
    server: tornado.tcpserver.TCPServer, sock: socket.socket, remove: Callable[[], None]
) -> None:
    """Register a listening socket as ``TCPServer.add_sockets`` would, with our own accept
    handler; ``server.stop()`` then calls ``remove`` and closes ``sock``, as for its own."""
    server._sockets[sock.fileno()] = sock
    server._handlers[sock.fileno()] = remove


def hand_over(server: tornado.tcpserver.TCPServer, connection: socket.socket, address: Any) -> None:
    """An accepted connection into Tornado's own path (TLS wrap, ``IOStream``, ``handle_stream``)."""
    server._handle_connection(connection, address)
