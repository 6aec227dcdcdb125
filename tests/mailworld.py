"""The test internet of the mail-authentication tests: SPF, DKIM and DMARC
records served by a real dnsmasq, and the golden messages that go with them.

Every name the golden fixtures (tests/fixtures/mail/*.eml) and their
envelopes mention is published here; nothing outside resolves. The DKIM
public keys are the halves of the test-only keys in tests/fixtures/keys/.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import dns.resolver
from servicesupport import free_udp_tcp_port

from e2a.core import config
from e2a.core.net import resolver as core_dns
from sandbox.dns import DnsServer

FIXTURES = Path(__file__).parent / "fixtures"
MAIL = FIXTURES / "mail"
KEYS = FIXTURES / "keys"

# Client addresses the driver claims to connect from.
SENDER_NET_IP = "192.0.2.10"  # good.example's outbound servers (SPF-listed)
SENDER_NET_IP6 = "2001:db8:25::10"  # ...and one of them over IPv6
STRANGER_IP = "203.0.113.9"  # listed in no SPF record

# dnsmasq forwards this zone to a server that never answers: every lookup
# under it times out, as with a real broken zone.
BROKEN = "broken.example"


def dkim_record(key: str) -> str:
    return "v=DKIM1; k=rsa; p=" + (KEYS / f"{key}.pub").read_text().strip()


SPF_SENDER_NET = "v=spf1 ip4:192.0.2.0/24 ip6:2001:db8:25::/48 -all"

ZONES: dict[str, str] = {
    # A careful sender: SPF, DKIM and DMARC p=reject.
    "good.example": SPF_SENDER_NET,
    "_dmarc.good.example": "v=DMARC1; p=reject; rua=mailto:dmarc@good.example",
    "sel1._domainkey.good.example": dkim_record("dkim1"),
    "mx.good.example": "v=spf1 ip4:192.0.2.10 -all",  # its HELO name
    # SPF only, ending in ~all; no DMARC record.
    "soft.example": "v=spf1 ip4:192.0.2.0/24 ~all",
    # An SPF record that cannot be evaluated.
    "permerror.example": "v=spf1 include:nonexistent.example -all",
    # A mailing service's bounce domain: SPF passes for the sender net.
    "bounce.example": SPF_SENDER_NET,
    # Another organization with its own DKIM key.
    "other.example": "v=spf1 -all",
    "sel2._domainkey.other.example": dkim_record("dkim2"),
    # Relaxed (default) and strict alignment; mail comes from a subdomain.
    "_dmarc.relaxed.example": "v=DMARC1; p=reject",
    "mail.relaxed.example": SPF_SENDER_NET,
    "sel1._domainkey.mail.relaxed.example": dkim_record("dkim1"),
    "_dmarc.strict.example": "v=DMARC1; p=reject; adkim=s; aspf=s",
    "mail.strict.example": SPF_SENDER_NET,
    "sel1._domainkey.mail.strict.example": dkim_record("dkim1"),
    # p=none for the organization, sp=reject for its subdomains.
    "_dmarc.parent.example": "v=DMARC1; p=none; sp=reject",
    "parent.example": "v=spf1 -all",
    "sub.parent.example": "v=spf1 -all",
    # No SPF, DMARC p=none.
    "_dmarc.nospf.example": "v=DMARC1; p=none",
}


@contextmanager
def zones_served(root: Path) -> Iterator[DnsServer]:
    """dnsmasq serving ZONES, with core.dns (and so pyspf, dkimpy and our
    DMARC lookups) pointed at it; the previous resolver comes back after."""
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.1", 0))  # reads nothing, answers nothing
    server = DnsServer(root / "dns", free_udp_tcp_port(), pidfile=root / "dnsmasq.pid",
                       logfile=root / "dnsmasq.log")
    for name, value in ZONES.items():
        server.add_txt(name, value)
    server.add_forward(BROKEN, "127.0.0.1", silent.getsockname()[1])
    previous = dns.resolver.default_resolver
    try:
        server.start()
        # A short timeout keeps the temperror cases quick.
        settings = root / "dns.toml"
        settings.write_text(f'[secrets]\nhmac_secret = "{"x" * 32}"\n'
                            f'[dns]\nresolver = "{server.address}"\ntimeout = 1.0\n')
        core_dns.configure(config.load(settings, env={}))
        yield server
    finally:
        dns.resolver.default_resolver = previous
        server.stop()
        silent.close()


def eml(name: str) -> bytes:
    return (MAIL / f"{name}.eml").read_bytes()


@dataclass(frozen=True)
class Case:
    """A golden message, the envelope it arrives with, and the verdict it earns."""

    fixture: str
    mail_from: str  # "" for the null sender
    client_ip: str
    results: str  # our Authentication-Results after the authserv-id, unfolded
    domain_check: str  # X-E2A-Auth-Domain-Check
    verified: bool  # X-E2A-Auth-Verified: a DMARC-aligned pass
    helo: str = "client.example"

    @property
    def id(self) -> str:
        return self.fixture


CASES = [
    # SPF on MAIL FROM: each result, DKIM absent.
    Case("spf_pass", "alice@good.example", SENDER_NET_IP,
         "spf=pass smtp.mailfrom=alice@good.example; dkim=none; "
         "dmarc=pass (p=reject) header.from=good.example",
         "spf=pass; dkim=none; dmarc=pass", True),
    Case("spf_fail", "alice@good.example", STRANGER_IP,
         "spf=fail smtp.mailfrom=alice@good.example; dkim=none; "
         "dmarc=fail (p=reject) header.from=good.example",
         "spf=fail; dkim=none; dmarc=fail", False),
    Case("spf_softfail", "bob@soft.example", STRANGER_IP,
         "spf=softfail smtp.mailfrom=bob@soft.example; dkim=none; "
         "dmarc=none header.from=soft.example",
         "spf=softfail; dkim=none; dmarc=none", False),
    Case("spf_none", "carol@nospf.example", STRANGER_IP,
         "spf=none smtp.mailfrom=carol@nospf.example; dkim=none; "
         "dmarc=fail (p=none) header.from=nospf.example",
         "spf=none; dkim=none; dmarc=fail", False),
    Case("spf_permerror", "dan@permerror.example", STRANGER_IP,
         "spf=permerror smtp.mailfrom=dan@permerror.example; dkim=none; "
         "dmarc=none header.from=permerror.example",
         "spf=permerror; dkim=none; dmarc=none", False),
    # The bounce domain's zone does not answer; the aligned DKIM pass carries it.
    Case("spf_temperror", "bounces@broken.example", STRANGER_IP,
         "spf=temperror smtp.mailfrom=bounces@broken.example; "
         "dkim=pass header.d=good.example header.s=sel1; "
         "dmarc=pass (p=reject) header.from=good.example",
         "spf=temperror; dkim=pass; dmarc=pass", True),
    # The null sender: SPF checks the HELO name, which DMARC aligns (relaxed).
    Case("spf_helo_null_sender", "", SENDER_NET_IP,
         "spf=pass smtp.helo=mx.good.example; dkim=none; "
         "dmarc=pass (p=reject) header.from=good.example",
         "spf=pass; dkim=none; dmarc=pass", True, helo="mx.good.example"),
    # DKIM: sent from a stranger's address, so only the signature can pass.
    Case("dkim_pass", "alice@good.example", STRANGER_IP,
         "spf=fail smtp.mailfrom=alice@good.example; "
         "dkim=pass header.d=good.example header.s=sel1; "
         "dmarc=pass (p=reject) header.from=good.example",
         "spf=fail; dkim=pass; dmarc=pass", True),
    # c=simple/simple over folded headers: passes only on the exact bytes.
    Case("dkim_simple_folded", "alice@good.example", STRANGER_IP,
         "spf=fail smtp.mailfrom=alice@good.example; "
         "dkim=pass header.d=good.example header.s=sel1; "
         "dmarc=pass (p=reject) header.from=good.example",
         "spf=fail; dkim=pass; dmarc=pass", True),
    Case("dkim_body_tampered", "alice@good.example", STRANGER_IP,
         "spf=fail smtp.mailfrom=alice@good.example; "
         "dkim=fail header.d=good.example header.s=sel1; "
         "dmarc=fail (p=reject) header.from=good.example",
         "spf=fail; dkim=fail; dmarc=fail", False),
    Case("dkim_no_key", "alice@good.example", STRANGER_IP,
         "spf=fail smtp.mailfrom=alice@good.example; "
         "dkim=permerror header.d=good.example header.s=gone; "
         "dmarc=fail (p=reject) header.from=good.example",
         "spf=fail; dkim=permerror; dmarc=fail", False),
    # The signer's zone does not answer; the aligned SPF pass carries it.
    Case("dkim_temperror", "alice@good.example", SENDER_NET_IP,
         "spf=pass smtp.mailfrom=alice@good.example; "
         "dkim=temperror header.d=broken.example header.s=sel1; "
         "dmarc=pass (p=reject) header.from=good.example",
         "spf=pass; dkim=temperror; dmarc=pass", True),
    # Several signatures: each reported, topmost first; one pass suffices.
    Case("dkim_one_good_one_bad", "alice@good.example", STRANGER_IP,
         "spf=fail smtp.mailfrom=alice@good.example; "
         "dkim=fail header.d=other.example header.s=sel2; "
         "dkim=pass header.d=good.example header.s=sel1; "
         "dmarc=pass (p=reject) header.from=good.example",
         "spf=fail; dkim=pass; dmarc=pass", True),
    Case("dkim_two_good", "alice@good.example", STRANGER_IP,
         "spf=fail smtp.mailfrom=alice@good.example; "
         "dkim=pass header.d=other.example header.s=sel2; "
         "dkim=pass header.d=good.example header.s=sel1; "
         "dmarc=pass (p=reject) header.from=good.example",
         "spf=fail; dkim=pass; dmarc=pass", True),
    # DMARC: passes that are not the From domain's do not verify it.
    Case("dmarc_unaligned_spf", "bounces@bounce.example", SENDER_NET_IP,
         "spf=pass smtp.mailfrom=bounces@bounce.example; dkim=none; "
         "dmarc=fail (p=reject) header.from=good.example",
         "spf=pass; dkim=none; dmarc=fail", False),
    Case("dmarc_unaligned_dkim", "ceo@other.example", STRANGER_IP,
         "spf=fail smtp.mailfrom=ceo@other.example; "
         "dkim=pass header.d=other.example header.s=sel2; "
         "dmarc=fail (p=reject) header.from=good.example",
         "spf=fail; dkim=pass; dmarc=fail", False),
    Case("dmarc_relaxed", "bounces@mail.relaxed.example", SENDER_NET_IP,
         "spf=pass smtp.mailfrom=bounces@mail.relaxed.example; "
         "dkim=pass header.d=mail.relaxed.example header.s=sel1; "
         "dmarc=pass (p=reject) header.from=relaxed.example",
         "spf=pass; dkim=pass; dmarc=pass", True),
    Case("dmarc_strict", "bounces@mail.strict.example", SENDER_NET_IP,
         "spf=pass smtp.mailfrom=bounces@mail.strict.example; "
         "dkim=pass header.d=mail.strict.example header.s=sel1; "
         "dmarc=fail (p=reject) header.from=strict.example",
         "spf=pass; dkim=pass; dmarc=fail", False),
    # The organization says p=none, sp=reject: its subdomain gets reject.
    Case("dmarc_subdomain_sp", "alice@sub.parent.example", STRANGER_IP,
         "spf=fail smtp.mailfrom=alice@sub.parent.example; dkim=none; "
         "dmarc=fail (p=reject) header.from=sub.parent.example",
         "spf=fail; dkim=none; dmarc=fail", False),
    Case("dmarc_org_p_none", "alice@parent.example", STRANGER_IP,
         "spf=fail smtp.mailfrom=alice@parent.example; dkim=none; "
         "dmarc=fail (p=none) header.from=parent.example",
         "spf=fail; dkim=none; dmarc=fail", False),
    # Two authors of two domains: no single one to vouch for.
    Case("dmarc_multiple_from", "alice@good.example", STRANGER_IP,
         "spf=fail smtp.mailfrom=alice@good.example; "
         "dkim=pass header.d=good.example header.s=sel1; dmarc=permerror",
         "spf=fail; dkim=pass; dmarc=permerror", False),
    # Over IPv6; the forged headers in it are the milter's business.
    Case("forged_ar", "alice@good.example", SENDER_NET_IP6,
         "spf=pass smtp.mailfrom=alice@good.example; "
         "dkim=pass header.d=good.example header.s=sel1; "
         "dmarc=pass (p=reject) header.from=good.example",
         "spf=pass; dkim=pass; dmarc=pass", True),
]
