"""Inbound protection screening: an agent's sender gate and content scan
applied to one received message, at end of data in the milter.

The gate is judged on what DMARC verified (the From domain of an aligned
pass, never an unauthenticated From: core/protection/gates.py); the scan
(core/protection/inbound.py, bounded in size and time) at the agent's
inbound sensitivity. The strongest of the two wins:

- ``flag``: stored and delivered as usual, labelled ``flagged``, with
  flagged/flag_reason and an ``email.flagged`` event;
- ``review``: stored held (pending_approval, hold_reason, an expiry): no
  email.received event, so neither WebSocket, webhook nor listing sees it
  until a person approves it (core/inbound/holds.py);
- ``block``: not stored; refused with 550 5.7.1 when no other recipient
  wants it, else taken away from Postfix for that agent alone, with an
  ``email.blocked`` event either way.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

import psycopg

from e2a.core.mail import headers
from e2a.core.mailauth.verdict import Verdict
from e2a.core.protection import config as protection
from e2a.core.protection import gates, inbound, parts
from e2a.core.protection.findings import hold_reason as findings_hold_reason
from e2a.core.protection.findings import protection_entry
from e2a.core.runtime import metrics
from e2a.core.store import events as event_store
from e2a.core.webhooks import eventtypes

ORDER = ("none", "flag", "review", "block")
FLAG_LABEL = "flagged"
# What an SMTP client hears for mail an agent's protection refuses.
REFUSAL = "Message refused by the recipient's protection settings"


@dataclass(frozen=True)
class Outcome:
    action: str = "none"  # none | flag | review | block
    protection: list[dict[str, Any]] = field(default_factory=list)  # MessageView protection[]
    hold_reason: dict[str, Any] | None = None  # review
    reason: str = ""  # one line: flag_reason, the block's reason
    source: str = ""  # sender_gate | inbound_scan: what decided

    @property
    def held(self) -> bool:
        return self.action == "review"

    @property
    def blocked(self) -> bool:
        return self.action == "block"


CLEAR = Outcome()


def verified_domain(verdict: Verdict, msg: EmailMessage) -> str | None:
    """The From domain of an aligned DMARC pass, None otherwise."""
    if not (verdict.aligned and verdict.dmarc == "pass"):
        return None
    sender = headers.from_address(msg)
    return sender.rpartition("@")[2].lower() or None if sender else None


class Screener:
    """Screens one message for each of its agent recipients; the message is
    parsed and scanned at most once, at the highest sensitivity asked."""

    def __init__(self, raw: bytes, msg: EmailMessage, verdict: Verdict) -> None:
        self._raw = raw
        self._msg = msg
        self._verified = verified_domain(verdict, msg)
        self._scans: dict[str, tuple[str, list[Any]]] = {}

    def _scan(self, sensitivity: str) -> tuple[str, list[Any]]:
        if sensitivity not in self._scans:
            with metrics.timed("inbound_screening"):
                self._scans[sensitivity] = inbound.screen(parts.parse(self._raw), sensitivity)
        return self._scans[sensitivity]

    def screen(self, agent: Mapping[str, Any]) -> Outcome:
        config = protection.of_agent(agent).inbound
        if not config.enabled:
            return CLEAR
        outcome = self._screen(config, agent)
        metrics.protection_decisions.labels(direction="inbound", action=outcome.action,
                                            source=outcome.source or "none").inc()
        return outcome

    def _screen(self, config: protection.Direction, agent: Mapping[str, Any]) -> Outcome:
        notes: list[dict[str, Any]] = []
        candidates: list[tuple[str, dict[str, Any] | None, str, str]] = []
        if config.gate.policy != "open":
            decided = gates.inbound_gate(config.gate, self._verified,
                                         headers.from_address(self._msg), agent["domain"])
            if not decided.passed:
                entry = decided.protection_entry()
                if entry is not None:
                    notes.append(entry)
                candidates.append((decided.action, decided.hold_reason(), decided.summary,
                                   decided.code))
        if config.sensitivity != "off":
            action, findings = self._scan(config.sensitivity)
            if action != "none":
                entry = protection_entry(findings, action)  # type: ignore[arg-type]
                if entry is not None:
                    notes.append(entry)
                candidates.append((action, findings_hold_reason(findings, "inbound_scan")
                                   if action == "review" else None,
                                   entry["summary"] if entry else "", "inbound_scan"))
        if not candidates:
            return CLEAR
        action, reason, summary, source = max(candidates, key=lambda c: ORDER.index(c[0]))
        return Outcome(action, notes, reason, summary, source)


def record_block(conn: psycopg.Connection, agent: Mapping[str, Any], raw: bytes,
                 msg: EmailMessage, envelope: Any, outcome: Outcome) -> None:
    """The inbound email.blocked event of mail refused for ``agent`` (nothing
    else of it is stored); once per message and agent, however often the
    client retries."""
    digest = hashlib.sha256("\0".join([agent["id"], envelope.mail_from]).encode(
        "utf-8", "replace") + b"\0" + headers.content_digest(raw)).hexdigest()
    block_id = "msgblk_" + digest[:32]
    event_store.insert_event_once(
        conn, "evt_" + hashlib.sha256(f"{block_id}|email.blocked".encode()).hexdigest()[:32],
        agent["user_id"], eventtypes.EMAIL_BLOCKED,
        {"message_id": block_id, "agent_id": agent["id"], "direction": "inbound",
         "recipient": agent["email"], "delivered_to": agent["email"],
         "header_from": headers.from_address(msg), "from": headers.from_address(msg),
         "envelope_from": headers.text(envelope.mail_from),
         "subject": headers.header_value(msg, "Subject"), "reason": outcome.reason,
         "reason_source": outcome.source},
        agent_id=agent["id"])
