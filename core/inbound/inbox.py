"""Inbound mail for agents: from the bytes the milter rebuilt to stored rows.

One transaction per message: a row per agent recipient, an outbox event per
row and a NOTIFY; the SMTP client hears 250 only after it commits.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any

from psycopg_pool import ConnectionPool

from e2a.core.ids import new_id
from e2a.core.inbound import attest
from e2a.core.inbound.screening import CLEAR, FLAG_LABEL, Outcome
from e2a.core.mail import headers
from e2a.core.mailauth.verdict import Verdict
from e2a.core.messages import lifecycle
from e2a.core.outbound import brakes
from e2a.core.protection import config as protection
from e2a.core.store import agents as agent_store
from e2a.core.store import events as event_store
from e2a.core.store import messages as message_store
from e2a.core.timefmt import rfc3339
from e2a.core.webhooks import eventtypes

log = logging.getLogger("e2a.inbound")







@dataclass(frozen=True)
class Envelope:
    mail_from: str  # "" for the null sender
    recipients: list[str]  # addr-specs, in RCPT order
    client_addr: str = ""
    client_name: str = ""
    helo: str = ""
    queue_id: str = ""
    own_path: bool = False  # came through our reinjection service
    # On our own path: the outbound row (core/store/outbound shape) of the
    # agent that sent it, when its VERP return path names one and its From
    # is that agent (outbound.reinjected_sender); None otherwise.
    sent_by: dict[str, Any] | None = None


@dataclass
class Stored:
    agent_recipients: list[str] = field(default_factory=list)  # consumed by us
    message_ids: list[str] = field(default_factory=list)  # newly stored rows




















def dedupe_key(content: bytes, envelope: Envelope, recipient: str) -> bytes:
    """``content``: headers.content_digest(raw), computed once for all recipients."""
    envelope_part = f"{envelope.mail_from}\0{recipient}\0".encode("utf-8", "surrogateescape")
    return hashlib.sha256(envelope_part + content).digest()








def conversation(agent: dict[str, Any], sent_by: dict[str, Any] | None) -> str | None:
    """The conversation a received message belongs to for ``agent``: the
    sender's own when an agent of the same owner sent it through our path
    (``sent_by``), else the one of the agent's message it replies to (None:
    a new thread). Never a header's claim, and never across owners: a
    conversation id names one owner's thread."""
    if sent_by is not None and sent_by["user_id"] == agent["user_id"] \
            and sent_by["conversation_id"]:
        return str(sent_by["conversation_id"])
    return agent["thread_conversation_id"]


def _screening_columns(agent: dict[str, Any], outcome: Outcome,
                       labels: list[str]) -> dict[str, Any]:
    """``labels``: those the message has whatever the screening says (the
    brakes' auto-generated one)."""
    if outcome.action == "none":
        return {"labels": labels}
    columns: dict[str, Any] = {"protection": outcome.protection or None, "labels": labels}
    if outcome.action == "flag":
        columns.update(labels=[*labels, FLAG_LABEL], flagged=True, flag_reason=outcome.reason)
    if outcome.held:
        columns.update(status="pending_approval", hold_reason=outcome.hold_reason,
                       hold_ttl=protection.of_agent(agent).ttl_seconds)
    return columns


def store(pool: ConnectionPool, raw: bytes, envelope: Envelope, verdict: Verdict,
          deployment_secret: str, *, agents: list[dict[str, Any]] | None = None,
          msg: EmailMessage | None = None,
          outcomes: dict[str, Outcome] | None = None) -> Stored:
    """Store the message for every agent among the recipients, all or nothing.

    ``raw`` is the message as it will be delivered (our Authentication-Results
    first); ``msg`` its headers when the caller parsed them already. ``agents``:
    the recipients' agents when the caller looked them up already, with
    agents_by_emails(..., headers.thread_refs(msg)) (an agent deleted since then fails
    its insert, and the client retries).
    ``outcomes``: protection screening per agent address
    (core/inbound/screening.py): flagged, or held for review (stored
    without its email.received event, so nobody is told of it yet).
    Raises on any database error: the caller answers 4xx.
    """
    outcomes = outcomes or {}
    result = Stored()
    msg = msg if msg is not None else headers.parse(raw)
    sender = headers.from_address(msg)
    subject = headers.header_value(msg, "Subject")
    email_message_id = (headers.message_ids(headers.header_value(msg, "Message-ID")) or [""])[0]
    in_reply_to = (headers.message_ids(headers.header_value(msg, "In-Reply-To")) or [""])[0]
    references = headers.message_ids(headers.header_value(msg, "References"))
    to, cc, reply_to = (headers.header_addresses(msg, name) for name in ("To", "Cc", "Reply-To"))
    now = datetime.now(UTC).replace(microsecond=0)
    # Both hash the whole message: once for all recipients, not once each.
    body_hash = attest.body_hash(raw)
    content = headers.content_digest(raw)
    # Auto-generated mail (vacation notices, lists, reports) is labelled so
    # agents can skip it, and an agent's answer to it meets its brake.
    labels = brakes.inbound_labels(msg, envelope.mail_from)
    with pool.connection() as conn:
        if agents is None:
            agents = agent_store.agents_by_emails(conn, envelope.recipients,
                                                  headers.thread_refs(msg))
        by_email = {a["email"]: a for a in agents}
        # Owner by owner: the rows two concurrent deliveries lock (each
        # owner's usage counter at commit, a retry's dedupe index entries)
        # are then taken in one order, and the two cannot deadlock.
        targets = sorted(((by_email[rcpt.lower()], rcpt) for rcpt in envelope.recipients
                          if rcpt.lower() in by_email),
                         key=lambda target: (target[0]["user_id"], target[0]["email"]))
        # One agent is one statement, a transaction of its own; several
        # share one, so they are stored all or none.
        screened = any(outcomes.get(a["email"], CLEAR).action != "none" for a, _ in targets)
        with conn.transaction() if len(targets) > 1 or screened \
                else contextlib.nullcontext():
            for agent, rcpt in targets:
                result.agent_recipients.append(rcpt)
                message_id = new_id("msg")
                att = attest.Attestation(
                    verified=verdict.aligned, sender=sender,
                    # An agent's only when our own path carried it and the
                    # sender proved to be that agent (its API key, or this
                    # host's filter recording it as the agent's).
                    entity_type="agent" if envelope.own_path and envelope.sent_by else "human",
                    domain_check=verdict.domain_check, delegation="",
                    timestamp=rfc3339(now), message_id=message_id,
                    body_hash=body_hash)
                secret = agent["signing_secret"] or deployment_secret
                conversation_id = conversation(
                    agent, envelope.sent_by if envelope.own_path else None)
                outcome = outcomes.get(agent["email"], CLEAR)
                row = {
                    "id": message_id, "user_id": agent["user_id"], "agent_id": agent["id"],
                    "recipient": agent["email"], "sender": sender,
                    "envelope_sender": headers.text(envelope.mail_from),
                    "to_recipients": to, "cc": cc, "reply_to": reply_to, "subject": subject,
                    "email_message_id": email_message_id, "in_reply_to": in_reply_to,
                    "references_ids": references,
                    "conversation_id": conversation_id, "raw_message": raw,
                    "size_bytes": len(raw), "auth_headers": att.headers(secret),
                    "spf": verdict.spf, "dkim": verdict.dkim, "dmarc": verdict.dmarc,
                    "verified": verdict.aligned, "entity_type": att.entity_type,
                    "queue_id": envelope.queue_id,
                    "dedupe_key": dedupe_key(content, envelope, agent["email"]),
                    **_screening_columns(agent, outcome, labels),
                }
                event_data = {
                    "message_id": message_id, "agent_id": agent["id"],
                    "recipient": agent["email"], "from": sender, "subject": subject,
                    "conversation_id": conversation_id or ""}
                steps = lifecycle.inbound_steps(verdict.dmarc, envelope.queue_id,
                                                email_message_id)
                if outcome.held:
                    # Not delivered until a person approves it
                    # (core/inbound/holds.py): no email.received, only the
                    # review request (/v1 email.review_requested).
                    stored_id = message_store.insert_inbound(conn, row)
                    if stored_id is not None:
                        for step in [*steps, lifecycle.step("review.hold_created")]:
                            lifecycle.record(conn, message_id, "inbound", step["reason_code"],
                                             evidence=step["evidence"],
                                             correlation_ids=step["correlation_ids"])
                        event_store.insert_event(
                            conn, new_id("evt"), agent["user_id"],
                            eventtypes.EMAIL_PENDING_APPROVAL,
                            {**event_data, "direction": "inbound", "type": "inbound",
                             "envelope_from": headers.text(envelope.mail_from),
                             "hold_reason": outcome.hold_reason},
                            agent_id=agent["id"], message_id=message_id,
                            conversation_id=conversation_id)
                else:
                    stored_id = message_store.store_inbound(
                        conn, row, event_id=new_id("evt"), event_data=event_data,
                        notify_payload=json.dumps({"message_id": message_id,
                                                   "agent_id": agent["id"]}),
                        lifecycle=steps)
                if stored_id is not None and outcome.action == "flag":
                    event_store.insert_event(
                        conn, new_id("evt"), agent["user_id"], eventtypes.EMAIL_FLAGGED,
                        {**event_data, "direction": "inbound",
                         "envelope_from": headers.text(envelope.mail_from),
                         "reply_to": reply_to, "policy": outcome.source,
                         "reason": outcome.reason},
                        agent_id=agent["id"], message_id=message_id,
                        conversation_id=conversation_id)
                if stored_id is None:
                    log.info("duplicate delivery ignored", extra={
                        "queue_id": envelope.queue_id, "agent": agent["email"]})
                    continue
                result.message_ids.append(stored_id)
    return result




