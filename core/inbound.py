"""Inbound mail for agents: from the bytes the milter rebuilt to stored rows.

One transaction per message: a row per agent recipient, an outbox event per
row and a NOTIFY; the SMTP client hears 250 only after it commits.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import getaddresses
from typing import Any

from psycopg_pool import ConnectionPool

from e2a.core import attest
from e2a.core.ids import new_id
from e2a.core.mailauth.verdict import Verdict
from e2a.core.store import agents as agent_store
from e2a.core.store import events as event_store
from e2a.core.store import messages as message_store
from e2a.core.store import signing as signing_store
from e2a.core.timefmt import rfc3339

log = logging.getLogger("e2a.inbound")

_MSGID = re.compile(r"<[^<>\s]+>")
# Headers a relay adds or rewrites on the way: left out of the dedupe key so a
# retried delivery (new Received line, new queue id) is recognised as the same.
_TRANSIT_HEADERS = frozenset({"received", "return-path", "authentication-results",
                              "x-original-to", "delivered-to"})


@dataclass(frozen=True)
class Envelope:
    mail_from: str  # "" for the null sender
    recipients: list[str]  # addr-specs, in RCPT order
    client_addr: str = ""
    client_name: str = ""
    helo: str = ""
    queue_id: str = ""
    own_path: bool = False  # came through our reinjection service


@dataclass
class Stored:
    agent_recipients: list[str] = field(default_factory=list)  # consumed by us
    message_ids: list[str] = field(default_factory=list)  # newly stored rows


def parse(raw: bytes) -> EmailMessage:
    # policy.default parses lazily and records defects instead of raising, so
    # malformed input still yields the headers we can read.
    return BytesParser(policy=policy.default).parsebytes(raw)


def _header(msg: EmailMessage, name: str) -> str:
    try:
        value = msg.get(name)
    except (ValueError, IndexError, TypeError):
        # A header too broken for the parser: fall back to the raw text.
        raw = msg.get_all(name, failobj=[])
        value = raw[0] if raw else None
    return " ".join(str(value).split()) if value is not None else ""


def _addresses(msg: EmailMessage, name: str) -> list[str]:
    values = [str(v) for v in msg.get_all(name, failobj=[])]
    return [addr for _, addr in getaddresses(values) if "@" in addr]


def from_address(msg: EmailMessage) -> str:
    found = _addresses(msg, "From")
    return found[0] if found else ""


def message_ids(value: str) -> list[str]:
    return _MSGID.findall(value)


def dedupe_key(raw: bytes, envelope: Envelope, recipient: str) -> bytes:
    head, _, body = raw.partition(b"\r\n\r\n")
    digest = hashlib.sha256()
    digest.update(f"{envelope.mail_from}\0{recipient}\0".encode())
    for line in _unfold(head):
        name = line.split(b":", 1)[0].strip().lower()
        if name.decode("ascii", "replace") not in _TRANSIT_HEADERS:
            digest.update(line + b"\n")
    digest.update(b"\0" + body)
    return digest.digest()


def _unfold(head: bytes) -> list[bytes]:
    lines: list[bytes] = []
    for line in head.split(b"\r\n"):
        if line[:1] in (b" ", b"\t") and lines:
            lines[-1] += b"\r\n" + line
        else:
            lines.append(line)
    return lines


def prepend_header(raw: bytes, name: str, value: str) -> bytes:
    return f"{name}: {value}\r\n".encode() + raw


def _conversation(conn: Any, agent: dict[str, Any], msg: EmailMessage,
                  envelope: Envelope) -> str | None:
    if envelope.own_path:
        # Only our own content filter can have put this header there.
        claimed = _header(msg, "X-E2A-Conversation-Id")
        if claimed:
            return claimed[:200]
    refs = message_ids(_header(msg, "In-Reply-To")) + message_ids(_header(msg, "References"))
    return message_store.conversation_of(conn, agent["id"], refs)


def store(pool: ConnectionPool, raw: bytes, envelope: Envelope, verdict: Verdict,
          deployment_secret: str) -> Stored:
    """Store the message for every agent among the recipients, all or nothing.

    ``raw`` is the message as it will be delivered (our Authentication-Results
    first). Raises on any database error: the caller answers 4xx.
    """
    result = Stored()
    msg = parse(raw)
    sender = from_address(msg)
    subject = _header(msg, "Subject")
    email_message_id = (message_ids(_header(msg, "Message-ID")) or [""])[0]
    now = datetime.now(UTC).replace(microsecond=0)
    with pool.connection() as conn, conn.transaction():
        agents = agent_store.agents_by_emails(conn, envelope.recipients)
        by_email = {a["email"]: a for a in agents}
        for rcpt in envelope.recipients:
            agent = by_email.get(rcpt.lower())
            if agent is None:
                continue
            result.agent_recipients.append(rcpt)
            message_id = new_id("msg")
            att = attest.Attestation(
                verified=verdict.aligned, sender=sender,
                entity_type="agent" if envelope.own_path else "human",
                domain_check=verdict.domain_check, delegation="",
                timestamp=rfc3339(now), message_id=message_id,
                body_hash=attest.body_hash(raw))
            secret = signing_store.newest_secret(conn, agent["user_id"]) or deployment_secret
            conversation_id = _conversation(conn, agent, msg, envelope)
            stored_id = message_store.insert_inbound(conn, {
                "id": message_id, "user_id": agent["user_id"], "agent_id": agent["id"],
                "recipient": agent["email"], "sender": sender,
                "envelope_sender": envelope.mail_from,
                "to_recipients": _addresses(msg, "To"), "cc": _addresses(msg, "Cc"),
                "reply_to": _addresses(msg, "Reply-To"), "subject": subject,
                "email_message_id": email_message_id,
                "in_reply_to": (message_ids(_header(msg, "In-Reply-To")) or [""])[0],
                "references_ids": message_ids(_header(msg, "References")),
                "conversation_id": conversation_id, "raw_message": raw,
                "size_bytes": len(raw), "auth_headers": att.headers(secret),
                "spf": verdict.spf, "dkim": verdict.dkim, "dmarc": verdict.dmarc,
                "verified": verdict.aligned, "entity_type": att.entity_type,
                "queue_id": envelope.queue_id,
                "dedupe_key": dedupe_key(raw, envelope, agent["email"]),
            })
            if stored_id is None:
                log.info("duplicate delivery ignored", extra={
                    "queue_id": envelope.queue_id, "agent": agent["email"]})
                continue
            result.message_ids.append(stored_id)
            event_store.insert_event(
                conn, new_id("evt"), agent["user_id"], "email.received",
                {"message_id": stored_id, "agent_id": agent["id"], "recipient": agent["email"],
                 "from": sender, "subject": subject, "conversation_id": conversation_id or ""},
                agent_id=agent["id"], message_id=stored_id, conversation_id=conversation_id)
            message_store.notify_inbound(conn, json.dumps(
                {"message_id": stored_id, "agent_id": agent["id"]}))
    return result


def addr_spec(value: str) -> str:
    """The bare address of an envelope argument such as ``<Bob@Example.COM>``."""
    value = value.strip()
    if value.startswith("<") and value.endswith(">"):
        value = value[1:-1]
    # Source routes (<@a,@b:user@host>) are obsolete; keep the mailbox.
    if value.startswith("@") and ":" in value:
        value = value.split(":", 1)[1]
    return value


