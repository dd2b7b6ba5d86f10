"""A tiny HTTP forward proxy, run as its own process so proxy tests cross a real process boundary.

    python -m tests.support.proxy --port 0 --name a     # prints "proxy listening on <PORT>"

* ``GET http://host:port/path HTTP/1.1`` (absolute-form, what clients send to a proxy) is
  forwarded to the target as origin-form; the relayed response gains ``x-via-proxy: <name>``
  and ``x-proxy-count: <n>`` (requests this proxy has handled), so a test can see which proxy
  carried a request and how many it carried. An unreachable target answers 502.
* ``CONNECT host:port`` opens a tunnel (for https:// targets); the 200 carries ``x-via-proxy``.
* ``--auth user:password``: requests without that ``Proxy-Authorization: Basic`` get 407.
* Every connection is closed after one request: simple and enough for tests.

:func:`spawn_proxy` starts one as a subprocess and yields its URL once it printed its port.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
from collections.abc import Iterator
from urllib.parse import urlsplit

_HOP_BY_HOP = frozenset({
    "connection", "keep-alive", "proxy-connection", "proxy-authorization", "proxy-authenticate",
    "te", "trailer", "upgrade",
})


class Proxy:
    """The proxy's state: its name (for ``x-via-proxy``) and how many requests it handled."""

    def __init__(self, name: str, auth: str | None = None) -> None:
        self.name = name
        self.count = 0
        self.auth = None if auth is None else "Basic " + base64.b64encode(auth.encode()).decode()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            writer.close()
            return
        self.count += 1
        lines = head.decode("latin-1").split("\r\n")
        try:
            method, target, _ = lines[0].split(" ", 2)
        except ValueError:
            await self._reply(writer, 400)
            return
        headers = [tuple(p.strip() for p in line.split(":", 1)) for line in lines[1:] if ":" in line]
        if self.auth is not None and (
            next((v for k, v in headers if k.lower() == "proxy-authorization"), None) != self.auth
        ):
            await self._reply(writer, 407)
            return
        try:
            if method == "CONNECT":
                await self._tunnel(reader, writer, target)
            else:
                await self._forward(reader, writer, method, target, headers)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def _reply(self, writer: asyncio.StreamWriter, status: int) -> None:
        body = f"proxy {self.name}: {status}\n".encode()
        writer.write(
            f"HTTP/1.1 {status} Proxy\r\nx-via-proxy: {self.name}\r\nContent-Length: {len(body)}\r\n"
            f"Connection: close\r\n\r\n".encode() + body
        )
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        writer.close()

    async def _forward(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        method: str,
        target: str,
        headers: list[tuple[str, ...]],
    ) -> None:
        url = urlsplit(target)
        if url.scheme != "http" or not url.hostname:
            await self._reply(writer, 400)
            return
        length = next((int(v) for k, v in headers if k.lower() == "content-length"), 0)
        body = await reader.readexactly(length) if length else b""
        try:
            up_reader, up_writer = await asyncio.open_connection(url.hostname, url.port or 80)
        except OSError:
            await self._reply(writer, 502)
            return
        path = (url.path or "/") + (f"?{url.query}" if url.query else "")
        kept = "".join(f"{k}: {v}\r\n" for k, v in headers if k.lower() not in _HOP_BY_HOP)
        request_head = f"{method} {path} HTTP/1.1\r\n{kept}Connection: close\r\n\r\n"
        up_writer.write(request_head.encode("latin-1") + body)
        try:
            status_and_headers = await up_reader.readuntil(b"\r\n\r\n")
            out = [
                line for line in status_and_headers.decode("latin-1").split("\r\n")[:-2]
                if line.split(":", 1)[0].strip().lower() not in _HOP_BY_HOP
            ]
            out += [f"x-via-proxy: {self.name}", f"x-proxy-count: {self.count}", "Connection: close"]
            writer.write(("\r\n".join(out) + "\r\n\r\n").encode("latin-1"))
            await _pipe(up_reader, writer)
        finally:
            up_writer.close()

    async def _tunnel(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, target: str) -> None:
        host, _, port = target.rpartition(":")
        try:
            up_reader, up_writer = await asyncio.open_connection(host.strip("[]"), int(port))
        except (OSError, ValueError):
            await self._reply(writer, 502)
            return
        writer.write(f"HTTP/1.1 200 Connection established\r\nx-via-proxy: {self.name}\r\n\r\n".encode())
        try:
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        finally:
            up_writer.close()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while chunk := await reader.read(65536):
        writer.write(chunk)
        await writer.drain()
    if writer.can_write_eof():
        with contextlib.suppress(OSError):
            writer.write_eof()


async def _serve(host: str, port: int, name: str | None, auth: str | None = None) -> None:
    proxy = Proxy(name or "proxy", auth)
    server = await asyncio.start_server(proxy.handle, host, port, backlog=1024)
    bound = int(server.sockets[0].getsockname()[1])
    if name is None:
        proxy.name = f"proxy-{bound}"
    print(f"proxy listening on {bound}", flush=True)
    async with server:
        await server.serve_forever()


@contextlib.contextmanager
def spawn_proxy(name: str, auth: str | None = None) -> Iterator[str]:
    """Run a proxy process named ``name`` (requiring ``auth``, ``user:password``, if given); yield
    its URL (``http://127.0.0.1:<port>``, without the credentials)."""
    from .procs import spawn_listening

    extra = ("--auth", auth) if auth is not None else ()
    with spawn_listening("tests.support.proxy", "--name", name, *extra, banner="proxy listening on") as port:
        yield f"http://127.0.0.1:{port}"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Tiny HTTP forward proxy for tests.")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0, help="0 picks a free port (printed)")
    ap.add_argument("--name", default=None, help="value of the x-via-proxy header")
    ap.add_argument("--auth", default=None, help="user:password every request must present")
    args = ap.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(args.host, args.port, args.name, args.auth))


if __name__ == "__main__":
    main()
