"""Sender (inbound) and recipient (outbound) gates, as pure decisions.

The agent's setting is ``{policy: open|allowlist|domain, action:
flag|review|block, allowlist: [...]}``. Allowlist entries are addresses
(``alice@example.com``) or domains (``example.com``, ``@example.com``; a
domain also admits its subdomains when written ``*.example.com``).

Inbound is judged on what DMARC verified and nothing else: the caller passes
the aligned From domain of a DMARC pass (``verified_domain``, None for
none/fail/error) and the From address. An address entry matches only when
that address's domain is the verified one; without a DMARC pass nothing on
the list matches, so an unauthenticated From can never pass a gate.

Outbound is judged per recipient: ``domain`` admits the agent's own domain
(and its subdomains), ``allowlist`` what the list names.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

Policy = Literal["open", "allowlist", "domain"]
GateAction = Literal["flag", "review", "block"]
POLICIES: tuple[str, ...] = ("open", "allowlist", "domain")
GATE_ACTIONS: tuple[str, ...] = ("flag", "review", "block")
MAX_ALLOWLIST = 1000


@dataclass(frozen=True)
class Gate:
    policy: str = "open"
    action: str = "flag"
    allowlist: tuple[str, ...] = ()

    @classmethod
    def from_config(cls, config: dict[str, object] | None) -> Gate:
        config = config or {}
        entries = config.get("allowlist") or ()
        return cls(str(config.get("policy", "open")), str(config.get("action", "flag")),
                   tuple(normalize_allowlist(entries if isinstance(entries, list | tuple)
                                             else ())))


@dataclass(frozen=True)
class GateDecision:
    passed: bool
    action: str  # "none" when passed, else the gate's action
    code: str  # sender_gate | recipient_gate
    summary: str
    refused: tuple[str, ...] = field(default=())  # outbound: the recipients it stops

    def hold_reason(self) -> dict[str, str] | None:
        """``hold_reason{type: gate, code, summary}`` when the gate holds."""
        if self.passed or self.action != "review":
            return None
        return {"type": "gate", "code": self.code, "summary": self.summary}

    def protection_entry(self) -> dict[str, object] | None:
        if self.passed:
            return None
        return {"source": "gate", "action": self.action, "summary": self.summary}


class GateConfigError(ValueError):
    pass


def _domain(value: str) -> str:
    value = value.strip().lower().rstrip(".")
    try:
        return value.encode("idna").decode("ascii") if value else ""
    except UnicodeError:
        return value


def _address(value: str) -> tuple[str, str]:
    local, _, domain = value.strip().rpartition("@")
    return local.lower(), _domain(domain)


def normalize_allowlist(entries: Iterable[object]) -> list[str]:
    """Entries lower-cased, domains in their ASCII form, "@x" as "x",
    duplicates dropped, order kept. Raises GateConfigError on a bad entry or
    more than MAX_ALLOWLIST."""
    out: list[str] = []
    for entry in entries:
        if not isinstance(entry, str) or not entry.strip() or len(entry) > 320:
            raise GateConfigError(f"allowlist entry {entry!r} is not an address or domain")
        value = entry.strip()
        if value.startswith("@"):
            value = value[1:]
        if "@" in value:
            local, domain = _address(value)
            if not local or not domain or "." not in domain:
                raise GateConfigError(f"allowlist entry {entry!r} is not an address")
            normal = f"{local}@{domain}"
        else:
            wildcard = value.startswith("*.")
            domain = _domain(value[2:] if wildcard else value)
            if "." not in domain or any(not label for label in domain.split(".")):
                raise GateConfigError(f"allowlist entry {entry!r} is not a domain")
            normal = ("*." if wildcard else "") + domain
        if normal not in out:
            out.append(normal)
    if len(out) > MAX_ALLOWLIST:
        raise GateConfigError(f"allowlist holds at most {MAX_ALLOWLIST} entries")
    return out


def validate(gate: Gate) -> None:
    if gate.policy not in POLICIES:
        raise GateConfigError(f"gate policy must be one of {', '.join(POLICIES)}")
    if gate.action not in GATE_ACTIONS:
        raise GateConfigError(f"gate action must be one of {', '.join(GATE_ACTIONS)}")


def _domain_listed(domain: str, allowlist: Sequence[str]) -> bool:
    for entry in allowlist:
        if "@" in entry:
            continue
        if entry.startswith("*."):
            base = entry[2:]
            if domain == base or domain.endswith("." + base):
                return True
        elif domain == entry:
            return True
    return False


def _within(domain: str, own: str) -> bool:
    return bool(own) and (domain == own or domain.endswith("." + own))


def inbound_gate(gate: Gate, verified_domain: str | None, header_from: str | None,
                 agent_domain: str) -> GateDecision:
    """Does the sender pass the agent's inbound gate? ``verified_domain``:
    the DMARC-aligned From domain of a pass, else None."""
    validate(gate)
    code = "sender_gate"
    if gate.policy == "open":
        return GateDecision(True, "none", code, "open gate")
    if not verified_domain:
        return GateDecision(False, gate.action, code,
                            "sender not verified by DMARC; the gate admits only verified senders")
    domain = _domain(verified_domain)
    if gate.policy == "domain":
        if _within(domain, _domain(agent_domain)):
            return GateDecision(True, "none", code, f"verified sender on {domain}")
        return GateDecision(False, gate.action, code, f"sender domain {domain} is not the "
                            f"agent's domain")
    local, from_domain = _address(header_from or "")
    if local and from_domain == domain and f"{local}@{domain}" in gate.allowlist:
        return GateDecision(True, "none", code, "verified sender on the allowlist")
    if _domain_listed(domain, gate.allowlist):
        return GateDecision(True, "none", code, f"verified domain {domain} on the allowlist")
    return GateDecision(False, gate.action, code, f"sender from {domain} is not on the allowlist")


def outbound_gate(gate: Gate, recipients: Sequence[str], agent_domain: str) -> GateDecision:
    """Do all recipients pass the agent's outbound gate? ``refused`` lists
    those that do not, in the order given."""
    validate(gate)
    code = "recipient_gate"
    if gate.policy == "open":
        return GateDecision(True, "none", code, "open gate")
    own = _domain(agent_domain)
    refused: list[str] = []
    for recipient in recipients:
        local, domain = _address(recipient)
        if gate.policy == "domain":
            ok = _within(domain, own)
        else:
            ok = f"{local}@{domain}" in gate.allowlist or _domain_listed(domain, gate.allowlist)
        if not ok:
            refused.append(recipient)
    if not refused:
        return GateDecision(True, "none", code, "every recipient passes the gate")
    what = "outside the agent's domain" if gate.policy == "domain" else "not on the allowlist"
    shown = ", ".join(refused[:3]) + (f" and {len(refused) - 3} more" if len(refused) > 3
                                       else "")
    return GateDecision(False, gate.action, code, f"recipient {shown} {what}", tuple(refused))
