"""Owner notifications of held messages, and what a reply to one looks up."""

from __future__ import annotations

import psycopg

from e2a.core.store.messages import Row


def claim_unnotified(conn: psycopg.Connection) -> Row | None:
    """The oldest held message whose owner has not been told yet, locked
    until the caller's transaction ends; rows another worker holds are
    skipped. Holds that expired meanwhile are the expiry job's, not news."""
    return conn.execute(
        """SELECT m.id, m.user_id, m.subject, m.to_recipients, m.cc, m.bcc,
                  m.approval_expires_at, a.email AS agent_email, a.hitl_expiration_action,
                  u.email AS owner_email
             FROM messages m
             JOIN agents a ON a.id = m.agent_id
             JOIN users u ON u.id = m.user_id
            WHERE m.status = 'pending_approval' AND m.direction = 'outbound'
              AND m.notified_at IS NULL AND m.approval_expires_at > now()
            ORDER BY m.created_at, m.id
            LIMIT 1
              FOR UPDATE OF m SKIP LOCKED""").fetchone()


def mark_notified(conn: psycopg.Connection, message_id: str) -> None:
    conn.execute("UPDATE messages SET notified_at = now() WHERE id = %s", (message_id,))


def held_for_reply(conn: psycopg.Connection, message_id: str) -> Row | None:
    """The outbound message a reply address names, with its owner's email
    (None when there is no such message)."""
    return conn.execute(
        """SELECT m.id, m.user_id, m.status, u.email AS owner_email
             FROM messages m JOIN users u ON u.id = m.user_id
            WHERE m.id = %s AND m.direction = 'outbound'""",
        (message_id,)).fetchone()
