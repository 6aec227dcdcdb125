"""Which addresses a webhook delivery may connect to, checked at connect time.

A webhook URL is a request we make from inside the deployment's network on a
user's behalf, so it must never reach loopback, private, link-local, shared
(CGNAT), multicast, reserved or unspecified addresses, in IPv4 or IPv6,
including IPv4 carried inside IPv6 (mapped, NAT64, 6to4). The syntax half
(https, a host name rather than an IP literal) is e2a.core.webhooks.urls.

A name can resolve to a public address when it is registered and to
10.0.0.1 when we call it (DNS rebinding), so ``Guard.connect`` resolves the
name itself, refuses unless every address is allowed, and connects to those
very addresses: no second lookup happens between the check and the connect.

``allow_loopback`` (config ``webhooks.allow_loopback``; sandbox and tests
only) also admits loopback addresses and the ``localhost`` names.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Sequence

import dns.exception

from e2a.core.net import resolver as our_dns

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str], list[str]]

_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_LOCAL_NAT64 = ipaddress.IPv6Network("64:ff9b:1::/48")  # translates to anything local
_SHARED = ipaddress.IPv4Network("100.64.0.0/10")
_LOOPBACK_NAME_ADDRESSES = ("127.0.0.1", "::1")


class AddressRefused(OSError):
    """We will not connect there; str() says why (safe to show the user)."""


def embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address reaches, if it stands for one
    (mapped, well-known NAT64, 6to4)."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFF_FFFF)
    return ip.sixtofour


def is_public(ip: IPAddress) -> bool:
    if isinstance(ip, ipaddress.IPv6Address):
        inner = embedded_ipv4(ip)
        if inner is not None:
            # Where the packets end up decides (Python versions disagree on
            # whether these prefixes themselves count as global).
            return is_public(inner)
        if ip in _LOCAL_NAT64 or ip.teredo is not None:
            return False
    if (ip.is_loopback or ip.is_private or ip.is_link_local or ip.is_multicast
            or ip.is_reserved or ip.is_unspecified):
        return False
    if isinstance(ip, ipaddress.IPv4Address) and ip in _SHARED:
        return False
    return ip.is_global


def is_allowed(ip: IPAddress, *, allow_loopback: bool = False) -> bool:
    if allow_loopback and ip.is_loopback:
        return True
    return is_public(ip)


def _literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


class Guard:
    def __init__(self, *, allow_loopback: bool = False,
                 resolve: Resolver = our_dns.addresses) -> None:
        self.allow_loopback = allow_loopback
        self._resolve = resolve

    def addresses(self, host: str) -> list[IPAddress]:
        """Where ``host`` may be reached, every one checked; AddressRefused otherwise."""
        host = host.rstrip(".").lower()
        literal = _literal(host)
        if literal is not None:
            found = [literal]
        elif self.allow_loopback and (host == "localhost" or host.endswith(".localhost")):
            found = [ipaddress.ip_address(a) for a in _LOOPBACK_NAME_ADDRESSES]
        else:
            try:
                names = self._resolve(host)
            except (dns.exception.DNSException, UnicodeError) as exc:
                raise AddressRefused(f"cannot resolve {host}: {type(exc).__name__}") from None
            found = [ipaddress.ip_address(a) for a in names]
        if not found:
            raise AddressRefused(f"{host} has no address")
        for ip in found:
            if not is_allowed(ip, allow_loopback=self.allow_loopback):
                raise AddressRefused(f"{host} resolves to {ip}, which is not a public address")
        return found

    def connect(self, host: str, port: int, timeout: float | None,
                options: Sequence[tuple[int, int, int]] = ()) -> socket.socket:
        """A socket connected to one of ``host``'s checked addresses."""
        last: OSError | None = None
        for ip in self.addresses(host):
            family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_STREAM)
            try:
                for option in options:
                    sock.setsockopt(*option)
                sock.settimeout(timeout)
                sock.connect((str(ip), port))
            except OSError as exc:
                sock.close()
                last = exc
                continue
            return sock
        assert last is not None
        raise last
