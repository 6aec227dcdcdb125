"""Inbound mail for agents: from the bytes the milter rebuilt to stored rows.

One transaction per message: a row per agent recipient, an outbox event per
row and a NOTIFY; the SMTP client hears 250 only after it commits.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import policy
from email.headerregistry import HeaderRegistry, UnstructuredHeader
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import getaddresses
from typing import Any

from psycopg_pool import ConnectionPool

from e2a.core import attest
from e2a.core.ids import new_id
from e2a.core.mailauth.verdict import Verdict
from e2a.core.store import agents as agent_store
from e2a.core.store import messages as message_store
from e2a.core.timefmt import rfc3339

log = logging.getLogger("e2a.inbound")

_MSGID = re.compile(r"<[^<>\s]+>")
# Headers a relay adds or rewrites on the way: left out of the dedupe key so a
# retried delivery (new Received line, new queue id) is recognised as the same.
_TRANSIT_HEADERS = frozenset({"received", "return-path", "authentication-results",
                              "x-original-to", "delivered-to"})


# What the milter takes into its header parsers (the email package, dkimpy,
# the Authentication-Results reader), one limit for all of them; a message
# over it is refused for good (552 5.3.4). Real mail has a few dozen fields
# (Postfix bounces it after 50 Received); Postfix's header_size_limit
# (102400) truncates longer fields, so behind a stock Postfix no field
# reaches the byte limit.
MAX_HEADER_FIELDS = 1000
MAX_HEADER_BYTES = 131072  # one field, name and folds included


# Every field read as unstructured text (RFC 2047 words decoded): what we read
# is addresses (from the raw values), ids and the subject, never the MIME
# structure. The email package's structured parsers raise on some fields
# (Content-Type: text/plain; charset*=idna''abc) and take seconds on others
# (100 KB of RFC 2231 parameters); the parser asks for Content-Type itself.
# policy.default records defects instead of raising, so malformed input
# still yields the fields we can read.
_FIELDS_AS_TEXT = policy.default.clone(header_factory=HeaderRegistry(
    default_class=UnstructuredHeader, use_default_map=False))


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


def parse(raw: bytes) -> EmailMessage:
    """The header section only: everything we read is there, and a body of
    malformed MIME (or 10 MiB of it) is then never parsed at all."""
    if raw.startswith(b"\r\n"):
        head = b""  # no header fields at all
    else:
        end = raw.find(b"\r\n\r\n")
        head = raw if end < 0 else raw[:end + 4]
    try:
        return BytesParser(policy=_FIELDS_AS_TEXT).parsebytes(head, headersonly=True)
    except Exception:  # no known input gets here; what cannot be read stays unread
        log.warning("header section unreadable: stored without its fields", exc_info=True)
        return EmailMessage(policy=_FIELDS_AS_TEXT)


def text(value: str) -> str:
    """A string PostgreSQL takes. The parser keeps 8-bit bytes as lone
    surrogates: UTF-8 among them is restored, other junk becomes U+FFFD; NUL,
    which text columns refuse, goes."""
    try:
        data = value.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # surrogates no byte stands for (a decoded word)
        data = value.encode("utf-8", "replace")
    return data.decode("utf-8", "replace").replace("\x00", "")


def _raw_values(msg: EmailMessage, name: str) -> list[str]:
    return [str(v) for k, v in msg.raw_items() if k.lower() == name.lower()]


def header_value(msg: EmailMessage, name: str) -> str:
    try:
        value = msg.get(name)
    except Exception:
        # A header too broken for the parser (it has raised more than ValueError
        # on odd input): fall back to the raw text.
        raw = _raw_values(msg, name)
        value = raw[0] if raw else None
    return text(" ".join(str(value).split())) if value is not None else ""


def header_addresses(msg: EmailMessage, name: str) -> list[str]:
    # The raw values: only the addr-specs are kept, and they need no decoding.
    return [text(addr) for _, addr in getaddresses(_raw_values(msg, name)) if "@" in addr]


def from_address(msg: EmailMessage) -> str:
    found = header_addresses(msg, "From")
    return found[0] if found else ""


def author_domains(msg: EmailMessage) -> tuple[str, ...]:
    """The distinct domains of the From addresses, for DMARC."""
    return tuple(dict.fromkeys(a.rpartition("@")[2].lower() for a in header_addresses(msg, "From")))


def message_ids(value: str) -> list[str]:
    return _MSGID.findall(value)


def content_digest(raw: bytes) -> bytes:
    """What stays the same when a client retries the message: everything but
    the headers relays add on the way."""
    head, _, body = raw.partition(b"\r\n\r\n")
    digest = hashlib.sha256()
    for line in _unfold(head):
        name = line.split(b":", 1)[0].strip().lower()
        if name.decode("ascii", "replace") not in _TRANSIT_HEADERS:
            digest.update(line + b"\n")
    digest.update(b"\0" + body)
    return digest.digest()


def dedupe_key(content: bytes, envelope: Envelope, recipient: str) -> bytes:
    """``content``: content_digest(raw), computed once for all recipients."""
    envelope_part = f"{envelope.mail_from}\0{recipient}\0".encode("utf-8", "surrogateescape")
    return hashlib.sha256(envelope_part + content).digest()


def _unfold(head: bytes) -> list[bytes]:
    # Lists joined once: growing a field by concatenation is quadratic in its
    # fold lines.
    fields: list[list[bytes]] = []
    for line in head.split(b"\r\n"):
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1].append(line)
        else:
            fields.append([line])
    return [b"\r\n".join(lines) for lines in fields]


def prepend_header(raw: bytes, name: str, value: str) -> bytes:
    return f"{name}: {value}\r\n".encode() + raw


def thread_refs(msg: EmailMessage) -> list[str]:
    """The Message-IDs a reply names (In-Reply-To, then References): the
    agents' lookup finds the conversation among them (agents_by_emails)."""
    return (message_ids(header_value(msg, "In-Reply-To"))
            + message_ids(header_value(msg, "References")))


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


def store(pool: ConnectionPool, raw: bytes, envelope: Envelope, verdict: Verdict,
          deployment_secret: str, *, agents: list[dict[str, Any]] | None = None,
          msg: EmailMessage | None = None) -> Stored:
    """Store the message for every agent among the recipients, all or nothing.

    ``raw`` is the message as it will be delivered (our Authentication-Results
    first); ``msg`` its headers when the caller parsed them already. ``agents``:
    the recipients' agents when the caller looked them up already, with
    agents_by_emails(..., thread_refs(msg)) (an agent deleted since then fails
    its insert, and the client retries).
    Raises on any database error: the caller answers 4xx.
    """
    result = Stored()
    msg = msg if msg is not None else parse(raw)
    sender = from_address(msg)
    subject = header_value(msg, "Subject")
    email_message_id = (message_ids(header_value(msg, "Message-ID")) or [""])[0]
    in_reply_to = (message_ids(header_value(msg, "In-Reply-To")) or [""])[0]
    references = message_ids(header_value(msg, "References"))
    to, cc, reply_to = (header_addresses(msg, name) for name in ("To", "Cc", "Reply-To"))
    now = datetime.now(UTC).replace(microsecond=0)
    # Both hash the whole message: once for all recipients, not once each.
    body_hash = attest.body_hash(raw)
    content = content_digest(raw)
    with pool.connection() as conn:
        if agents is None:
            agents = agent_store.agents_by_emails(conn, envelope.recipients, thread_refs(msg))
        by_email = {a["email"]: a for a in agents}
        # Owner by owner: the rows two concurrent deliveries lock (each
        # owner's usage counter at commit, a retry's dedupe index entries)
        # are then taken in one order, and the two cannot deadlock.
        targets = sorted(((by_email[rcpt.lower()], rcpt) for rcpt in envelope.recipients
                          if rcpt.lower() in by_email),
                         key=lambda target: (target[0]["user_id"], target[0]["email"]))
        # One agent is one statement, a transaction of its own; several
        # share one, so they are stored all or none.
        with conn.transaction() if len(targets) > 1 else contextlib.nullcontext():
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
                stored_id = message_store.store_inbound(conn, {
                    "id": message_id, "user_id": agent["user_id"], "agent_id": agent["id"],
                    "recipient": agent["email"], "sender": sender,
                    "envelope_sender": text(envelope.mail_from),
                    "to_recipients": to, "cc": cc, "reply_to": reply_to, "subject": subject,
                    "email_message_id": email_message_id, "in_reply_to": in_reply_to,
                    "references_ids": references,
                    "conversation_id": conversation_id, "raw_message": raw,
                    "size_bytes": len(raw), "auth_headers": att.headers(secret),
                    "spf": verdict.spf, "dkim": verdict.dkim, "dmarc": verdict.dmarc,
                    "verified": verdict.aligned, "entity_type": att.entity_type,
                    "queue_id": envelope.queue_id,
                    "dedupe_key": dedupe_key(content, envelope, agent["email"]),
                }, event_id=new_id("evt"), event_data={
                    "message_id": message_id, "agent_id": agent["id"],
                    "recipient": agent["email"], "from": sender, "subject": subject,
                    "conversation_id": conversation_id or ""},
                    notify_payload=json.dumps({"message_id": message_id,
                                               "agent_id": agent["id"]}))
                if stored_id is None:
                    log.info("duplicate delivery ignored", extra={
                        "queue_id": envelope.queue_id, "agent": agent["email"]})
                    continue
                result.message_ids.append(stored_id)
    return result
