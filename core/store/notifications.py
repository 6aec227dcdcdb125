"""Owner notifications of held messages, and what a reply to one looks up."""

from __future__ import annotations

import psycopg

from e2a.core.store.messages import Row

# A held message its owner has not been told about, and may be told about now.
_UNNOTIFIED = """m.status = 'pending_approval' AND m.direction = 'outbound'
                 AND m.notified_at IS NULL AND m.approval_expires_at > now()
                 AND m.delivery_status <> 'submitting'
                 AND NOT EXISTS (
                     SELECT 1 FROM agents sa WHERE sa.id = m.agent_id
                        AND coalesce((sa.protection->>'suppress_notifications')::boolean,
                                     false))"""


def claim_owner(conn: psycopg.Connection, per_hour: int) -> Row | None:
    """The owner (user_id, owner_email) of the oldest held message nobody
    told them about, among owners sent fewer than ``per_hour`` notifications
    in the last hour; locked until the caller's transaction ends, owners
    another worker holds skipped. Holds that expired meanwhile are the expiry
    job's, not news; one the API has not yet seen Postfix take is not yet."""
    return conn.execute(
        f"""SELECT u.id AS user_id, u.email AS owner_email
              FROM messages m JOIN users u ON u.id = m.user_id
             WHERE {_UNNOTIFIED}
               AND (SELECT count(*) FROM owner_notifications n
                     WHERE n.user_id = u.id AND n.sent_at > now() - interval '1 hour') < %s
             ORDER BY m.created_at, m.id
             LIMIT 1
               FOR UPDATE OF u SKIP LOCKED""", (per_hour,)).fetchone()


def unnotified_of(conn: psycopg.Connection, user_id: str, limit: int) -> list[Row]:
    """Up to ``limit`` of the owner's held messages nobody told them about,
    oldest first, locked until the caller's transaction ends."""
    return conn.execute(
        f"""SELECT m.id, m.user_id, m.subject, m.to_recipients, m.cc, m.bcc,
                   m.approval_expires_at, a.email AS agent_email, a.hitl_expiration_action,
                   u.email AS owner_email
              FROM messages m
              JOIN agents a ON a.id = m.agent_id
              JOIN users u ON u.id = m.user_id
             WHERE m.user_id = %s AND {_UNNOTIFIED}
             ORDER BY m.created_at, m.id
             LIMIT %s
               FOR UPDATE OF m SKIP LOCKED""", (user_id, limit)).fetchall()


def mark_notified(conn: psycopg.Connection, message_ids: list[str]) -> None:
    conn.execute("UPDATE messages SET notified_at = now() WHERE id = ANY(%s)",
                 (message_ids,))


def record_sent(conn: psycopg.Connection, user_id: str) -> None:
    """One notification mail went to the owner now (what claim_owner counts)."""
    conn.execute("INSERT INTO owner_notifications (user_id) VALUES (%s)", (user_id,))


def held_for_reply(conn: psycopg.Connection, message_id: str) -> Row | None:
    """The outbound message a reply address names, with its owner's email
    (None when there is no such message)."""
    return conn.execute(
        """SELECT m.id, m.user_id, m.status, u.email AS owner_email
             FROM messages m JOIN users u ON u.id = m.user_id
            WHERE m.id = %s AND m.direction = 'outbound'""",
        (message_id,)).fetchone()
