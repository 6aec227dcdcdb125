"""The sandbox DNS: record rendering, and a real dnsmasq answering on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import dns.resolver
import pytest
from servicesupport import free_udp_tcp_port

from sandbox import supervisor
from sandbox.dns import DnsServer, Records, split_txt

DKIM_KEY = "v=DKIM1; k=rsa; p=" + "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA" * 9


def test_long_txt_is_split_into_255_byte_strings() -> None:
    chunks = split_txt(DKIM_KEY)
    assert len(DKIM_KEY) > 255
    assert all(len(c) <= 255 for c in chunks)
    assert len(chunks) == -(-len(DKIM_KEY) // 255)
    assert "".join(chunks) == DKIM_KEY
    assert split_txt("v=spf1 -all") == ["v=spf1 -all"]


def test_render() -> None:
    records = Records()
    records.a["mx.sandbox.test"] = ["127.0.0.1"]
    records.mx["sandbox.test"] = [("mx.sandbox.test", 10)]
    records.txt["_dmarc.sandbox.test"] = ["v=DMARC1; p=none"]
    text = records.render()
    assert "local=/#/\n" in text  # nothing outside our records resolves
    assert "host-record=mx.sandbox.test,127.0.0.1\n" in text
    assert "mx-host=sandbox.test,mx.sandbox.test,10\n" in text
    assert 'txt-record=_dmarc.sandbox.test,"v=DMARC1; p=none"\n' in text


def test_values_that_would_break_the_config_are_refused(tmp_path: Path) -> None:
    server = DnsServer(tmp_path, 5353, pidfile=tmp_path / "p", logfile=tmp_path / "l")
    with pytest.raises(ValueError):
        server.add_txt("x.test", 'say "hi"')
    with pytest.raises(ValueError):
        server.add_txt("x.test", "caf\u00e9")
    with pytest.raises(ValueError):
        server.add_mx("bad,name.test", "mx.test")
    with pytest.raises(OSError):
        server.add_a("mx.test", "not-an-ip")
    assert server.records == Records()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[DnsServer]:
    dns_server = DnsServer(tmp_path / "dns", free_udp_tcp_port(), pidfile=tmp_path / "dnsmasq.pid",
                           logfile=tmp_path / "dnsmasq.log")
    try:
        yield dns_server
    finally:
        dns_server.stop()


def _resolver(port: int) -> dns.resolver.Resolver:
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = ["127.0.0.1"]
    resolver.port = port
    resolver.lifetime = 3
    return resolver


def _txt(resolver: dns.resolver.Resolver, name: str) -> list[str]:
    return [b"".join(r.strings).decode() for r in resolver.resolve(name, "TXT")]


def test_dnsmasq_serves_the_records(server: DnsServer) -> None:
    server.add_mail_domain("sandbox.test", "mx.sandbox.test")
    server.add_a("mx.sandbox.test", "127.0.0.1")
    server.add_txt("sel._domainkey.sandbox.test", DKIM_KEY)
    server.start()
    resolver = _resolver(server.port)

    mx = resolver.resolve("sandbox.test", "MX")
    assert [(r.preference, r.exchange.to_text()) for r in mx] == [(10, "mx.sandbox.test.")]
    assert [r.address for r in resolver.resolve("mx.sandbox.test", "A")] == ["127.0.0.1"]
    assert _txt(resolver, "sandbox.test") == ["v=spf1 ip4:127.0.0.0/8 -all"]
    assert _txt(resolver, "_dmarc.sandbox.test") == ["v=DMARC1; p=none"]
    answer = resolver.resolve("sel._domainkey.sandbox.test", "TXT")
    assert len(answer[0].strings) > 1  # published as several strings...
    assert _txt(resolver, "sel._domainkey.sandbox.test") == [DKIM_KEY]  # ...read as one
    # A closed internet: everything else is NXDOMAIN, at once.
    for name in ("nobody.sandbox.test", "example.org"):
        with pytest.raises(dns.resolver.NXDOMAIN):
            resolver.resolve(name, "A")


def test_reload_serves_changed_records(server: DnsServer) -> None:
    server.add_txt("sandbox.test", "v=spf1 -all")
    server.start()
    first = supervisor.read_pid(server.pidfile)
    resolver = _resolver(server.port)
    assert _txt(resolver, "sandbox.test") == ["v=spf1 -all"]

    server.set_txt("sandbox.test", "v=spf1 ip4:127.0.0.1 -all")
    server.add_txt("new.sandbox.test", "hello")
    server.reload()
    assert _txt(resolver, "sandbox.test") == ["v=spf1 ip4:127.0.0.1 -all"]
    assert _txt(resolver, "new.sandbox.test") == ["hello"]
    assert first is not None and not Path(f"/proc/{first}").exists()

    server.stop()
    assert not server.running()
    assert not server.pidfile.exists()
