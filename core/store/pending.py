"""Reading held outbound messages for review: the owner's queue, one
message with its draft, and the inbound message a held reply answers.

Writes (approve, reject, expire) are core/outbound/approval.py's, over
core/store/approvals.py.
"""

from __future__ import annotations

from datetime import datetime

import psycopg

from e2a.core.store.messages import Row

# The queue shows no content: bodies and attachments are for the detail view.
_SUMMARY_COLUMNS = """id, agent_id, direction, type, status, to_recipients, cc, bcc, subject,
                      conversation_id, approval_expires_at, created_at, sender,
                      envelope_sender, verified, hold_reason, flagged, flag_reason,
                      (SELECT email FROM agents a WHERE a.id = messages.agent_id)
                          AS agent_email"""


def list_pending(conn: psycopg.Connection, user_id: str, *, agent_id: str | None = None,
                 limit: int, after: tuple[datetime, str] | None = None,
                 inbound_too: bool = False) -> list[Row]:
    """One page of the user's held messages (of one agent when
    ``agent_id``), the soonest to expire first; ``after`` is the (sort_at,
    id) of the previous page's last row. ``sort_at`` is the expiry, which
    every hold sets; a row without one would sort by its creation time
    rather than vanish from the queue. ``inbound_too``: received mail held
    by the agents' protection as well (/v1 reviews; the legacy queue is
    outbound drafts only)."""
    after_at, after_id = after or (None, "")
    return conn.execute(
        f"""SELECT {_SUMMARY_COLUMNS}, coalesce(approval_expires_at, created_at) AS sort_at
              FROM messages
             WHERE user_id = %(user_id)s AND status = 'pending_approval'
               AND (direction = 'outbound' OR %(inbound_too)s)
               AND (%(agent_id)s::text IS NULL OR agent_id = %(agent_id)s)
               AND (%(after_at)s::timestamptz IS NULL
                    OR (coalesce(approval_expires_at, created_at), id)
                       > (%(after_at)s::timestamptz, %(after_id)s::text))
             ORDER BY sort_at, id
             LIMIT %(limit)s""",
        {"user_id": user_id, "agent_id": agent_id, "after_at": after_at,
         "after_id": after_id, "limit": limit, "inbound_too": inbound_too}).fetchall()


def outbound_message(conn: psycopg.Connection, message_id: str, *,
                     user_id: str | None) -> Row | None:
    """One outbound message with its draft (present while it is held), the
    name of whoever reviewed it and its agent's expiration action. ``user_id``
    None looks across all users (a magic link, whose token is then checked
    against the owner found here)."""
    return conn.execute(
        """SELECT m.id, m.user_id, m.agent_id, m.direction, m.type, m.status, m.sender,
                  m.to_recipients, m.cc, m.bcc, m.subject, m.conversation_id,
                  m.email_message_id, m.in_reply_to, m.body_text, m.body_html,
                  m.attachments, m.approval_expires_at, m.edited, m.method,
                  m.provider_message_id, m.rejection_reason, m.reviewed_at,
                  m.reviewed_by_user_id, m.created_at, m.hold_reason, m.protection,
                  coalesce(nullif(u.name, ''), u.email) AS reviewed_by_name,
                  a.hitl_expiration_action
             FROM messages m JOIN agents a ON a.id = m.agent_id
                  LEFT JOIN users u ON u.id = m.reviewed_by_user_id
            WHERE m.id = %(id)s AND m.direction = 'outbound'
              AND (%(user_id)s::text IS NULL OR m.user_id = %(user_id)s)""",
        {"id": message_id, "user_id": user_id}).fetchone()


def replied_to(conn: psycopg.Connection, agent_id: str, email_message_id: str) -> Row | None:
    """The agent's received message with this Message-ID (what a reply's
    In-Reply-To names), with its authentication verdicts; the newest when
    the same Message-ID came in twice."""
    if not email_message_id:
        return None
    return conn.execute(
        """SELECT sender, subject, created_at, spf, dkim, dmarc FROM messages
            WHERE agent_id = %s AND email_message_id = %s AND direction = 'inbound'
            ORDER BY created_at DESC, id DESC LIMIT 1""",
        (agent_id, email_message_id)).fetchone()
