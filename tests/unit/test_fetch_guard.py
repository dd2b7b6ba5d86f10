"""The SSRF guard: address ranges, DNS, and what the fetcher actually connects to.

The fetcher cases run against real servers on loopback and assert from the server's side that a
refused request never arrived - the point of the guard is the connection that did not happen.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket

import pytest

from processors.fetch import (
    Fetcher,
    FetchError,
    FetchOk,
    FetchRequest,
    Rejection,
    ResolutionError,
    check_address,
    resolve_and_check,
)
from processors.fetch._guard import AddressGuard
from tests.support.pages import PageServer

pytestmark = pytest.mark.timeout(30)

FORBIDDEN = [
    "127.0.0.1", "127.8.9.10", "10.0.0.1", "172.16.0.1", "192.168.1.1",
    "169.254.169.254",  # cloud metadata
    "100.64.0.1",  # carrier-grade NAT
    "0.0.0.0", "224.0.0.1", "239.255.255.250", "255.255.255.255", "240.0.0.1",
    "192.0.2.1", "198.51.100.7", "198.18.0.1",
    "::1", "::", "fe80::1", "fc00::1", "fd12:3456::1", "ff02::1", "ff0e::1", "2001:db8::1",
    "::ffff:127.0.0.1", "::ffff:169.254.169.254", "::ffff:10.0.0.1",  # IPv4-mapped
    "2002:7f00:1::", "2002:a9fe:a9fe::1", "2002:c0a8:101::",  # 6to4 of loopback, metadata, LAN
    "64:ff9b::7f00:1", "64:ff9b::a00:1",  # NAT64 of loopback, 10/8
]
# (NAT64 of a public address is refused too: 64:ff9b::/96 lies in ::/8, which is reserved)
PUBLIC = ["8.8.8.8", "1.1.1.1", "93.184.216.34", "2606:4700:4700::1111", "::ffff:8.8.8.8",
          "2002:808:808::"]


@pytest.mark.parametrize("address", FORBIDDEN)
def test_forbidden_addresses_are_blocked_unless_private_is_allowed(address: str) -> None:
    ip = ipaddress.ip_address(address)
    with pytest.raises(Rejection) as info:
        check_address(ip, allow_private=False)
    assert info.value.code == "blocked_address"
    assert str(ip) in info.value.message
    check_address(ip, allow_private=True)


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_pass(address: str) -> None:
    check_address(ipaddress.ip_address(address), allow_private=False)


def test_resolve_and_check_refuses_a_name_for_a_loopback_address() -> None:
    with pytest.raises(Rejection) as info:
        asyncio.run(resolve_and_check("localhost", 80, allow_private=False))
    assert info.value.code == "blocked_address"
    assert "localhost" in info.value.message
    assert "127.0.0.1" in asyncio.run(resolve_and_check("localhost", 80, allow_private=True))


def test_resolve_and_check_takes_ip_literals_without_dns() -> None:
    assert asyncio.run(resolve_and_check("8.8.8.8", 53, allow_private=False)) == ["8.8.8.8"]
    assert asyncio.run(resolve_and_check("[2606:4700:4700::1111]", 53, allow_private=False)) == [
        "2606:4700:4700::1111"
    ]
    with pytest.raises(Rejection):
        asyncio.run(resolve_and_check("169.254.169.254", 80, allow_private=False))


def test_a_name_that_does_not_resolve_is_retryable_not_a_rejection() -> None:
    async def nothing(host: str, port: int) -> list[str]:
        raise socket.gaierror(socket.EAI_NONAME, "not known")

    with pytest.raises(ResolutionError) as info:
        asyncio.run(AddressGuard(allow_private=False, lookup=nothing).resolve("no-such-host.test", 80))
    assert not isinstance(info.value, Rejection)
    assert info.value.code == "dns_error" and info.value.retryable


# --- the fetcher, against real servers ------------------------------------------------------


async def _fetch(fetcher: Fetcher, url: str, **kw: object) -> FetchOk | FetchError:
    return await fetcher.fetch(FetchRequest(url, **kw))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:{port}/page/1",
        "http://localhost:{port}/page/1",  # a name that resolves to loopback: the resolver refuses
        "http://[::ffff:127.0.0.1]:{port}/page/1",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]:{port}/page/1",
        "http://10.0.0.1:{port}/page/1",
        "http://224.0.0.1:{port}/page/1",
    ],
)
def test_the_fetcher_refuses_private_targets_by_default(url: str) -> None:
    async def go() -> None:
        async with PageServer() as pages, Fetcher(allow_private=False, timeout_s=5) as fetcher:
            result = await _fetch(fetcher, url.format(port=pages.port))
            assert isinstance(result, FetchError), result
            assert (result.code, result.retryable) == ("blocked_address", False)
            assert pages.requests == 0

    asyncio.run(go())


def test_allow_private_lifts_the_guard() -> None:
    async def go() -> None:
        async with PageServer() as pages, Fetcher(allow_private=True) as fetcher:
            for host in ("127.0.0.1", "localhost"):
                result = await _fetch(fetcher, f"http://{host}:{pages.port}/page/1")
                assert isinstance(result, FetchOk), result
            assert pages.hits["/page/1"] == 2

    asyncio.run(go())


@pytest.fixture
def second_loopback() -> None:
    """The redirect tests need a server on 127.0.0.2 (exempted) beside one on 127.0.0.1 (not)."""
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.2", 0))
        except OSError as exc:  # only Linux routes all of 127/8 to loopback
            pytest.skip(f"cannot listen on 127.0.0.2: {exc}")


@pytest.mark.usefixtures("second_loopback")
@pytest.mark.parametrize(
    "target",
    [
        "http://127.0.0.1:{inner}/page/1",  # IP literal: checked before the request
        "http://localhost:{inner}/page/1",  # name: checked by the resolver on connect
        "http://[::1]:{inner}/page/1",
        "http://169.254.169.254/latest/meta-data/",
    ],
)
def test_a_redirect_to_a_private_address_is_blocked(target: str) -> None:
    async def go() -> None:
        outer = await PageServer("127.0.0.2").start()  # reachable: exempted below
        inner = await PageServer("127.0.0.1").start()  # must never be reached
        try:
            fetcher = Fetcher(allow_private=False, allow_networks=["127.0.0.2/32"], timeout_s=5)
            async with fetcher:
                ok = await _fetch(fetcher, f"{outer.url}/redirect/2")
                assert isinstance(ok, FetchOk) and ok.redirects == 3, ok  # the guard is on, not broken
                hop = target.format(inner=inner.port)
                result = await _fetch(fetcher, f"{outer.url}/redirect/2?to={hop}")
                assert isinstance(result, FetchError), result
                assert (result.code, result.retryable) == ("blocked_address", False)
                assert outer.hits["/redirect/1"] == 2  # both chains ran to the last hop's target
                assert inner.requests == 0
        finally:
            await outer.close()
            await inner.close()

    asyncio.run(go())


def test_a_jobs_own_proxy_is_guarded_but_the_operators_proxies_are_trusted() -> None:
    """A per-job proxy on a private address is refused (it is just another address the job asks
    us to reach); the same address configured by the operator is used."""

    async def go() -> None:
        async with PageServer("127.0.0.1") as pages:
            fake_proxy = pages.url  # any private address will do: the guard refuses before use
            fetcher = Fetcher(allow_private=False, allow_networks=["8.8.8.8/32"], timeout_s=5)
            async with fetcher:
                result = await _fetch(fetcher, "http://8.8.8.8/", proxy=fake_proxy)
                assert isinstance(result, FetchError)
                assert result.code == "blocked_address" and "127.0.0.1" in result.message
            assert pages.requests == 0

    asyncio.run(go())


def test_a_name_resolving_to_a_private_address_reads_like_the_literal_and_names_the_switch() -> None:
    # it read "host 'intranet.test' resolves to 10.0.0.7 is not a public address", with no hint
    async def table(host: str, port: int) -> list[str]:
        return ["10.0.0.7"]

    guard = AddressGuard(allow_private=False, lookup=table)
    with pytest.raises(Rejection) as by_name:
        asyncio.run(guard.resolve("intranet.test", 80))
    with pytest.raises(Rejection) as by_address:
        asyncio.run(guard.resolve("10.0.0.7", 80))
    hint = "(set SCRAPER_ALLOW_PRIVATE=1 to allow loopback and private targets)"
    assert by_name.value.message == (
        f"host 'intranet.test' resolves to 10.0.0.7, which is not a public address {hint}"
    )
    assert by_address.value.message == f"address 10.0.0.7 is not a public address {hint}"
