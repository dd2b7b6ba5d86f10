"""Every spelling of a forbidden address is refused: as the target, as a per-job proxy, at the
validator (``rejected``) and at the fetcher (no connection).

The hole this pins: ``http://127<U+3002>0<U+3002>0<U+3002>1:P`` as a job's proxy was a *name* to
the guard's IP-literal check, but yarl folded it to ``127.0.0.1`` and aiohttp connected there
without asking the guarded resolver. Every spelling below must fold to the address it spells
and then be checked as that address. The fetch cases assert from a logging server's side that
not one connection arrived.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import ledger
from processors.fetch import Fetcher, FetchError, FetchRequest, Rejection, parse_proxy, validate_url
from processors.validator import check_request

pytestmark = pytest.mark.timeout(60)

DOTS = [".", "\u3002", "\uff0e", "\uff61"]  # full stop, ideographic, fullwidth, halfwidth ideographic
FULLWIDTH = {str(d): chr(0xFF10 + d) for d in range(10)}
ENCLOSED = {0: "\u24ea", **{n: chr(0x2460 + n - 1) for n in range(1, 21)}}  # (0), (1) .. (20)
FORBIDDEN_V4 = ["127.0.0.1", "127.1.2.3", "10.0.0.1", "192.168.1.1", "169.254.169.254", "0.0.0.0"]
# forms WHATWG or inet_aton read as an address: refused (not canonical) rather than guessed at
ODD_FORMS = ["0177.0.0.1", "0x7f.0.0.1", "127.1", "2130706433", "0x7f000001", "127.0.1", "017700000001"]
V6_FORMS = ["[::1]", "[0:0::1]", "[::ffff:127.0.0.1]", "[::ffff:7f00:1]", "[64:ff9b::7f00:1]",
            "[64:ff9b::a00:1]", "[2002:7f00:1::]", "[fe80::1]", "[fd00::1]"]


@st.composite
def spelled_octet(draw: st.DrawFn, octet: int) -> str:
    if octet in ENCLOSED and draw(st.booleans()):
        return ENCLOSED[octet]
    return "".join(draw(st.sampled_from([d, FULLWIDTH[d], *([ENCLOSED[int(d)]] if d != "0" else [])]))
                   for d in str(octet))


@st.composite
def spelled_v4(draw: st.DrawFn, address: str) -> str:
    octets = [draw(spelled_octet(int(o))) for o in address.split(".")]
    host = octets[0]
    for octet in octets[1:]:
        host += draw(st.sampled_from(DOTS)) + octet
    if draw(st.booleans()):
        host += draw(st.sampled_from(DOTS))  # a trailing dot names the same host
    return host


forbidden_spellings = st.sampled_from(FORBIDDEN_V4).flatmap(
    lambda a: st.tuples(st.just(a), spelled_v4(a))
)


def request(url: str, proxy: str | None = None) -> ledger.JobSubmitted:
    return ledger.JobSubmitted(job_id="j", event_id="e", at=0.0, source="t", url=url, proxy=proxy)


@given(forbidden_spellings)
def test_a_spelled_address_folds_to_that_address(case: tuple[str, str]) -> None:
    address, host = case
    assert parse_proxy(f"http://{host}:3128").host == address
    assert validate_url(f"http://{host}/x") == f"http://{address}/x"


@given(forbidden_spellings)
def test_every_spelling_of_a_forbidden_target_is_rejected(case: tuple[str, str]) -> None:
    with pytest.raises(Rejection) as info:
        check_request(request(f"http://{case[1]}:8080/x"), allow_private=False)
    assert info.value.code == "blocked_address"


@given(forbidden_spellings)
def test_every_spelling_of_a_forbidden_proxy_is_rejected(case: tuple[str, str]) -> None:
    with pytest.raises(Rejection) as info:
        check_request(request("http://8.8.8.8/x", proxy=f"http://{case[1]}:3128"), allow_private=False)
    assert info.value.code == "blocked_address"
    assert case[0] in info.value.message


@pytest.mark.parametrize("host", ODD_FORMS + V6_FORMS)
def test_odd_and_ipv6_forms_are_refused_as_target_and_as_proxy(host: str) -> None:
    for job in (request(f"http://{host}/x"), request("http://8.8.8.8/x", proxy=f"http://{host}:3128")):
        with pytest.raises(Rejection) as info:
            check_request(job, allow_private=False)
        assert info.value.code in ("blocked_address", "invalid_url", "invalid_options")


@pytest.mark.parametrize("host", ["127\u3002\u24ea\u3002\u24ea\u3002\u2460", "\u2460\u2461\u2466.0.0.1"])
def test_a_delimiter_made_by_folding_is_refused(host: str) -> None:
    for trick in (f"{host}\uff0fx", f"evil.com\uff20{host}", f"{host}\uff1a80"):
        with pytest.raises(Rejection):
            validate_url(f"http://{trick}/")
        with pytest.raises(Rejection):
            parse_proxy(f"http://{trick}")


def test_the_operators_own_proxy_is_trusted_in_any_spelling() -> None:
    trusted = frozenset({str(parse_proxy("http://10.0.0.5:3128"))})
    job = request("http://8.8.8.8/x", proxy="http://10\u30020\u30020\u30025:3128")
    assert check_request(job, allow_private=False, trusted_proxies=trusted) == "http://8.8.8.8/x"


def test_a_public_spelled_proxy_passes() -> None:
    job = request("http://example.com/x", proxy="http://\uff18.\uff18.\uff18.\uff18:3128")
    assert check_request(job, allow_private=False) == "http://example.com/x"
    assert ipaddress.ip_address(parse_proxy(job.proxy).host) == ipaddress.ip_address("8.8.8.8")


# --- the fetcher: no connection reaches a loopback server -----------------------------------


class ConnectionLog:
    """A TCP server on loopback that only counts who connected (it answers nothing)."""

    def __init__(self) -> None:
        self.connections = 0
        self.port = 0
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> ConnectionLog:
        self._server = await asyncio.start_server(self._seen, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _seen(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


LOOPBACK_SPELLINGS = [
    "127\u30020\u30020\u30021",  # ideographic full stops (reproduced)
    "\u2460\u2461\u2466.0.0.1",  # enclosed digits (reproduced)
    "\uff11\uff12\uff17.\uff10.\uff10.\uff11",  # fullwidth digits (reproduced)
    "127\uff0e0\uff610.1",
    "127.0.0.1.",
    "\u2460\u2461\u2466\u3002\u24ea\u3002\u24ea\u3002\u2460\u3002",
    "127.\u2460\u2461.\u2462.\u2463",
]


@settings(max_examples=25, deadline=None)
@given(st.lists(spelled_v4("127.0.0.1"), min_size=4, max_size=4, unique=True))
def test_generated_loopback_spellings_never_connect(spellings: list[str]) -> None:
    assert asyncio.run(_connections_made(spellings)) == 0


def test_the_reported_spellings_never_connect() -> None:
    assert asyncio.run(_connections_made(LOOPBACK_SPELLINGS)) == 0


async def _connections_made(spellings: list[str]) -> int:
    """Fetch through each spelling as a job's proxy and as the target; every fetch must fail
    with ``blocked_address`` and the loopback server must see nothing."""
    async with ConnectionLog() as server, Fetcher(allow_private=False, timeout_s=5) as fetcher:
        for host in spellings:
            for req in (
                FetchRequest("http://8.8.8.8/x", proxy=f"http://{host}:{server.port}"),
                FetchRequest(f"http://{host}:{server.port}/x"),
            ):
                result = await fetcher.fetch(req)
                assert isinstance(result, FetchError), (host, result)
                assert (result.code, result.retryable) == ("blocked_address", False), (host, result)
        return server.connections
