"""SPF, DKIM and DMARC on the golden messages, against the test zones served by
a real DNS server: each message and envelope in, the exact
Authentication-Results and Domain-Check out."""

from __future__ import annotations

import collections

import pytest
from mailworld import CASES, SENDER_NET_IP, Case, eml, zones_served

from e2a.core import mailauth
from e2a.core.mail import headers
from e2a.core.net import resolver as core_dns

AUTHSERV_ID = "mx.test.example"


@pytest.fixture(scope="module", autouse=True)
def zones(tmp_path_factory):
    with zones_served(tmp_path_factory.mktemp("zones")) as server:
        yield server


def authenticate(case: Case) -> mailauth.Verdict:
    raw = eml(case.fixture)
    who = mailauth.Identity(case.client_ip, case.helo, case.mail_from,
                            headers.author_domains(headers.parse(raw)))
    return mailauth.authenticate(raw, who, AUTHSERV_ID)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_golden_verdict(case: Case) -> None:
    verdict = authenticate(case)
    # One header, folded after each result: "id;\r\n\tspf=...;\r\n\tdkim=..."
    assert verdict.header == f"{AUTHSERV_ID};\r\n\t" + case.results.replace("; ", ";\r\n\t")
    assert verdict.domain_check == case.domain_check
    assert verdict.aligned is case.verified


def test_each_name_is_looked_up_once_per_message(monkeypatch) -> None:
    asked: collections.Counter[str] = collections.Counter()
    real_txt = core_dns.txt

    def counting_txt(name: str) -> list[str]:
        asked[name] += 1
        return real_txt(name)

    monkeypatch.setattr(core_dns, "txt", counting_txt)
    raw = eml("dkim_pass")
    # The same signature twice: one key lookup serves both.
    doubled = raw.split(b"\r\nFrom:", 1)[0] + b"\r\n" + raw
    who = mailauth.Identity(SENDER_NET_IP, "client.example", "alice@good.example",
                            ("good.example",))
    verdict = mailauth.authenticate(doubled, who, AUTHSERV_ID)
    assert verdict.header.count("dkim=pass") == 2
    assert asked == {"sel1._domainkey.good.example": 1, "_dmarc.good.example": 1}


def test_property_values_that_are_not_tokens_are_quoted() -> None:
    who = mailauth.Identity(SENDER_NET_IP, 'we"ird helo\r\n', "", ())
    verdict = mailauth.authenticate(b"From: nobody\r\n\r\n", who, AUTHSERV_ID)
    assert 'smtp.helo="we\\"ird helo??"' in verdict.header
    assert verdict.domain_check == "spf=none; dkim=none; dmarc=none"
    assert not verdict.aligned
