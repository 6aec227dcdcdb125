"""Held outbound messages as their resolution sees them: locked one at a
time, then finished as sent or discarded. Every finish wipes the draft's
body, HTML and attachments; a discarded message also loses its raw copy,
since it never left."""

from __future__ import annotations

from typing import Any

import psycopg

Row = dict[str, Any]

_COLUMNS = """m.id, m.user_id, m.agent_id, m.type, m.status, m.sender, m.to_recipients, m.cc, m.bcc,
              m.subject, m.email_message_id, m.in_reply_to, m.references_ids,
              m.conversation_id, m.raw_message, m.body_text, m.body_html, m.attachments,
              m.approval_expires_at, a.email AS agent_email, a.name AS agent_name,
              a.hitl_expiration_action, d.domain AS agent_domain, m.hold_reason,
              a.protection AS agent_protection"""
_FROM = """messages m JOIN agents a ON a.id = m.agent_id
                      JOIN domains d ON d.id = a.domain_id"""


def lock(conn: psycopg.Connection, message_id: str, owner_id: str | None) -> Row | None:
    """The outbound message, locked until the transaction ends, whatever its
    status (the caller tells "not pending" from "not there"); None when there
    is none, or it is not ``owner_id``'s (None: anyone's). A second caller
    waits here for the first one's commit and then reads its outcome."""
    return conn.execute(
        f"""SELECT {_COLUMNS} FROM {_FROM}
             WHERE m.id = %(id)s AND m.direction = 'outbound'
               AND (%(owner)s::text IS NULL OR m.user_id = %(owner)s)
               FOR UPDATE OF m""",
        {"id": message_id, "owner": owner_id}).fetchone()


def claim_due(conn: psycopg.Connection) -> Row | None:
    """The held message expired longest ago that no one else has locked,
    locked until the transaction ends; None when there is none."""
    return conn.execute(
        f"""SELECT {_COLUMNS} FROM {_FROM}
             WHERE m.status = 'pending_approval' AND m.direction = 'outbound'
               AND m.approval_expires_at <= now()
             ORDER BY m.approval_expires_at
             LIMIT 1
               FOR UPDATE OF m SKIP LOCKED""").fetchone()


def mark_sending(conn: psycopg.Connection, message_id: str, *, status: str,
                 reviewer_user_id: str | None, reviewed: bool) -> None:
    """The decision to send, committed before Postfix is asked: ``status``
    (sent, expired_approved) with the in-flight marker delivery_status
    'submitting' (core/outbound/approval.py says why)."""
    conn.execute(
        """UPDATE messages
              SET status = %(status)s, delivery_status = 'submitting', delivery_error = '',
                  reviewed_by_user_id = %(reviewer)s,
                  reviewed_at = CASE WHEN %(reviewed)s THEN now() END
            WHERE id = %(id)s""",
        {"id": message_id, "status": status, "reviewer": reviewer_user_id,
         "reviewed": reviewed})


def unmark_sending(conn: psycopg.Connection, message_id: str, *, status: str,
                   error: str) -> None:
    """Postfix did not take the message marked ``status`` by mark_sending: it
    is pending again, with why it did not leave."""
    conn.execute(
        """UPDATE messages
              SET status = 'pending_approval', delivery_status = '', delivery_error = %(error)s,
                  reviewed_by_user_id = NULL, reviewed_at = NULL
            WHERE id = %(id)s AND status = %(status)s AND delivery_status = 'submitting'""",
        {"id": message_id, "status": status, "error": error})


def finish_sent(conn: psycopg.Connection, message_id: str, *, status: str, queue_id: str,
                reviewer_user_id: str | None, reviewed: bool,
                edited: Row | None = None) -> None:
    """The message left under Postfix's ``queue_id``. ``edited``: the
    recomposed message's subject, to, cc, bcc, raw_message (the row then
    says what really went out)."""
    changes = edited or {}
    conn.execute(
        """UPDATE messages
              SET status = %(status)s,
                  -- a DSN that came back before this commit keeps its mark
                  delivery_status = CASE WHEN delivery_status IN ('deferred', 'delivered',
                                                                  'bounced')
                                         THEN delivery_status ELSE 'sent' END,
                  provider_message_id = %(queue_id)s,
                  reviewed_by_user_id = %(reviewer)s,
                  reviewed_at = CASE WHEN %(reviewed)s THEN now() END,
                  edited = %(edited)s,
                  subject = COALESCE(%(subject)s, subject),
                  to_recipients = COALESCE(%(to)s, to_recipients),
                  recipient = COALESCE((%(to)s::text[])[1], recipient),
                  cc = COALESCE(%(cc)s, cc), bcc = COALESCE(%(bcc)s, bcc),
                  raw_message = COALESCE(%(raw)s, raw_message),
                  size_bytes = COALESCE(%(size)s, size_bytes),
                  body_text = NULL, body_html = NULL, attachments = NULL
            WHERE id = %(id)s""",
        {"id": message_id, "status": status, "queue_id": queue_id,
         "reviewer": reviewer_user_id, "reviewed": reviewed, "edited": edited is not None,
         "subject": changes.get("subject"), "to": changes.get("to"), "cc": changes.get("cc"),
         "bcc": changes.get("bcc"), "raw": changes.get("raw"),
         "size": len(changes["raw"]) if "raw" in changes else None})


def finish_discarded(conn: psycopg.Connection, message_id: str, *, status: str, reason: str,
                     reviewer_user_id: str | None, reviewed: bool) -> None:
    """The message never leaves: nothing of its content is kept."""
    conn.execute(
        """UPDATE messages
              SET status = %(status)s, rejection_reason = %(reason)s, delivery_status = '',
                  reviewed_by_user_id = %(reviewer)s,
                  reviewed_at = CASE WHEN %(reviewed)s THEN now() END,
                  body_text = NULL, body_html = NULL, attachments = NULL, raw_message = NULL
            WHERE id = %(id)s""",
        {"id": message_id, "status": status, "reason": reason,
         "reviewer": reviewer_user_id, "reviewed": reviewed})
