"""Outbound messages held for a person's approval: the content filter's
side (core/outbound/holds.py). Resolving them is core/store/approvals.py's."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.types.json import Jsonb

Row = dict[str, Any]


def hold(conn: psycopg.Connection, message_id: str, *, raw: bytes, body_text: str,
         body_html: str, attachments: list[dict[str, str]], ttl_seconds: int) -> Row | None:
    """Mark the outbound message held; its id, status and approval_expires_at.

    Only a message not yet passed on and not yet decided on is held: one
    held already keeps its bytes, bodies, attachments and expiry, so what a
    reviewer reads is what leaves (a retry by Postfix changes nothing, and
    nothing submitted later under its id takes its place). None when the
    row is not holdable: released or resolved already (``held_state`` says
    how)."""
    return conn.execute(
        """UPDATE messages
              SET status = 'pending_approval',
                  raw_message = CASE WHEN status = 'pending_approval'
                                      AND raw_message IS NOT NULL
                                     THEN raw_message ELSE %(raw)s END,
                  body_text = COALESCE(body_text, %(body_text)s),
                  body_html = COALESCE(body_html, %(body_html)s),
                  attachments = COALESCE(attachments, %(attachments)s),
                  approval_expires_at = COALESCE(
                      approval_expires_at, now() + %(ttl)s * interval '1 second')
            WHERE id = %(id)s AND direction = 'outbound'
              AND status IN ('sent', 'pending_approval')
              AND COALESCE(provider_message_id, '') = ''
        RETURNING id, status, approval_expires_at""",
        {"id": message_id, "raw": raw, "body_text": body_text, "body_html": body_html,
         "attachments": Jsonb(attachments), "ttl": ttl_seconds}).fetchone()


def held_state(conn: psycopg.Connection, message_id: str) -> Row | None:
    """The status, expiry and queue id of an outbound message; None when there is none."""
    return conn.execute(
        """SELECT id, status, approval_expires_at, provider_message_id
             FROM messages WHERE id = %s AND direction = 'outbound'""",
        (message_id,)).fetchone()


# -- received mail held by an agent's inbound protection (core/inbound/holds.py)

_INBOUND_COLUMNS = """m.id, m.user_id, m.agent_id, m.status, m.sender, m.subject, m.conversation_id,
                      m.recipient, m.envelope_sender, m.approval_expires_at,
                      a.hitl_expiration_action"""


def lock_inbound(conn: psycopg.Connection, message_id: str, owner_id: str | None) -> Row | None:
    """A received message held or once held for review, locked until the
    transaction ends, whatever its status; None when there is none of
    ``owner_id``'s (None: anyone's)."""
    return conn.execute(
        f"""SELECT {_INBOUND_COLUMNS} FROM messages m JOIN agents a ON a.id = m.agent_id
             WHERE m.id = %(id)s AND m.direction = 'inbound' AND m.hold_reason IS NOT NULL
               AND (%(owner)s::text IS NULL OR m.user_id = %(owner)s)
               FOR UPDATE OF m""",
        {"id": message_id, "owner": owner_id}).fetchone()


def claim_due_inbound(conn: psycopg.Connection) -> Row | None:
    """The held received message expired longest ago that nobody has locked."""
    return conn.execute(
        f"""SELECT {_INBOUND_COLUMNS} FROM messages m JOIN agents a ON a.id = m.agent_id
             WHERE m.status = 'pending_approval' AND m.direction = 'inbound'
               AND m.approval_expires_at <= now()
             ORDER BY m.approval_expires_at LIMIT 1
               FOR UPDATE OF m SKIP LOCKED""").fetchone()


def resolve_inbound(conn: psycopg.Connection, message_id: str, *, status: str | None,
                    reviewer_user_id: str | None, reason: str = "") -> None:
    """``status`` None: delivered to the agent from now on; else how it
    stays hidden (rejected, expired_rejected)."""
    conn.execute(
        """UPDATE messages SET status = %(status)s, reviewed_by_user_id = %(reviewer)s,
                  reviewed_at = CASE WHEN %(reviewer)s::text IS NULL THEN NULL ELSE now() END,
                  rejection_reason = %(reason)s, approval_expires_at = NULL
            WHERE id = %(id)s""",
        {"id": message_id, "status": status, "reviewer": reviewer_user_id, "reason": reason})
