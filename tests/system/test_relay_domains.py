"""A domain verified through the API at runtime is accepted by the real
Postfix at once: relay_domains asks the policy service's socketmap."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest
from sandbox_harness import RunningSandbox, compose, extra_smtpd, smtp_send, wait_until

from e2a.cli.sandbox.stack import MX_HOST

pytestmark = pytest.mark.system


@pytest.fixture(scope="module")
def outside_port(sandbox: RunningSandbox) -> Iterator[int]:
    """An smtpd that treats its loopback clients as the Internet: the
    sandbox's own smtpd lets 127.0.0.1 relay anywhere (mynetworks), which
    would hide whether relay_domains knows a domain."""
    with extra_smtpd(sandbox, "-o mynetworks=192.0.2.0/24"
                              " -o smtpd_relay_restrictions=reject_unauth_destination") as port:
        yield port


def test_domain_verified_at_runtime_receives_mail(sandbox: RunningSandbox,
                                                  outside_port: int) -> None:
    domain = f"relay-{secrets.token_hex(4)}.test"
    address = f"bot@{domain}"
    created = sandbox.api("POST", "/api/v1/domains", json={"domain": domain})
    assert created.status_code == 201, created.text
    txt = created.json()["dns_records"]["txt"]

    # Not verified yet: Postfix refuses it as a domain that is not ours.
    # (smtpd caches resolved addresses per sender; each send below has its own.)
    early = smtp_send(outside_port, f"early-{secrets.token_hex(3)}@sandbox.test", address,
                      compose("early@sandbox.test", address, "too early", "refused"))
    assert early.stage == "RCPT" and early.code == 554, early
    assert "Relay access denied" in early.text, early

    sandbox.dns.add_mail_domain(domain, MX_HOST)
    sandbox.dns.add_txt(txt["host"], txt["value"])
    sandbox.dns.reload()
    verified = sandbox.api("POST", f"/api/v1/domains/{domain}/verify")
    assert verified.status_code == 200, verified.text
    assert verified.json()["verified"] is True, verified.text
    agent = sandbox.api("POST", "/api/v1/agents", json={"email": address, "agent_mode": "local"})
    assert agent.status_code == 201, agent.text
    assert sandbox.messages(address) == []  # nothing of the refused attempt was kept

    subject = f"relay {secrets.token_hex(4)}"
    sent = smtp_send(outside_port, sandbox.user_email, address,
                     compose(sandbox.user_email, address, subject, "Hello, new domain."))
    assert (sent.stage, sent.code) == ("DATA", 250), sent
    stored = wait_until(lambda: sandbox.messages(address), what="the message stored")
    assert [m["subject"] for m in stored] == [subject]
