"""The SSRF guard: which addresses the scraper may connect to.

A job names a URL; the danger is the *address* that URL ends up at (a cloud metadata service on
169.254.169.254, the broker on 10.0.0.5, an admin port on 127.0.0.1). Checking the name is not
enough - DNS can answer differently at validation and at fetch time (rebinding) - so the fetcher
applies :class:`AddressGuard` where the connection is made: its :class:`GuardedResolver` is the
only resolver the HTTP connection pools use (the operator's proxies' pool resolves through it
without checking), and IP-literal hosts (which skip resolvers) are checked before the request
is sent.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Iterable

from aiohttp.abc import AbstractResolver, ResolveResult

from ._errors import Rejection, ResolutionError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# IPv6 prefixes that carry an IPv4 address a gateway may forward to: NAT64 (RFC 6052, 8215)
_NAT64 = (ipaddress.IPv6Network("64:ff9b::/96"), ipaddress.IPv6Network("64:ff9b:1::/48"))


def _forbidden(ip: IPAddress) -> bool:
    return (
        ip.is_loopback
        or ip.is_private
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
        or not ip.is_global
        or (isinstance(ip, ipaddress.IPv6Address) and ip.is_site_local)
    )


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address a 6to4 or NAT64 address leads to, if any."""
    if ip.sixtofour is not None:
        return ip.sixtofour
    if any(ip in net for net in _NAT64):
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def check_address(ip: IPAddress, *, allow_private: bool, host: str | None = None) -> None:
    """Raise :class:`Rejection` ``blocked_address`` unless ``ip`` is a public unicast address.

    Refused: loopback, private (RFC 1918, ULA), link-local (incl. 169.254.169.254, the cloud
    metadata service), multicast, reserved, unspecified, shared/documentation ranges - anything
    Python's ``ipaddress`` does not call global. An IPv4-mapped address (``::ffff:a.b.c.d``) is
    judged as the IPv4 address it is; 6to4 (``2002:7f00:1::``) and NAT64 (``64:ff9b::a00:1``)
    addresses are refused when the IPv4 address they lead to is.
    ``allow_private=True`` lifts all of it (local development, tests against fixture servers).
    """
    if allow_private:
        return
    shown = str(ip)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
        shown = f"{shown} ({ip})"
    inner = _embedded_ipv4(ip) if isinstance(ip, ipaddress.IPv6Address) else None
    if inner is not None:
        shown = f"{shown} ({inner})"
    if _forbidden(ip) or (inner is not None and _forbidden(inner)):
        where = f"address {shown} is" if host is None else f"host {host!r} resolves to {shown}, which is"
        raise Rejection("blocked_address", f"{where} not a public address{ALLOW_HINT}")


ALLOW_HINT = " (set SCRAPER_ALLOW_PRIVATE=1 to allow loopback and private targets)"
"""Ends every refusal: a user fetching a local page learns the switch that allows it."""

_LOCALHOST = ipaddress.IPv4Address("127.0.0.1")



def _is_localhost(host: str) -> bool:
    name = host.rstrip(".").lower()
    return name == "localhost" or name.endswith(".localhost")


Lookup = Callable[[str, int], Awaitable[list[str]]]
"""Name -> addresses (text), raising ``socket.gaierror`` for a name that does not resolve."""


async def system_lookup(host: str, port: int) -> list[str]:
    """The system resolver (``getaddrinfo`` in a thread), the default :data:`Lookup`."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


class AddressGuard:
    """The guard's policy: ``allow_private``, plus networks an operator exempts on purpose.

    ``lookup`` resolves names for every connection the fetcher makes (guarded or not): the
    system resolver unless injected (tests resolve names they control, never through DNS)."""

    def __init__(
        self, *, allow_private: bool, allow_networks: Iterable[str] = (), lookup: Lookup = system_lookup
    ) -> None:
        self.allow_private = allow_private
        self.allow_networks = tuple(ipaddress.ip_network(n, strict=False) for n in allow_networks)
        self.lookup = lookup

    def check(self, ip: IPAddress, host: str | None = None) -> None:
        """Raise :class:`Rejection` ``blocked_address`` when the policy forbids ``ip``
        (which ``host``, when given, resolved to: it goes into the message)."""
        if self.allow_private:
            return
        if any(ip.version == net.version and ip in net for net in self.allow_networks):
            return
        check_address(ip, allow_private=False, host=host)

    def check_literal(self, host: str) -> bool:
        """Check ``host`` if it is an IP literal or a ``localhost`` name; return whether it was.

        ``localhost`` and ``*.localhost`` are loopback by definition (RFC 6761 6.3; browsers
        and resolvers answer them without DNS), so they are judged as 127.0.0.1 without a
        lookup: the validator then rejects ``http://localhost/`` exactly as it rejects
        ``http://127.0.0.1/``, instead of passing it on to fail later in the scraper."""
        if _is_localhost(host):
            self.check(_LOCALHOST, host)
            return True
        try:
            ip = ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            return False
        self.check(ip)
        return True

    async def resolve(self, host: str, port: int) -> list[str]:
        """Resolve ``host`` and check every address (see :func:`resolve_and_check`)."""
        if not _is_localhost(host) and self.check_literal(host):
            return [str(ipaddress.ip_address(host.strip("[]")))]
        if _is_localhost(host):
            self.check_literal(host)  # refused up front unless allowed; then resolved as usual
        try:
            addresses = await self.lookup(host, port)
        except (socket.gaierror, UnicodeError) as exc:
            raise ResolutionError(host, str(exc)) from None
        if not addresses:
            raise ResolutionError(host, "no addresses")
        for address in addresses:
            self.check(ipaddress.ip_address(address.partition("%")[0]), host)
        return addresses


async def resolve_and_check(host: str, port: int, *, allow_private: bool) -> list[str]:
    """Resolve ``host`` and return its addresses, refusing the host if ANY of them is forbidden.

    Any, not all: a name that answers with one public and one private address is either a
    misconfiguration or a rebinding attempt, and the connection could land on either.

    Raises :class:`Rejection` ``blocked_address`` (permanent) or :class:`ResolutionError`
    (``dns_error``, retryable - deliberately *not* a ``Rejection``: a name that does not resolve
    at validation time may well resolve a minute later, so it must not reject the job for good).
    """
    return await AddressGuard(allow_private=allow_private).resolve(host, port)


class GuardedResolver(AbstractResolver):
    """aiohttp resolver over the guard's :data:`Lookup`; with ``check`` it refuses a host when
    any of its addresses is forbidden.

    This is where the guard sees the address actually connected to: aiohttp connects only to
    what its resolver returns, and caches only what it returned. It raises :class:`Rejection`
    (not an ``OSError``) so the refusal travels through aiohttp unchanged instead of being
    reported as a DNS failure. Without ``check`` (the operator's proxies, or the guard lifted) it
    only resolves, through the same lookup.
    """

    def __init__(self, guard: AddressGuard, *, check: bool = True) -> None:
        self._guard = guard
        self._check = check

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        try:
            addresses = await self._guard.lookup(host, port)
        except socket.gaierror as exc:
            raise OSError(exc.errno, f"cannot resolve {host!r}: {exc.strerror}") from exc
        results: list[ResolveResult] = []
        for address in addresses:
            ip = ipaddress.ip_address(address.partition("%")[0])
            if self._check:
                self._guard.check(ip, host)
            results.append(ResolveResult(
                hostname=host, host=address, port=port,
                family=socket.AF_INET6 if ip.version == 6 else socket.AF_INET,
                proto=0, flags=socket.AI_NUMERICHOST,
            ))
        if not results:
            raise OSError(0, f"cannot resolve {host!r}: no addresses")
        return results

    async def close(self) -> None:
        return None
