"""Outbound screening: what an agent's protection settings say about one
message it sends, before it leaves.

One function, ``screen``, for every path: the API calls it as it records a
send, the content filter (through core/outbound/identify.py) for mail an
agent submitted by plain SMTP or sendmail. Its answer feeds the one hold
decision (core/outbound/decision.decide); a message the API screened is not
screened again by the filter: the API's row already carries the outcome.

In order: the recipient gate (block refuses, review holds, flag only notes),
the data-loss scan of the decoded parts and text attachments
(core/protection/outbound.py; review and block both hold), then
first-contact review (a recipient the agent never exchanged mail with).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg

from e2a.core.mail import headers
from e2a.core.protection import config as protection
from e2a.core.protection import gates, outbound, parts
from e2a.core.protection.findings import protection_entry as findings_entry
from e2a.core.runtime import metrics
from e2a.core.store import events as event_store
from e2a.core.store import protection as protection_store
from e2a.core.webhooks import eventtypes

PASS, HOLD, BLOCK = "pass", "hold", "block"
FIRST_CONTACT = "first_contact"
BRAKE = "brake"
# The hold reason of a message held because its agent holds every message.
SEND_HOLD = {"type": "send", "code": "outbound_send",
             "summary": "the agent's outbound mail is held for human review"}


@dataclass(frozen=True)
class Screened:
    action: str = PASS  # pass | hold | block
    hold_reason: dict[str, Any] | None = None
    protection: list[dict[str, Any]] = field(default_factory=list)  # MessageView protection[]
    reason: str = ""  # a block's, for the SMTP reply and email.blocked
    source: str = ""  # recipient_gate | outbound_scan | first_contact

    @property
    def held(self) -> bool:
        return self.action == HOLD

    @property
    def blocked(self) -> bool:
        return self.action == BLOCK


CLEAR = Screened()
# Which recipients the agent has exchanged mail with (lowercase addresses).
Known = Callable[[Sequence[str]], set[str]]


def screen(agent: Mapping[str, Any], recipients: Sequence[str], raw: bytes,
           known: Known | None = None) -> Screened:
    """The agent's settings applied to the message ``raw`` for ``recipients``
    (envelope recipients, Bcc included). ``known``: looked up only when
    first-contact review is on."""
    config = protection.of_agent(agent)
    if not config.outbound_screened:
        return CLEAR
    notes: list[dict[str, Any]] = []
    with metrics.timed("outbound_screening"):
        outcome = _screen(config, agent, recipients, raw, known, notes)
    metrics.protection_decisions.labels(direction="outbound", action=outcome.action,
                                        source=outcome.source or "none").inc()
    return outcome


def _screen(config: protection.Protection, agent: Mapping[str, Any],
            recipients: Sequence[str], raw: bytes, known: Known | None,
            notes: list[dict[str, Any]]) -> Screened:
    gate = config.outbound.gate
    if not config.hold_all and gate.policy != "open":
        decided = gates.outbound_gate(gate, recipients, agent["domain"])
        entry = decided.protection_entry()
        if entry is not None:
            notes.append(entry)
        if decided.action == "block":
            return Screened(BLOCK, None, notes, decided.summary, decided.code)
        if decided.action == "review":
            return Screened(HOLD, decided.hold_reason(), notes, "", decided.code)
    if config.outbound.sensitivity != "off":
        reason, findings = outbound.outbound_hold(parts.parse(raw),
                                                  config.outbound.sensitivity)
        if reason is not None:
            entry = findings_entry(findings, "review")
            if entry is not None:
                notes.append(entry)
            return Screened(HOLD, reason, notes, "", reason["code"])
    if config.first_contact.enabled and known is not None and recipients:
        wanted = [r.lower() for r in recipients]
        new = [r for r in wanted if r not in known(wanted)]
        if new:
            shown = ", ".join(new[:3]) + (f" and {len(new) - 3} more" if len(new) > 3 else "")
            reason = {"type": "gate", "code": FIRST_CONTACT,
                      "summary": f"first mail to {shown}: the agent never exchanged mail "
                                 "with them"}
            return Screened(HOLD, reason, notes, "", FIRST_CONTACT)
    return Screened(PASS, None, notes)


def known_recipients(conn: psycopg.Connection, agent: Mapping[str, Any]) -> Known:
    days = protection.of_agent(agent).first_contact.trust_days
    return lambda addresses: protection_store.known_addresses(conn, agent["id"], addresses,
                                                              days)


def on_approved(conn: psycopg.Connection, row: Mapping[str, Any]) -> None:
    """A person approved a held message (core/outbound/approval.py): one
    held for first contact makes its recipients known to the agent, for the
    agent's trust_days or for good."""
    if (row.get("hold_reason") or {}).get("code") != FIRST_CONTACT:
        return
    days = protection.of_agent({"protection": row.get("agent_protection") or {}}
                               ).first_contact.trust_days
    recipients = [*(row.get("to_recipients") or []), *(row.get("cc") or []),
                  *(row.get("bcc") or [])]
    protection_store.trust(conn, row["agent_id"], [r.lower() for r in recipients], days)


def hold_reason(screened: Screened | None) -> dict[str, Any]:
    """The hold_reason a held message carries: the screening's, or the
    agent's hold-everything one."""
    if screened is not None and screened.hold_reason is not None:
        return screened.hold_reason
    return SEND_HOLD


def brake_held(reason: str, screened: Screened | None, brake: str = "") -> Screened | None:
    """What a hold records when a loop/abuse brake (``brake``, its
    ``reason``; empty for none) held the message that screening let
    through: a ``send`` hold naming the brake as its category, so that the
    reviewer sees why (the /v1 review's hold_reason)."""
    if not reason or (screened is not None and screened.held):
        return screened
    return Screened(HOLD, {**SEND_HOLD, "summary": reason, "category": brake or BRAKE},
                    list(screened.protection) if screened is not None else [], "", BRAKE)


def blocked_id(agent_id: str, raw: bytes, recipients: Sequence[str]) -> str:
    """``msgblk_…``: the same for every retry of one refused message, so its
    email.blocked event is written once."""
    digest = hashlib.sha256("\0".join([agent_id, *recipients]).encode("utf-8", "replace")
                            + b"\0" + headers.content_digest(raw)).hexdigest()
    return "msgblk_" + digest[:32]


def record_block(conn: psycopg.Connection, agent: Mapping[str, Any], raw: bytes,
                 recipients: Sequence[str], screened: Screened) -> str:
    """The outbound email.blocked event of a refused message (nothing else
    is stored of it); its msgblk_ id."""
    msg = headers.parse(raw)
    block_id = blocked_id(agent["id"], raw, recipients)
    to = headers.header_addresses(msg, "To")
    cc = headers.header_addresses(msg, "Cc")
    listed = {a.lower() for a in to + cc}
    event_store.insert_event_once(
        conn, "evt_" + hashlib.sha256(f"{block_id}|email.blocked".encode()).hexdigest()[:32],
        agent["user_id"], eventtypes.EMAIL_BLOCKED,
        {"message_id": block_id, "agent_id": agent["id"], "direction": "outbound",
         "to": to, "cc": cc, "bcc": [r for r in recipients if r.lower() not in listed],
         "subject": headers.header_value(msg, "Subject"), "reason": screened.reason,
         "reason_source": screened.source},
        agent_id=agent["id"])
    return block_id
