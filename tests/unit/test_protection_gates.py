"""Sender and recipient gates: inbound judged only on what DMARC verified."""

from __future__ import annotations

import pytest

from e2a.core.protection.gates import (
    MAX_ALLOWLIST,
    Gate,
    GateConfigError,
    inbound_gate,
    normalize_allowlist,
    outbound_gate,
)

AGENT_DOMAIN = "acme.example"


def allow(*entries: str, action: str = "review") -> Gate:
    return Gate("allowlist", action, tuple(normalize_allowlist(entries)))


def test_open_gate_passes_everyone():
    decision = inbound_gate(Gate(), None, "anyone@spoofed.example", AGENT_DOMAIN)
    assert decision.passed and decision.action == "none"
    assert outbound_gate(Gate(), ["x@y.example"], AGENT_DOMAIN).passed


def test_inbound_allowlist_needs_a_dmarc_pass():
    gate = allow("alice@partner.example")
    assert inbound_gate(gate, "partner.example", "Alice@Partner.example", AGENT_DOMAIN).passed
    # The same From without a DMARC pass: the From is not trusted, the gate acts.
    refused = inbound_gate(gate, None, "alice@partner.example", AGENT_DOMAIN)
    assert not refused.passed and refused.action == "review"
    assert refused.code == "sender_gate" and "DMARC" in refused.summary
    assert refused.hold_reason() == {"type": "gate", "code": "sender_gate",
                                     "summary": refused.summary}
    assert refused.protection_entry() == {"source": "gate", "action": "review",
                                          "summary": refused.summary}


def test_inbound_address_entry_matches_only_the_verified_domain():
    gate = allow("alice@partner.example", action="block")
    # DMARC verified evil.example; a From naming alice@partner.example is not her.
    decision = inbound_gate(gate, "evil.example", "alice@partner.example", AGENT_DOMAIN)
    assert not decision.passed and decision.action == "block"
    assert decision.hold_reason() is None  # block is not a hold


def test_inbound_domain_entries_and_wildcards():
    gate = allow("@partner.example", "*.corp.example")
    assert inbound_gate(gate, "partner.example", "bob@partner.example", AGENT_DOMAIN).passed
    assert not inbound_gate(gate, "sub.partner.example", "x@sub.partner.example",
                            AGENT_DOMAIN).passed
    assert inbound_gate(gate, "eu.corp.example", "x@eu.corp.example", AGENT_DOMAIN).passed
    assert inbound_gate(gate, "corp.example", "x@corp.example", AGENT_DOMAIN).passed
    assert not inbound_gate(gate, "notcorp.example", "x@notcorp.example", AGENT_DOMAIN).passed


def test_inbound_domain_policy():
    gate = Gate("domain", "flag")
    assert inbound_gate(gate, "acme.example", "a@acme.example", AGENT_DOMAIN).passed
    assert inbound_gate(gate, "mail.acme.example", "a@mail.acme.example", AGENT_DOMAIN).passed
    decision = inbound_gate(gate, "other.example", "a@other.example", AGENT_DOMAIN)
    assert not decision.passed and decision.action == "flag"
    assert not inbound_gate(gate, None, "a@acme.example", AGENT_DOMAIN).passed


def test_outbound_gates():
    gate = allow("bob@partner.example", "trusted.example")
    decision = outbound_gate(gate, ["Bob@partner.example", "x@trusted.example",
                                    "eve@evil.example"], AGENT_DOMAIN)
    assert not decision.passed and decision.refused == ("eve@evil.example",)
    assert decision.code == "recipient_gate"
    assert decision.hold_reason() == {"type": "gate", "code": "recipient_gate",
                                      "summary": "recipient eve@evil.example not on the "
                                                 "allowlist"}
    own = outbound_gate(Gate("domain", "block"), ["a@acme.example", "b@x.acme.example"],
                        AGENT_DOMAIN)
    assert own.passed
    many = outbound_gate(Gate("domain", "block"), [f"u{i}@out.example" for i in range(5)],
                         AGENT_DOMAIN)
    assert not many.passed and "and 2 more" in many.summary and len(many.refused) == 5


def test_internationalized_domains():
    gate = allow("b\u00fccher.example")
    assert gate.allowlist == ("xn--bcher-kva.example",)
    assert inbound_gate(gate, "xn--bcher-kva.example", "a@b\u00fccher.example",
                        AGENT_DOMAIN).passed


def test_allowlist_validation():
    assert normalize_allowlist(["A@B.example", "a@b.example", "@C.example"]) == [
        "a@b.example", "c.example"]
    for bad in ("", "nodot", "@", "a@", "x..example", 7):
        with pytest.raises(GateConfigError):
            normalize_allowlist([bad])
    with pytest.raises(GateConfigError, match="at most"):
        normalize_allowlist([f"d{i}.example" for i in range(MAX_ALLOWLIST + 1)])
    with pytest.raises(GateConfigError, match="policy"):
        inbound_gate(Gate("closed"), None, None, AGENT_DOMAIN)
    with pytest.raises(GateConfigError, match="action"):
        outbound_gate(Gate("domain", "drop"), [], AGENT_DOMAIN)


def test_from_config():
    gate = Gate.from_config({"policy": "allowlist", "action": "block",
                             "allowlist": ["@Partner.example"]})
    assert gate == Gate("allowlist", "block", ("partner.example",))
    assert Gate.from_config(None) == Gate()
