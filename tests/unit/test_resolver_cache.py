"""The milter's resolver answers a question asked again from memory until the
answer's TTL ends, and asks again after; the API's resolver never remembers."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import dns.resolver
import pytest
from servicesupport import free_udp_tcp_port

from e2a.core import config
from e2a.core.net import resolver as core_dns
from sandbox.dns import DnsServer

TTL = 300


def served(root: Path, ttl: int) -> DnsServer:
    server = DnsServer(root / f"dns{ttl}", free_udp_tcp_port(), pidfile=root / f"dns{ttl}.pid",
                       logfile=root / f"dns{ttl}.log")
    server.ttl = ttl
    server.add_txt("_dmarc.remembered.example", "v=DMARC1; p=reject")
    return server


@pytest.fixture(scope="module")
def zones(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[int, DnsServer]]:
    root = tmp_path_factory.mktemp("resolver")
    servers = {ttl: served(root, ttl) for ttl in (TTL, 0)}
    previous = dns.resolver.default_resolver
    for server in servers.values():
        server.start()
    try:
        yield servers
    finally:
        dns.resolver.default_resolver = previous
        for server in servers.values():
            server.stop()


def resolver_for(server: DnsServer, tmp_path: Path, *, cache: bool) -> dns.resolver.Resolver:
    settings = tmp_path / "dns.toml"
    settings.write_text(f'[secrets]\nhmac_secret = "{"x" * 32}"\n'
                        f'[dns]\nresolver = "{server.address}"\ntimeout = 1.0\n')
    return core_dns.configure(config.load(settings, env={}), cache=cache)


@pytest.fixture
def asked(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The questions that went to dnspython's resolution (its cache or the server)."""
    questions: list[str] = []
    real = dns.resolver.Resolver.resolve

    def counting(self: dns.resolver.Resolver, qname: object, *args: object,
                 **kwargs: object) -> dns.resolver.Answer:
        questions.append(str(qname))
        return real(self, qname, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(dns.resolver.Resolver, "resolve", counting)
    return questions


def test_an_answer_is_remembered_until_its_ttl_ends(zones, tmp_path, asked,
                                                    monkeypatch) -> None:
    resolver_for(zones[TTL], tmp_path, cache=True)
    name = "_dmarc.remembered.example"
    assert core_dns.txt(name) == ["v=DMARC1; p=reject"]
    assert core_dns.txt(name) == ["v=DMARC1; p=reject"]
    assert asked == [name]
    later = time.time() + TTL + 1
    monkeypatch.setattr(core_dns.time, "time", lambda: later)
    assert core_dns.txt(name) == ["v=DMARC1; p=reject"]
    assert asked == [name, name]


def test_an_answer_without_a_ttl_is_not_remembered(zones, tmp_path, asked) -> None:
    resolver_for(zones[0], tmp_path, cache=True)
    core_dns.txt("_dmarc.remembered.example")
    core_dns.txt("_dmarc.remembered.example")
    assert len(asked) == 2


def test_a_resolver_without_a_cache_remembers_nothing(zones, tmp_path, asked) -> None:
    resolver_for(zones[TTL], tmp_path, cache=False)
    core_dns.txt("_dmarc.remembered.example")
    core_dns.txt("_dmarc.remembered.example")
    assert len(asked) == 2
