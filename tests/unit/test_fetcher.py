"""The Fetcher against real servers on loopback: results, error codes, limits, proxies, threads.

Each scenario runs its own page server (tests/support/pages.py) in the test's event loop, so
assertions about ordering and concurrency read what the *server* saw, not the wall clock.
"""

from __future__ import annotations

import asyncio
import datetime
import email.utils
import json
import random
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import TypeVar

import pytest
from hypothesis import given
from hypothesis import strategies as st

import processors.fetch
from processors.fetch import Fetcher, FetchError, FetchOk, FetchRequest, backoff_delay
from scrapeledger.errors import ConfigError
from scrapeledger.settings import Settings
from tests.support import pages as pages_module
from tests.support.pages import PageServer
from tests.support.proxy import spawn_proxy

pytestmark = pytest.mark.timeout(30)

T = TypeVar("T")


def scenario(body: Callable[[PageServer], Awaitable[T]]) -> T:
    """Run ``body`` with a fresh page server, in a fresh event loop."""

    async def main() -> T:
        async with PageServer() as pages:
            return await body(pages)

    return asyncio.run(main())


def fetch_one(path: str, **fetcher_kw: object) -> FetchOk | FetchError:
    """GET one path of a fresh page server with a fresh fetcher (private addresses allowed)."""

    async def body(pages: PageServer) -> FetchOk | FetchError:
        async with Fetcher(allow_private=True, **fetcher_kw) as fetcher:  # type: ignore[arg-type]
            return await fetcher.fetch(FetchRequest(pages.url + path))

    return scenario(body)


def ok(result: FetchOk | FetchError) -> FetchOk:
    assert isinstance(result, FetchOk), result
    return result


def err(result: FetchOk | FetchError) -> FetchError:
    assert isinstance(result, FetchError), result
    return result


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_the_public_api_is_pinned() -> None:
    assert sorted(processors.fetch.__all__) == [
        "AddressGuard", "FetchError", "FetchOk", "FetchRequest", "Fetcher", "Rejection", "ResolutionError",
        "backoff_delay", "check_address", "classify", "classify_exception", "classify_response",
        "parse_proxy", "resolve_and_check", "retry_after_seconds", "validate_url",
    ]


# --- success ---------------------------------------------------------------------------------


def test_a_page_comes_back_with_its_metadata() -> None:
    async def body(pages: PageServer) -> None:
        async with Fetcher(allow_private=True) as fetcher:
            url = f"{pages.url}/page/42?kb=3"
            result = ok(await fetcher.fetch(FetchRequest(url)))
            assert result.url == url and result.final_url == url
            assert result.http_status == 200 and result.redirects == 0
            assert b"<title>page 42</title>" in result.body and b"page 42 " in result.body
            assert len(result.body) == 3 * 1024
            assert not result.truncated
            assert result.headers["content-type"] == "text/html; charset=utf-8"
            assert result.headers["content-length"] == str(3 * 1024)
            assert result.elapsed_ms > 0

    scenario(body)


def test_response_headers_are_lower_cased_and_repeats_joined() -> None:
    headers = ok(fetch_one("/multi-header")).headers
    assert headers["x-multi"] == "a, b"
    assert headers["set-cookie"] == "a=1, b=2"
    assert all(name == name.lower() for name in headers)


def test_request_headers_user_agent_and_no_shared_cookies() -> None:
    async def body(pages: PageServer) -> None:
        async with Fetcher(allow_private=True, user_agent="test-agent/1") as fetcher:
            await fetcher.fetch(FetchRequest(pages.url + "/multi-header"))  # sets two cookies
            req = FetchRequest(
                pages.url + "/headers",
                headers={"X-Job": "7", "Connection": "upgrade", "Host": "evil.example"},
            )
            seen = json.loads(ok(await fetcher.fetch(req)).body)
            assert seen["x-job"] == "7"
            assert seen["user-agent"] == "test-agent/1"
            assert seen["host"] == f"127.0.0.1:{pages.port}"  # a job cannot retarget the Host
            assert "upgrade" not in seen.get("connection", "")
            assert "cookie" not in seen  # another job's Set-Cookie is never sent back

    scenario(body)


def test_a_redirect_chain_ends_at_the_final_url() -> None:
    async def body(pages: PageServer) -> None:
        async with Fetcher(allow_private=True) as fetcher:
            # /redirect/3 -> 2 -> 1 -> 0 -> /page/0, relative Locations: the host name is kept
            start = f"http://localhost:{pages.port}/redirect/3"
            result = ok(await fetcher.fetch(FetchRequest(start)))
            assert (result.url, result.redirects, result.http_status) == (start, 4, 200)
            assert result.final_url == f"http://localhost:{pages.port}/page/0"
            assert b"<title>page 0</title>" in result.body

    scenario(body)


@pytest.mark.parametrize("code", [301, 303, 307, 308])
def test_every_redirect_status_is_followed(code: int) -> None:
    result = ok(fetch_one(f"/redirect/2?code={code}"))
    assert (result.redirects, result.http_status) == (3, 200)


def test_credentials_stay_on_their_origin_across_redirects() -> None:
    async def body(pages: PageServer) -> None:
        async with Fetcher(allow_private=True) as fetcher:
            auth = {"Authorization": "Bearer secret", "X-Keep": "yes"}
            same = f"{pages.url}/redirect/1?to=/headers"
            seen = json.loads(ok(await fetcher.fetch(FetchRequest(same, headers=auth))).body)
            assert seen["authorization"] == "Bearer secret"
            other = f"{pages.url}/redirect/1?to=http://localhost:{pages.port}/headers"
            seen = json.loads(ok(await fetcher.fetch(FetchRequest(other, headers=auth))).body)
            assert "authorization" not in seen and seen["x-keep"] == "yes"

    scenario(body)


# --- failures, and whether they are worth retrying ---------------------------------------------


def test_too_many_redirects_is_permanent() -> None:
    assert ok(fetch_one("/redirect/2", max_redirects=3)).redirects == 3
    result = err(fetch_one("/redirect/3", max_redirects=3))
    assert (result.code, result.retryable) == ("too_many_redirects", False)


@pytest.mark.parametrize("target", ["ftp://example.org/file", "javascript:alert(1)", "http://[::1"])
def test_a_redirect_to_a_non_http_target_is_permanent(target: str) -> None:
    result = err(fetch_one(f"/redirect/1?to={target}"))
    assert (result.code, result.retryable) == ("invalid_redirect", False)


@pytest.mark.parametrize(
    ("status", "retryable"),
    [(404, False), (410, False), (400, False), (401, False), (403, False), (451, False),
     (408, True), (500, True), (502, True), (503, True), (504, True)],
)
def test_http_errors_carry_their_status(status: int, retryable: bool) -> None:
    result = err(fetch_one(f"/status/{status}"))
    assert (result.code, result.retryable, result.http_status) == (f"http_{status}", retryable, status)


def test_429_carries_retry_after_in_seconds_or_as_a_date() -> None:
    result = err(fetch_one("/status/429?retry_after=7"))
    assert (result.code, result.retryable, result.http_status) == ("http_429", True, 429)
    assert result.retry_after_s == 7
    when = email.utils.formatdate(time.time() + 120, usegmt=True).replace(" ", "%20")
    dated = err(fetch_one(f"/status/429?retry_after={when}"))
    assert dated.retry_after_s is not None and 100 < dated.retry_after_s <= 121
    assert err(fetch_one("/status/429")).retry_after_s is None


def test_non_error_statuses_are_results() -> None:
    assert ok(fetch_one("/status/204")).http_status == 204
    assert ok(fetch_one("/status/302")).http_status == 302  # a redirect without Location is final


def test_a_flaky_server_fails_then_succeeds() -> None:
    async def body(pages: PageServer) -> list[str]:
        async with Fetcher(allow_private=True) as fetcher:
            results = [await fetcher.fetch(FetchRequest(pages.url + "/flaky/k?fail=2")) for _ in range(3)]
        return [r.code if isinstance(r, FetchError) else "ok" for r in results]

    assert scenario(body) == ["http_503", "http_503", "ok"]


def test_a_server_that_never_answers_times_out() -> None:
    async def body(pages: PageServer) -> None:
        async with Fetcher(allow_private=True, timeout_s=30) as fetcher:
            result = err(await fetcher.fetch(FetchRequest(pages.url + "/hang", timeout_s=0.3)))
            assert (result.code, result.retryable) == ("timeout", True)
            # the deadline covers the redirect hops too
            chained = pages.url + "/redirect/3?to=/hang"
            result = err(await fetcher.fetch(FetchRequest(chained, timeout_s=0.3)))
            assert result.code == "timeout"
            assert pages.hits["/hang"] == 2
        await pages.wait_until(lambda: pages.in_flight == 0)  # the fetcher hung up

    scenario(body)


def test_the_fetchers_default_timeout_applies() -> None:
    result = err(fetch_one("/hang", timeout_s=0.3))
    assert result.code == "timeout"


def test_connection_refused_is_retryable() -> None:
    async def body(pages: PageServer) -> None:
        async with Fetcher(allow_private=True) as fetcher:
            result = err(await fetcher.fetch(FetchRequest(f"http://127.0.0.1:{closed_port()}/")))
            assert (result.code, result.retryable) == ("connect_error", True)

    scenario(body)


async def table_lookup(host: str, port: int) -> list[str]:
    """A lookup the tests control: names in this table, nothing else (no DNS leaves the machine)."""
    table = {"pages.test": ["127.0.0.1"], "public.test": ["8.8.8.8"], "mixed.test": ["8.8.8.8", "10.0.0.1"]}
    if host not in table:
        raise socket.gaierror(socket.EAI_NONAME, f"{host} is not in the test's table")
    return table[host]


def test_a_name_that_does_not_resolve_is_a_retryable_dns_error() -> None:
    async def body(pages: PageServer) -> None:
        for allow_private in (False, True):  # the guarded and the open pool resolve alike
            async with Fetcher(allow_private=allow_private, lookup=table_lookup) as fetcher:
                result = err(await fetcher.fetch(FetchRequest("http://no-such-host.test/", timeout_s=10)))
                assert (result.code, result.retryable) == ("dns_error", True)

    scenario(body)


def test_connections_use_the_injected_lookup() -> None:
    async def body(pages: PageServer) -> None:
        async with Fetcher(allow_private=True, lookup=table_lookup) as fetcher:
            result = ok(await fetcher.fetch(FetchRequest(f"http://pages.test:{pages.port}/page/4")))
            assert b"page 4" in result.body
        async with Fetcher(allow_private=False, lookup=table_lookup) as fetcher:
            for name in ("pages.test", "mixed.test"):  # loopback, or one private among public
                result = err(await fetcher.fetch(FetchRequest(f"http://{name}:{pages.port}/page/4")))
                assert result.code == "blocked_address", (name, result)
        assert pages.requests == 1

    scenario(body)


async def _raw_server(reply: bytes) -> tuple[asyncio.Server, int]:
    """A server that reads a request head, writes ``reply`` verbatim and hangs up."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(reply)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, int(server.sockets[0].getsockname()[1])


@pytest.mark.parametrize(
    ("reply", "code"),
    [
        (b"", "connect_error"),  # closed without a response
        (b"garbage\r\n\r\n", "protocol_error"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort", "read_error"),
        (b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: 9\r\n\r\nnot gzip!", "decode_error"),
    ],
)
def test_broken_servers_become_error_codes_never_exceptions(reply: bytes, code: str) -> None:
    async def main() -> FetchError:
        server, port = await _raw_server(reply)
        async with server, Fetcher(allow_private=True, timeout_s=5) as fetcher:
            return err(await fetcher.fetch(FetchRequest(f"http://127.0.0.1:{port}/")))

    result = asyncio.run(main())
    assert result.code == code, result


def test_bad_urls_fail_without_a_request() -> None:
    async def body(pages: PageServer) -> None:
        async with Fetcher(allow_private=True) as fetcher:
            result = err(await fetcher.fetch(FetchRequest("ftp://example.org/file")))
            assert (result.code, result.retryable) == ("unsupported_scheme", False)
            result = err(await fetcher.fetch(FetchRequest(pages.url + "/page/1", proxy="socks5://127.0.0.1:1080")))
            assert (result.code, result.retryable) == ("invalid_proxy", False)
        assert pages.requests == 0

    scenario(body)


# --- body limit --------------------------------------------------------------------------------


@pytest.mark.parametrize(("size", "truncated"), [(100_000, True), (4097, True), (4096, False), (10, False)])
def test_the_body_stops_at_the_limit(size: int, truncated: bool) -> None:
    result = ok(fetch_one(f"/big?bytes={size}", max_body_bytes=4096))
    assert len(result.body) == min(size, 4096)
    assert result.truncated is truncated


def test_a_huge_body_is_not_read_to_the_end() -> None:
    async def body(pages: PageServer) -> None:
        async with Fetcher(allow_private=True, max_body_bytes=64 * 1024) as fetcher:
            result = ok(await fetcher.fetch(FetchRequest(pages.url + "/big?bytes=10000000000")))
            assert len(result.body) == 64 * 1024 and result.truncated
        await pages.wait_until(lambda: pages.in_flight == 0)  # the server saw the client leave

    scenario(body)


# --- concurrency limits ----------------------------------------------------------------------


def test_a_full_host_does_not_hold_up_other_hosts() -> None:
    """per_host=2: of four requests to a stalled host two reach it and two wait in the fetcher,
    while a request to another host (same server, other name) gets through and completes."""

    async def body(pages: PageServer) -> None:
        async with Fetcher(allow_private=True, per_host=2, concurrency=64) as fetcher:
            slow = [
                asyncio.create_task(fetcher.fetch(FetchRequest(f"{pages.url}/gate/slow?i={i}")))
                for i in range(4)
            ]
            await pages.wait_until(lambda: pages.hits["/gate/slow"] == 2)
            other = await fetcher.fetch(FetchRequest(f"http://localhost:{pages.port}/page/7"))
            assert ok(other).http_status == 200
            assert pages.hits["/gate/slow"] == 2  # still: the other two are queued in the fetcher
            assert fetcher.host_slots.in_use("127.0.0.1") == 2
            pages.release("slow")
            assert all(isinstance(r, FetchOk) for r in await asyncio.gather(*slow))
        events = list(pages.events)
        arrivals = [i for i, e in enumerate(events) if e == ("arrive", "/gate/slow")]
        assert events.index(("done", "/page/7")) < arrivals[2]
        in_flight = peak = 0
        for kind, path in events:
            if path == "/gate/slow":
                in_flight += 1 if kind == "arrive" else -1
                peak = max(peak, in_flight)
        assert peak == 2

    scenario(body)


def test_global_concurrency_reaches_its_bound_and_stops_there() -> None:
    async def body(pages: PageServer) -> None:
        async with Fetcher(allow_private=True, concurrency=64, per_host=64) as fetcher:
            tasks = [
                asyncio.create_task(fetcher.fetch(FetchRequest(f"{pages.url}/gate/g?i={i}")))
                for i in range(100)
            ]
            await pages.wait_until(lambda: pages.in_flight == 64)
            # a request to another host gets its host slot, then queues behind the 64: the bound
            # is global
            other = asyncio.create_task(fetcher.fetch(FetchRequest(f"http://localhost:{pages.port}/page/1")))
            for _ in range(1000):
                if fetcher.host_slots.in_use("localhost"):
                    break
                await asyncio.sleep(0)
            assert fetcher.host_slots.in_use("localhost") == 1
            assert pages.hits["/gate/g"] == 64 and pages.hits["/page/1"] == 0
            pages.release("g")
            results = await asyncio.gather(*tasks, other)
        assert all(isinstance(r, FetchOk) for r in results)
        assert pages.max_in_flight == 64
        assert pages.count()["/gate"] == {"concurrent": 0, "max_concurrent": 64, "total": 100}
        assert pages.hits["/gate/g"] == 100
        assert len(fetcher.host_slots) == 0  # per-host entries are dropped when idle

    scenario(body)


# --- proxies: real proxy processes -------------------------------------------------------------


@pytest.fixture(scope="module")
def proxies() -> Iterator[tuple[str, str]]:
    with spawn_proxy("a") as a, spawn_proxy("b") as b:
        yield a, b


def test_requests_go_through_the_proxies_in_rotation(proxies: tuple[str, str]) -> None:
    async def body(pages: PageServer) -> list[str]:
        async with Fetcher(allow_private=True, proxies=list(proxies)) as fetcher:
            results = [ok(await fetcher.fetch(FetchRequest(f"{pages.url}/page/{i}"))) for i in range(4)]
        assert pages.hits["/page/0"] == 1
        return [r.headers["x-via-proxy"] for r in results]

    assert scenario(body) == ["a", "b", "a", "b"]


def test_a_redirect_chain_stays_on_one_proxy(proxies: tuple[str, str]) -> None:
    async def body(pages: PageServer) -> None:
        async with Fetcher(allow_private=True, proxies=list(proxies)) as fetcher:
            result = ok(await fetcher.fetch(FetchRequest(f"{pages.url}/redirect/3")))
            assert result.redirects == 4 and result.headers["x-via-proxy"] == "a"

    scenario(body)


def test_a_jobs_proxy_overrides_the_rotation(proxies: tuple[str, str]) -> None:
    a, b = proxies

    async def body(pages: PageServer) -> None:
        async with Fetcher(allow_private=True, proxies=[a]) as fetcher:
            for _ in range(2):
                result = ok(await fetcher.fetch(FetchRequest(f"{pages.url}/page/1", proxy=b)))
                assert result.headers["x-via-proxy"] == "b"
        async with Fetcher(allow_private=True) as fetcher:  # no proxies configured at all
            result = ok(await fetcher.fetch(FetchRequest(f"{pages.url}/page/1", proxy=a)))
            assert result.headers["x-via-proxy"] == "a"

    scenario(body)


def test_proxy_credentials_become_proxy_authorization() -> None:
    heads: list[bytes] = []

    async def main() -> None:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            heads.append(await reader.readuntil(b"\r\n\r\n"))
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = int(server.sockets[0].getsockname()[1])
        proxy = f"http://user:pw@127.0.0.1:{port}"
        async with server, Fetcher(allow_private=True, proxies=[proxy]) as fetcher:
            assert ok(await fetcher.fetch(FetchRequest("http://example.test/x?y=1"))).body == b"ok"

    asyncio.run(main())
    head = heads[0].decode().lower()
    assert head.startswith("get http://example.test/x?y=1 http/1.1")  # absolute-form, to the proxy
    assert "proxy-authorization: basic dxnlcjpwdw==" in head  # base64("user:pw")


def test_a_dead_proxy_is_a_retryable_proxy_error() -> None:
    async def body(pages: PageServer) -> None:
        dead = f"http://127.0.0.1:{closed_port()}"
        async with Fetcher(allow_private=True, proxies=[dead]) as fetcher:
            result = err(await fetcher.fetch(FetchRequest(f"{pages.url}/page/1")))
            assert (result.code, result.retryable) == ("proxy_error", True)
        assert pages.requests == 0

    scenario(body)


def test_through_a_proxy_the_target_is_still_guarded(proxies: tuple[str, str]) -> None:
    """The proxy resolves the target, so the fetcher resolves and checks it first."""

    async def body(pages: PageServer) -> None:
        async with Fetcher(allow_private=False, proxies=list(proxies)) as fetcher:
            for host in ("127.0.0.1", "localhost"):
                result = err(await fetcher.fetch(FetchRequest(f"http://{host}:{pages.port}/page/1")))
                assert result.code == "blocked_address"
        assert pages.requests == 0

    scenario(body)


def test_unsupported_proxies_in_settings_fail_at_start() -> None:
    with pytest.raises(ConfigError):
        Fetcher(allow_private=False, proxies=["socks5://127.0.0.1:1080"])


def test_no_proxies_may_be_given_as_none() -> None:
    assert Fetcher(allow_private=False, proxies=None).proxies == ()


def test_from_settings() -> None:
    settings = Settings(
        scraper_allow_private=True, scraper_proxies="http://p1:3128, http://p2:3128",
        scraper_concurrency=8, scraper_per_host=3, scraper_timeout_s=4, scraper_max_redirects=2,
        scraper_max_body_bytes=2048,
    )
    fetcher = Fetcher.from_settings(settings)
    assert fetcher.proxies == ("http://p1:3128", "http://p2:3128")
    assert fetcher.guard.allow_private
    assert (fetcher.concurrency, fetcher.host_slots.per_host, fetcher.timeout_s) == (8, 3, 4)
    assert (fetcher.max_redirects, fetcher.max_body_bytes) == (2, 2048)


# --- threads: the scraper's loop runs in a daemon thread ---------------------------------------


def test_a_fetcher_built_in_another_thread_serves_a_loop_in_a_daemon_thread() -> None:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        pages = asyncio.run_coroutine_threadsafe(PageServer().start(), loop).result(10)
        fetcher = Fetcher(allow_private=True)  # built here, in the main thread: no loop touched
        futures = [
            asyncio.run_coroutine_threadsafe(fetcher.fetch(FetchRequest(f"{pages.url}/page/{i}")), loop)
            for i in range(20)
        ]
        results = [f.result(10) for f in futures]
        assert all(isinstance(r, FetchOk) for r in results)

        async def from_another_loop() -> None:
            await fetcher.fetch(FetchRequest(f"{pages.url}/page/1"))

        with pytest.raises(RuntimeError, match="another event loop"):
            asyncio.run(from_another_loop())
        asyncio.run_coroutine_threadsafe(fetcher.aclose(), loop).result(10)
        asyncio.run_coroutine_threadsafe(pages.close(), loop).result(10)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def test_a_closed_fetcher_refuses_work() -> None:
    async def main() -> None:
        fetcher = Fetcher(allow_private=True)
        await fetcher.aclose()
        await fetcher.aclose()  # idempotent
        with pytest.raises(RuntimeError, match="closed"):
            await fetcher.fetch(FetchRequest("http://127.0.0.1:1/"))

    asyncio.run(main())


# --- TLS -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def self_signed(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """A self-signed certificate for 127.0.0.1: a TLS server no default trust store accepts."""
    x509 = pytest.importorskip("cryptography.x509")
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("tls")
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ))
    return str(cert_file), str(key_file)


def test_an_untrusted_certificate_is_a_permanent_tls_error(
    self_signed: tuple[str, str], proxies: tuple[str, str]
) -> None:
    async def main() -> list[FetchError]:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(*self_signed)

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=context)
        port = int(server.sockets[0].getsockname()[1])
        async with server, Fetcher(allow_private=True, timeout_s=5) as fetcher:
            url = f"https://127.0.0.1:{port}/"
            direct = err(await fetcher.fetch(FetchRequest(url)))
            tunnelled = err(await fetcher.fetch(FetchRequest(url, proxy=proxies[0])))  # via CONNECT
            return [direct, tunnelled]

    for result in asyncio.run(main()):
        assert (result.code, result.retryable) == ("tls_error", False), result


# --- backoff_delay: the properties the scraper's retry schedule relies on ----------------------


@given(st.integers(1, 200), st.floats(0, 60), st.floats(0, 600), st.integers(0, 2**32))
def test_backoff_without_retry_after_stays_within_zero_and_the_cap(
    attempt: int, base: float, cap: float, seed: int
) -> None:
    assert 0 <= backoff_delay(attempt, base_s=base, cap_s=cap, rng=random.Random(seed)) <= cap


@given(st.integers(1, 200), st.floats(0, 60), st.floats(0, 600), st.floats(0.001, 1e6), st.integers(0, 2**32))
def test_backoff_waits_at_least_retry_after_up_to_300s(
    attempt: int, base: float, cap: float, retry_after: float, seed: int
) -> None:
    d = backoff_delay(attempt, base_s=base, cap_s=cap, retry_after_s=retry_after, rng=random.Random(seed))
    assert d >= min(retry_after, 300)
    assert d <= max(cap, 300)


# --- the page server itself ------------------------------------------------------------------


def test_page_server_routes_counters_and_reset() -> None:
    async def main() -> None:
        runner, base = await pages_module.start()
        try:
            async with Fetcher(allow_private=True) as fetcher:
                page = ok(await fetcher.fetch(FetchRequest(base + "/page/9")))
                assert len(page.body) == 2048 and b"page 9 " in page.body  # 2 KB by default
                ok(await fetcher.fetch(FetchRequest(base + "/slow?ms=20")))
                gated = [
                    asyncio.create_task(fetcher.fetch(FetchRequest(f"{base}/gate/c?i={i}"))) for i in range(3)
                ]
                await runner.wait_until(lambda: runner.count().get("/gate", {}).get("concurrent") == 3)
                runner.release("c")
                assert all(isinstance(r, FetchOk) for r in await asyncio.gather(*gated))
                big = ok(await fetcher.fetch(FetchRequest(base + "/big?bytes=5000")))
                assert big.body == b"x" * 5000
                counts = json.loads(ok(await fetcher.fetch(FetchRequest(base + "/count"))).body)
                assert counts["/gate"] == {"concurrent": 0, "max_concurrent": 3, "total": 3}
                assert counts["/slow"] == {"concurrent": 0, "max_concurrent": 1, "total": 1}
                assert counts["/page"]["total"] == 1 and "/count" not in counts
                ok(await fetcher.fetch(FetchRequest(base + "/reset")))
                counts = json.loads(ok(await fetcher.fetch(FetchRequest(base + "/count"))).body)
                assert counts["/gate"] == {"concurrent": 0, "max_concurrent": 0, "total": 0}
        finally:
            await runner.cleanup()

    asyncio.run(main())


def test_page_server_runs_as_a_process_and_says_its_port() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.support.pages", "--port", "0"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # blocks until the server printed: readiness, not a sleep
        assert line.startswith("pages listening on ")
        port = int(line.split()[-1])

        async def main() -> FetchOk | FetchError:
            async with Fetcher(allow_private=True) as fetcher:
                return await fetcher.fetch(FetchRequest(f"http://127.0.0.1:{port}/page/3"))

        assert b"<title>page 3</title>" in ok(asyncio.run(main())).body
    finally:
        proc.terminate()
        proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()
