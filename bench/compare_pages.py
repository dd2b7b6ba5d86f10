"""The page server of bench/compare.py: tests/support/pages.py's server, pages optionally late.

Same routes and the same ~47 KB ``/page/<n>?kb=47`` HTML as :class:`tests.support.pages.PageServer`,
plus

* ``--delay-ms D``: every ``/page/...`` answer is written D ms after the request arrived (the
  other routes are unchanged), to compare clients against a server that is not instant;
* ``/pid``: the server's process id, so the bench can read its CPU time from ``/proc``.

    python -m bench.compare_pages --port 0 --delay-ms 0   # prints "pages listening on <PORT>"
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os

from tests.support.pages import Handler, PageServer, _Connection, response


class DelayedPageServer(PageServer):
    def __init__(self, host: str = "127.0.0.1", port: int = 0, delay_ms: float = 0.0) -> None:
        super().__init__(host, port)
        self.delay_s = delay_ms / 1000

    def route(
        self, conn: _Connection, path: str, query: dict[str, list[str]], head: bytes
    ) -> bytes | Handler:
        if path == "/pid":
            return response(200, f"{os.getpid()}\n".encode(), content_type=b"text/plain")
        result = super().route(conn, path, query, head)
        if self.delay_s and path.startswith("/page/") and isinstance(result, bytes):
            return self._later(conn, result)
        return result

    async def _later(self, conn: _Connection, data: bytes) -> None:
        await asyncio.sleep(self.delay_s)
        conn.write(data)


async def _serve(host: str, port: int, delay_ms: float) -> None:
    server = await DelayedPageServer(host, port, delay_ms).start()
    print(f"pages listening on {server.port}", flush=True)
    await asyncio.Event().wait()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0, help="0 picks a free port (printed)")
    ap.add_argument("--delay-ms", type=float, default=0.0, help="answer /page/... after this long")
    args = ap.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(args.host, args.port, args.delay_ms))


if __name__ == "__main__":
    main()
