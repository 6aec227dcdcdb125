"""Holding an outbound message for a person's approval (human in the loop).

When core/outbound.decide says HOLD, the content filter stores the message
as ``pending_approval`` instead of passing it on: exactly the bytes Postfix
handed over (what release signs and reinjects), and, for the review pages and
edits, its text and HTML bodies and attachments taken from the MIME. The
approval deadline is the agent's TTL from the first hold; a retry by Postfix
(our 250 lost) holds nothing twice and moves no deadline. The API holds its
row already as it inserts it (``hold_draft``), with the draft's own bodies:
the filter then finds it pending and leaves those and the deadline as they are.
"""

from __future__ import annotations

import base64
import email
import email.policy
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage, Message
from typing import Any

import psycopg

from e2a.core.mail import mimetext
from e2a.core.messages import lifecycle
from e2a.core.outbound import screening
from e2a.core.outbound.compose import Composed
from e2a.core.store import holds as hold_store
from e2a.core.store import protection as protection_store

PENDING = "pending_approval"


@dataclass(frozen=True)
class Content:
    """What a reviewer reads and edits of a held message."""

    body_text: str
    body_html: str
    attachments: list[dict[str, str]]  # {"filename", "content_type", "data" (base64)}

    def __repr__(self) -> str:  # bodies never land in a log line
        return f"Content(attachments={len(self.attachments)})"


@dataclass(frozen=True)
class Held:
    message_id: str
    status: str  # pending_approval; else what it was resolved as before (nothing held)
    approval_expires_at: datetime | None

    @property
    def pending(self) -> bool:
        return self.status == PENDING


def attachment_json(filename: str, content_type: str, data: bytes) -> dict[str, str]:
    """One attachment as messages.attachments keeps it (the API's Attachment shape)."""
    return {"filename": filename, "content_type": content_type,
            "data": base64.b64encode(data).decode("ascii")}


def _leaves(part: Message) -> Iterator[Message]:
    """The parts that carry content; an attached message stays whole."""
    if part.is_multipart() and part.get_content_type() != "message/rfc822":
        for sub in part.get_payload():  # type: ignore[union-attr]
            yield from _leaves(sub)
    else:
        yield part


def _data(part: Message) -> bytes:
    if part.get_content_type() == "message/rfc822":
        inner = part.get_payload(0)
        return inner.as_bytes() if isinstance(inner, Message) else b""
    payload = part.get_payload(decode=True)
    return payload if isinstance(payload, bytes) else b""


def extract(raw: bytes) -> Content:
    """The bodies and attachments of a MIME message: the first text/plain and
    text/html bodies (as a mail reader would show them); every other leaf part
    is an attachment, named or not."""
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    text_part = msg.get_body(preferencelist=("plain",))
    html_part = msg.get_body(preferencelist=("html",))
    bodies = [p for p in (text_part, html_part) if p is not None]
    attachments = [attachment_json(part.get_filename() or "", part.get_content_type(),
                                   _data(part))
                   for part in _leaves(msg) if not any(part is body for body in bodies)]
    return Content(mimetext.part_text(text_part) if text_part is not None else "",
                   mimetext.part_text(html_part) if html_part is not None else "", attachments)


def hold_draft(conn: psycopg.Connection, message_id: str, composed: Composed,
               agent: Mapping[str, Any], screened: screening.Screened | None = None) -> Held:
    """Hold the API's just-inserted row ``message_id`` with its draft's own
    bodies and attachments (core/outbound/send.py, in the sending transaction)."""
    draft = composed.draft
    return _held(conn, message_id, screened, hold_store.hold(
        conn, message_id, raw=composed.raw, body_text=draft.text, body_html=draft.html,
        attachments=[attachment_json(a.filename, a.content_type, a.data)
                     for a in draft.attachments],
        ttl_seconds=int(agent["hitl_ttl_seconds"])))


def hold(conn: psycopg.Connection, message_id: str, raw: bytes,
         agent: Mapping[str, Any], screened: screening.Screened | None = None) -> Held:
    """Hold the outbound message ``message_id`` whose submitted bytes are
    ``raw``. Idempotent. Held.pending is False when the message was released or
    resolved already: it must then not leave again (nor be held). ``screened``:
    why, when protection screening held it (else the agent holds everything)."""
    content = extract(raw)
    row = hold_store.hold(conn, message_id, raw=raw, body_text=content.body_text,
                          body_html=content.body_html, attachments=content.attachments,
                          ttl_seconds=int(agent["hitl_ttl_seconds"]))
    return _held(conn, message_id, screened, row)


def _held(conn: psycopg.Connection, message_id: str, screened: screening.Screened | None,
          row: hold_store.Row | None) -> Held:
    if row is not None:
        # Why it waits, for the reviewer (kept as first recorded).
        protection_store.set_outcome(
            conn, message_id, hold_reason=screening.hold_reason(screened),
            protection=screened.protection if screened else None)
    else:
        row = hold_store.held_state(conn, message_id)
        if row is None:
            raise LookupError(f"no outbound message {message_id} to hold")
    if row["status"] == PENDING:
        lifecycle.record(conn, message_id, "outbound", "review.hold_created")
    return Held(row["id"], row["status"], row["approval_expires_at"])
