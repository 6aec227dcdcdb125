"""The client's address as far as it can be known: the connection's peer,
or, when that peer is one of ``http.trusted_proxies``, what the proxies
wrote in X-Forwarded-For.

Each proxy appends the address it was connected from, so the header reads
left to right from the client (or whatever the client claimed) to the last
proxy. Walking it from the right, past our own proxies, the first address
that is not one of them is the one a trusted proxy saw: the client. Anything
further left was written by the client and proves nothing. From a peer that
is not a trusted proxy the header is ignored: anyone can send it.
"""

from __future__ import annotations

import ipaddress

import falcon

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def _address(text: str) -> Address | None:
    try:
        found = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    # ::ffff:192.0.2.1 is the IPv4 client of a dual-stack socket.
    if isinstance(found, ipaddress.IPv6Address) and found.ipv4_mapped is not None:
        return found.ipv4_mapped
    return found


class ClientAddress:
    def __init__(self, trusted_proxies: list[str]) -> None:
        self._proxies: tuple[Network, ...] = tuple(
            ipaddress.ip_network(item, strict=False) for item in trusted_proxies)

    def _trusted(self, address: Address | None) -> bool:
        return address is not None and any(address in net for net in self._proxies)

    def of(self, req: falcon.Request) -> str:
        peer_text = req.remote_addr or "unknown"
        peer = _address(peer_text)
        if not self._trusted(peer):
            return str(peer) if peer is not None else peer_text
        nearest = str(peer)
        for header in reversed(req.get_header("X-Forwarded-For", default="").split(",")):
            hop = _address(header)
            if hop is None:
                # Not an address: nothing a proxy of ours writes, so nothing
                # left of it can be believed either.
                return nearest
            if not self._trusted(hop):
                return str(hop)
            nearest = str(hop)
        return nearest
