"""Which address a request comes from, given the trusted reverse proxies."""

from __future__ import annotations

import pytest
from falcon import testing

from e2a.api.clientaddr import ClientAddress

PROXIES = ClientAddress(["10.0.0.0/8", "2001:db8:1::/48", "192.0.2.10"])


def _of(peer: str, forwarded: str | None = None, proxies: ClientAddress = PROXIES) -> str:
    headers = {"X-Forwarded-For": forwarded} if forwarded is not None else {}
    return proxies.of(testing.create_req(remote_addr=peer, headers=headers))


def test_without_trusted_proxies_the_header_means_nothing():
    assert _of("10.1.1.1", "198.51.100.1", ClientAddress([])) == "10.1.1.1"


@pytest.mark.parametrize("peer,forwarded,client", [
    # From an untrusted peer: ignored, whatever it says.
    ("203.0.113.9", "10.0.0.1", "203.0.113.9"),
    # From a proxy: the rightmost hop that is not one of ours.
    ("10.1.1.1", "198.51.100.1", "198.51.100.1"),
    ("10.1.1.1", "6.6.6.6, 198.51.100.1, 192.0.2.10", "198.51.100.1"),
    ("10.1.1.1", "6.6.6.6,198.51.100.1 , 10.2.2.2", "198.51.100.1"),
    # Only proxies in the chain: the outermost one.
    ("10.1.1.1", "10.9.9.9, 192.0.2.10", "10.9.9.9"),
    # A proxy without the header: the proxy.
    ("10.1.1.1", None, "10.1.1.1"),
    # Something no proxy writes stops the walk at the last known address.
    ("10.1.1.1", "198.51.100.1, unknown", "10.1.1.1"),
    ("10.1.1.1", "junk, 10.3.3.3", "10.3.3.3"),
    # IPv6 proxies and clients; an IPv4 client seen on a dual-stack socket.
    ("2001:db8:1::5", "2001:db8:2::7", "2001:db8:2::7"),
    ("::ffff:10.1.1.1", "::ffff:198.51.100.1", "198.51.100.1"),
])
def test_client_address(peer, forwarded, client):
    assert _of(peer, forwarded) == client
