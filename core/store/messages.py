"""Messages, inbound and outbound."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

Row = dict[str, Any]

# Channel the milter notifies on commit; API processes LISTEN for WebSocket push.
INBOUND_CHANNEL = "e2a_inbound"


def insert_inbound(conn: psycopg.Connection, row: dict[str, Any]) -> str | None:
    """Store one delivery to one agent; None when this delivery is already stored
    (a client retrying after a 4xx whose first transaction had committed)."""
    found = conn.execute(
        """INSERT INTO messages (
               id, user_id, agent_id, direction, recipient, sender, envelope_sender,
               to_recipients, cc, reply_to, subject, email_message_id, in_reply_to,
               references_ids, conversation_id, raw_message, size_bytes, auth_headers,
               spf, dkim, dmarc, verified, entity_type, inbox_status, queue_id, dedupe_key)
           VALUES (
               %(id)s, %(user_id)s, %(agent_id)s, 'inbound', %(recipient)s, %(sender)s,
               %(envelope_sender)s, %(to_recipients)s, %(cc)s, %(reply_to)s, %(subject)s,
               %(email_message_id)s, %(in_reply_to)s, %(references_ids)s,
               %(conversation_id)s, %(raw_message)s, %(size_bytes)s, %(auth_headers)s,
               %(spf)s, %(dkim)s, %(dmarc)s, %(verified)s, %(entity_type)s, 'unread',
               %(queue_id)s, %(dedupe_key)s)
           ON CONFLICT (agent_id, dedupe_key) WHERE dedupe_key IS NOT NULL DO NOTHING
           RETURNING id""",
        {**row, "auth_headers": Jsonb(row["auth_headers"])}).fetchone()
    return found["id"] if found else None


def notify_inbound(conn: psycopg.Connection, payload: str) -> None:
    """Queued in the transaction; Postgres delivers it only on commit."""
    conn.execute("SELECT pg_notify(%s, %s)", (INBOUND_CHANNEL, payload))


def conversation_of(conn: psycopg.Connection, agent_id: str,
                    email_message_ids: list[str]) -> str | None:
    """The conversation of the newest of this agent's messages with one of these
    RFC 5322 Message-IDs (threading by In-Reply-To / References)."""
    if not email_message_ids:
        return None
    row = conn.execute(
        """SELECT conversation_id FROM messages
            WHERE agent_id = %s AND email_message_id = ANY(%s)
              AND conversation_id IS NOT NULL
            ORDER BY created_at DESC LIMIT 1""",
        (agent_id, email_message_ids)).fetchone()
    return row["conversation_id"] if row else None


def list_for_agent(conn: psycopg.Connection, agent_id: str, *, direction: str | None,
                   status: str | None, ascending: bool, limit: int,
                   after: tuple[datetime, str] | None) -> list[Row]:
    """One page of an agent's messages, newest first unless ``ascending``.

    ``after`` is the (created_at, id) of the last row of the previous page:
    keyset pagination stays correct while new mail arrives.
    """
    clauses = ["agent_id = %(agent_id)s"]
    params: dict[str, Any] = {"agent_id": agent_id, "limit": limit}
    if direction:
        clauses.append("direction = %(direction)s")
        params["direction"] = direction
    if status:
        clauses.append("inbox_status = %(status)s")
        params["status"] = status
    if after:
        op = ">" if ascending else "<"
        clauses.append(f"(created_at, id) {op} (%(after_at)s, %(after_id)s)")
        params["after_at"], params["after_id"] = after
    order = "ASC" if ascending else "DESC"
    return conn.execute(
        f"""SELECT id, direction, recipient, sender, to_recipients, cc, reply_to, subject,
                   conversation_id, size_bytes, inbox_status, status, labels,
                   webhook_status, webhook_error, created_at
              FROM messages WHERE {' AND '.join(clauses)}
             ORDER BY created_at {order}, id {order} LIMIT %(limit)s""",
        params).fetchall()
