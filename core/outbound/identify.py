"""Which outbound message the content filter is passing on, and the return
path it leaves with.

Mail from the API arrives with the VERP return path of the row the API
stored (core/mta/verp.py): the row is looked up by that id, once the path's MAC
says we made it (a return path typed by anyone else names no row). Mail an
agent sent by plain SMTP or sendmail has no row: one is made here (type
``smtp``) when any of its sender identities (outbound.sender_identities: the
envelope sender, each From, Sender) is an agent's address, so that every
message an agent sends is recorded, and it then leaves with a VERP return
path too, so its bounces come back to it. Mail of nobody we know (the host's own)
gets no row and keeps its envelope.

Postfix retries a message we answered 4xx, so a second pass must find the
row of the first one: API rows by id, the others by a key made of Postfix's
queue id and the content.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any

import psycopg

from e2a.core.ids import new_id
from e2a.core.mail import headers
from e2a.core.messages import conversations
from e2a.core.mta import verp
from e2a.core.outbound import decision as outbound
from e2a.core.outbound import holds, screening
from e2a.core.outbound import send as sending
from e2a.core.store import agents as agent_store
from e2a.core.store import events as event_store
from e2a.core.store import messages as message_store
from e2a.core.store import outbound as outbound_store
from e2a.core.webhooks import eventtypes

log = logging.getLogger("e2a.outgoing")

Row = dict[str, Any]

SMTP_TYPE = "smtp"  # messages.type of mail an agent sent without the API
# What agents_by_emails adds to an agent's row for the message at hand.
_LOOKUP_ONLY = frozenset({"signing_secret", "thread_conversation_id"})
# The delivery_status of an API row whose 250 the API has not heard (the
# marker confirm takes away).
UNCONFIRMED = (outbound_store.SUBMITTING, outbound_store.UNCONFIRMED)


@dataclass(frozen=True)
class Submission:
    """A message as Postfix hands it to the filter."""

    mail_from: str  # "" for the null sender
    recipients: Sequence[str]
    raw: bytes
    headers: EmailMessage  # headers.parse(raw)
    queue_id: str = ""  # Postfix's, from XFORWARD IDENT ("" when not told)


@dataclass(frozen=True)
class Sending:
    """The outbound message a submission is."""

    message_id: str
    agent: Row  # core/store/agents shape
    return_path: str  # VERP on the agent's domain: the envelope sender it leaves with
    passed_on_as: str  # Postfix's queue id from an earlier pass, "" when none
    # The row's status: "sent" unless held for approval (pending_approval) or
    # decided on while it waited (rejected, expired_...).
    status: str = "sent"
    # Every agent among the message's sender identities (outbound.sending_agents).
    senders: tuple[Row, ...] = ()
    # The protection screening of mail this pass recorded (plain SMTP,
    # sendmail); None for the API's, which screened it as it recorded it.
    screened: screening.Screened | None = None


def identify(conn: psycopg.Connection, sub: Submission, verp_key: bytes) -> Sending | None:
    """The outbound message ``sub`` is, its row made when it has none; None
    when no agent of ours sent it. ``conn`` in autocommit: the lookups are
    statements of their own (under READ COMMITTED each sees what is
    committed when it runs, in a transaction or not), and whatever is
    written is written in one transaction, the marker of a row the API has
    not confirmed included."""
    senders = tuple(outbound.sending_agents(conn, sub.mail_from, sub.headers,
                                            headers.thread_refs(sub.headers)))
    claimed = verp.parse(sub.mail_from, verp_key)
    if claimed:
        found = _api_message(conn, sub, claimed, senders, verp_key)
        if found is not None:
            return found
    agent = _sending_agent(senders)
    if agent is None:
        return None
    key = dedupe_key(sub)
    screened = screening.screen(agent, sub.recipients, sub.raw,
                                screening.known_recipients(conn, agent))
    with conn.transaction():
        if screened.blocked:
            # Refused (the filter's decide says BLOCK): nothing recorded but
            # the email.blocked event.
            block_id = screening.record_block(conn, agent, sub.raw, sub.recipients, screened)
            return Sending(block_id, agent, "", "", senders=senders, screened=screened)
        message_id = new_id("msg")
        return_path = verp.return_path(message_id, agent["domain"], verp_key)
        if _create(conn, sub, agent, message_id, return_path, key, senders,
                   screened) is None:
            row = outbound_store.outbound_by_dedupe_key(conn, agent["id"], key)
            if row is None:
                raise RuntimeError("outbound row neither created nor found")
            return _from_row(row, agent, senders, verp_key)
        return Sending(message_id, agent, return_path, "", senders=senders, screened=screened)


def _api_message(conn: psycopg.Connection, sub: Submission, message_id: str,
                 senders: tuple[Row, ...], verp_key: bytes) -> Sending | None:
    row = outbound_store.outbound_by_id(conn, message_id)
    if row is None:
        # The API commits its row before it submits, and deletes it again
        # only when it heard no 250: here Postfix took the message all the
        # same (the 250 lost to a timeout, say). It leaves recorded, under
        # the id it carries (creating the row waits for a transaction of the
        # API's still writing it).
        agent = _sending_agent(senders)
        if agent is None:
            return None
        return_path = verp.return_path(message_id, agent["domain"], verp_key)
        with conn.transaction():
            created = _create(conn, sub, agent, message_id, return_path, None, senders)
        if created is not None:
            log.warning("no row for the message's return path: recorded from the message",
                        extra={"queue_id": sub.queue_id, "message_id": message_id})
            return Sending(message_id, agent, return_path, "", senders=senders)
        row = outbound_store.outbound_by_id(conn, message_id)
        if row is None:
            return None  # the id is an inbound message's: not a return path of ours
    if row["delivery_status"] in UNCONFIRMED:
        # Postfix has the message: if the API has not heard its 250 (yet,
        # or ever: its database failed after), the marker goes and the
        # event is written here. Once gone, a marker never comes back:
        # with none on the row there is nothing to take away.
        with conn.transaction():
            sending.confirm(conn, row["id"], sub.queue_id)
    agent = _row_agent(conn, row, senders)
    return _from_row(row, agent, senders, verp_key) if agent is not None else None


def _row_agent(conn: psycopg.Connection, row: Row, senders: tuple[Row, ...]) -> Row | None:
    """The agent of outbound ``row``. Its From is the agent's as a rule, so
    the sender lookup read it already (without what that lookup adds for
    this message); read again only otherwise (a From naming someone else,
    an agent trashed since the API took the message)."""
    found = next((a for a in senders if a["email"] == row["agent_email"]), None)
    if found is None:
        return agent_store.agent_by_email(conn, row["agent_email"])
    return {k: v for k, v in found.items() if k not in _LOOKUP_ONLY}


def _from_row(row: Row, agent: Row, senders: tuple[Row, ...], verp_key: bytes) -> Sending:
    return Sending(row["id"], agent, verp.return_path(row["id"], row["agent_domain"], verp_key),
                   row["provider_message_id"], row["status"], senders)


def _sending_agent(senders: tuple[Row, ...]) -> Row | None:
    """Whose message it is: an agent under review among its sender
    identities first (its owner is the one to approve it), else the first
    (the envelope sender's, then the From's)."""
    return next((a for a in senders if a["hitl_enabled"]), senders[0] if senders else None)


def dedupe_key(sub: Submission) -> bytes:
    """The same for every pass of one queued message: its queue id stays
    while Postfix retries it, and the content keeps a reused id apart."""
    envelope = "\0".join([sub.queue_id, sub.mail_from, *sub.recipients])
    return hashlib.sha256(b"outbound\0" + envelope.encode("utf-8", "surrogateescape")
                          + b"\0" + headers.content_digest(sub.raw)).digest()


def _create(conn: psycopg.Connection, sub: Submission, agent: Row, message_id: str,
            return_path: str, key: bytes | None, senders: tuple[Row, ...],
            screened: screening.Screened | None = None) -> str | None:
    """The row and its email.sent event (held for approval: the row pending,
    an email.pending_approval event); None when the id or key is taken."""
    msg = sub.headers
    held = outbound.decide(outbound.Candidate(sub.mail_from, sub.recipients, sub.raw,
                                             agent=agent, senders=senders, screened=screened)
                           ) is outbound.Decision.HOLD
    to = headers.header_addresses(msg, "To")
    cc = headers.header_addresses(msg, "Cc")
    listed = {a.lower() for a in to + cc}
    sender = headers.from_address(msg) or agent["email"]
    subject = headers.header_value(msg, "Subject")
    # Mail of this host may name its conversation, but only one of the
    # agent's own owner: an id never joins another tenant's thread.
    conversation_id = (conversations.claimed(conn, msg, agent["user_id"])
                       or agent["thread_conversation_id"])
    stored = message_store.insert_outbound(conn, {
        "id": message_id, "user_id": agent["user_id"], "agent_id": agent["id"],
        "type": SMTP_TYPE, "recipient": (to or list(sub.recipients) or [""])[0],
        "sender": sender, "envelope_sender": return_path,
        "to_recipients": to, "cc": cc,
        "bcc": [headers.text(r) for r in sub.recipients if r.lower() not in listed],
        "reply_to": headers.header_addresses(msg, "Reply-To"), "subject": subject,
        "email_message_id": (headers.message_ids(headers.header_value(msg, "Message-ID"))
                             or [""])[0],
        "in_reply_to": (headers.message_ids(headers.header_value(msg, "In-Reply-To"))
                        or [""])[0],
        "references_ids": headers.message_ids(headers.header_value(msg, "References")),
        "conversation_id": conversation_id, "raw_message": sub.raw,
        "size_bytes": len(sub.raw), "status": holds.PENDING if held else "sent",
        "delivery_status": "queued", "method": sending.METHOD, "queue_id": sub.queue_id,
        "dedupe_key": key,
    })
    if stored is None:
        return None
    if held:
        # Its draft and deadline in the same transaction: nobody ever sees
        # it pending without them (the filter's hold repeats this, idempotent).
        holds.hold(conn, message_id, sub.raw, agent, screened)
    event_store.insert_event(
        conn, new_id("evt"), agent["user_id"],
        eventtypes.EMAIL_PENDING_APPROVAL if held else eventtypes.EMAIL_SENT,
        {"message_id": message_id, "agent_id": agent["id"], "from": sender, "to": to,
         "subject": subject, "conversation_id": conversation_id or ""},
        agent_id=agent["id"], message_id=message_id, conversation_id=conversation_id)
    return stored
