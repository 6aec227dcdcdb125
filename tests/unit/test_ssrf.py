"""The SSRF guard of webhook deliveries: which addresses, and the check made
at connect time on the very addresses connected to (DNS rebinding).

The receivers are real servers on loopback; the resolver is a stub so that a
name can resolve to whatever a test needs (public, then private)."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterator

import pytest
from webhooksupport import Receiver, self_signed

from e2a.core.webhooks import post as webhookhttp
from e2a.core.webhooks import ssrf


@pytest.mark.parametrize("address", [
    "127.0.0.1", "127.255.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254",
    "100.64.0.1", "0.0.0.0", "224.0.0.1", "239.255.255.250", "240.0.0.1",
    "255.255.255.255", "192.0.2.1", "198.18.0.1",
    "::1", "::", "fe80::1", "fc00::1", "fd12:3456::1", "ff02::1", "2001:db8::1",
    "::ffff:127.0.0.1", "::ffff:10.0.0.1", "::ffff:169.254.169.254",
    "64:ff9b::a00:1",  # NAT64 of 10.0.0.1
    "2002:7f00:1::1",  # 6to4 of 127.0.0.1
    "64:ff9b:1::a00:1", "2001:0:4136:e378:8000:63bf:3fff:fdd2",  # local NAT64, Teredo
])
def test_private_and_special_addresses_are_refused(address):
    assert not ssrf.is_public(ipaddress.ip_address(address))
    assert not ssrf.is_allowed(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", ["93.184.216.34", "1.1.1.1", "2606:4700:4700::1111",
                                     "::ffff:93.184.216.34", "64:ff9b::5db8:d822"])
def test_public_addresses_are_allowed(address):
    assert ssrf.is_public(ipaddress.ip_address(address))


def test_the_sandbox_switch_admits_loopback_only():
    assert ssrf.is_allowed(ipaddress.ip_address("127.0.0.1"), allow_loopback=True)
    assert ssrf.is_allowed(ipaddress.ip_address("::1"), allow_loopback=True)
    assert not ssrf.is_allowed(ipaddress.ip_address("10.0.0.1"), allow_loopback=True)
    assert not ssrf.is_allowed(ipaddress.ip_address("169.254.169.254"), allow_loopback=True)


def _stub(answers: dict[str, list[list[str]]]) -> tuple[ssrf.Resolver, list[str]]:
    """A resolver answering each name from its list of answers in turn."""
    asked: list[str] = []

    def resolve(name: str) -> list[str]:
        asked.append(name)
        queue = answers[name]
        return queue.pop(0) if len(queue) > 1 else queue[0]

    return resolve, asked


def test_a_name_with_any_private_address_is_refused():
    resolve, _ = _stub({"hooks.example.com": [["93.184.216.34", "10.0.0.7"]],
                        "ok.example.com": [["93.184.216.34"]], "none.example.com": [[]]})
    guard = ssrf.Guard(resolve=resolve)
    with pytest.raises(ssrf.AddressRefused, match=r"10\.0\.0\.7"):
        guard.addresses("hooks.example.com")
    assert guard.addresses("ok.example.com") == [ipaddress.ip_address("93.184.216.34")]
    with pytest.raises(ssrf.AddressRefused, match="no address"):
        guard.addresses("none.example.com")


def test_numeric_host_spellings_are_never_read_as_addresses():
    # getaddrinfo would take 2130706433 for 127.0.0.1; the guard only ever
    # asks DNS for such a name, and DNS has no such name.
    resolve, asked = _stub({"2130706433": [[]], "0x7f000001": [[]]})
    guard = ssrf.Guard(resolve=resolve, allow_loopback=True)
    for host in ("2130706433", "0x7f000001"):
        with pytest.raises(ssrf.AddressRefused):
            guard.addresses(host)
    assert asked == ["2130706433", "0x7f000001"]


@pytest.fixture
def plain() -> Iterator[Receiver]:
    receiver = Receiver().start()
    yield receiver
    receiver.stop()


@pytest.mark.parametrize("url", [
    "http://[::ffff:127.0.0.1]/", "https://[::ffff:127.0.0.1]/", "http://2130706433/",
    "https://2130706433/", "https://0x7f000001/", "https://127.1/", "https://[::1]/",
    "https://169.254.169.254/latest/meta-data/", "http://example.com/", "https://localhost/",
    "ftp://example.com/",
])
def test_hostile_urls_are_refused_before_any_connection(url, plain):
    resolve, asked = _stub({})
    client = webhookhttp.Client(resolve=resolve, timeout=2)
    outcome = client.post(url, b"{}", {})
    assert not outcome.ok and outcome.status_code is None
    assert outcome.error.startswith("refused")
    assert asked == []
    assert plain.requests == []


def test_a_name_that_resolves_to_a_private_address_is_refused(plain):
    resolve, _ = _stub({"hooks.example.com": [["10.0.0.5"]]})
    outcome = webhookhttp.Client(resolve=resolve, timeout=2).post(
        f"https://hooks.example.com:{plain.port}/", b"{}", {})
    assert outcome.error == ("refused: hooks.example.com resolves to 10.0.0.5, which is not "
                             "a public address")


def test_rebinding_public_then_private_is_refused_at_connect(plain):
    # Public when the URL was accepted, loopback (where a receiver listens)
    # when the delivery connects: the check at connect time refuses it.
    resolve, asked = _stub({"rebind.example.com": [["93.184.216.34"], ["127.0.0.1"]]})
    guard = ssrf.Guard(resolve=resolve)
    assert guard.addresses("rebind.example.com")  # the earlier check passed
    client = webhookhttp.Client(resolve=resolve, timeout=2)
    outcome = client.post(f"https://rebind.example.com:{plain.port}/hook", b"{}", {})
    assert outcome.error == ("refused: rebind.example.com resolves to 127.0.0.1, which is "
                             "not a public address")
    assert asked == ["rebind.example.com", "rebind.example.com"]
    assert plain.requests == []


def test_connect_uses_the_checked_address_with_the_name_for_tls_and_host(tmp_path):
    # The name resolves once per connection; TLS verifies the certificate for
    # the name (SNI), Host carries the name, the socket goes to the address.
    name = "hooks.example.test"
    certfile, keyfile = self_signed(tmp_path, name)
    receiver = Receiver(tls=(certfile, keyfile)).start()
    try:
        resolve, asked = _stub({name: [["127.0.0.1"], ["10.9.9.9"]]})
        client = webhookhttp.Client(resolve=resolve, allow_loopback=True, timeout=5,
                                    verify=str(certfile))
        outcome = client.post(receiver.url("/in?x=1", host=name), b'{"a":1}',
                              {"X-Test": "yes"})
        assert outcome.ok, outcome.error
        assert asked == [name]
        got = receiver.requests[0]
        assert got.path == "/in?x=1" and got.body == b'{"a":1}'
        assert got.headers["Host"] == f"{name}:{receiver.port}"
        assert got.headers["X-Test"] == "yes"
        assert got.headers["Content-Type"] == "application/json"
        # Same client, new connection: the second answer (private) is refused.
        outcome = client.post(receiver.url(host=name), b"{}", {})
        assert outcome.error.startswith("refused: hooks.example.test resolves to 10.9.9.9")
        assert len(receiver.requests) == 1
    finally:
        receiver.stop()


def test_a_certificate_for_another_name_fails(tmp_path):
    certfile, keyfile = self_signed(tmp_path, "other.example.test")
    receiver = Receiver(tls=(certfile, keyfile)).start()
    try:
        resolve, _ = _stub({"hooks.example.test": [["127.0.0.1"]]})
        client = webhookhttp.Client(resolve=resolve, allow_loopback=True, timeout=5,
                                    verify=str(certfile))
        outcome = client.post(receiver.url(host="hooks.example.test"), b"{}", {})
        assert outcome.error.startswith("TLS handshake failed")
        assert receiver.requests == []
    finally:
        receiver.stop()


def test_redirects_are_not_followed(plain):
    plain.behaviour.status = 302
    plain.behaviour.headers = {"Location": plain.url("/elsewhere")}
    outcome = webhookhttp.Client(allow_loopback=True, timeout=5).post(plain.url(), b"{}", {})
    assert (outcome.status_code, outcome.error) == (302, "HTTP 302 (redirects are not followed)")
    assert [r.path for r in plain.requests] == ["/hook"]


def test_non_2xx_and_refused_connections_are_failures(plain):
    client = webhookhttp.Client(allow_loopback=True, timeout=5)
    plain.behaviour.status = 503
    assert client.post(plain.url(), b"{}", {}) == webhookhttp.PostOutcome(503, "HTTP 503")
    plain.behaviour.status = 204
    assert client.post(plain.url(), b"{}", {}) == webhookhttp.PostOutcome(204, "")
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    outcome = client.post(f"http://127.0.0.1:{port}/", b"{}", {})
    assert outcome.status_code is None and "refused" in outcome.error.lower()


def test_a_trickling_receiver_is_cut_off_at_the_timeout(plain):
    # One byte every 0.3 s never trips a per-read timeout of 1 s; the
    # attempt's own deadline ends it.
    plain.behaviour.trickle = 0.3
    client = webhookhttp.Client(allow_loopback=True, timeout=1.0)
    outcome = client.post(plain.url(), b"{}", {})
    assert outcome == webhookhttp.PostOutcome(None, "timed out after 1 s")


def test_utf8_header_values_are_sent_as_utf8(plain):
    client = webhookhttp.Client(allow_loopback=True, timeout=5)
    assert client.post(plain.url(), b"{}", {"X-E2A-Auth-Sender": "пользователь@пример.рф"}).ok
    raw = plain.requests[0].headers["X-E2A-Auth-Sender"]
    assert raw.encode("latin-1").decode() == "пользователь@пример.рф"
