"""Everything one user owns, read for an export or erased for good (the
rest of an export comes from the stores of each aggregate)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import psycopg

Row = dict[str, Any]

_AGENT_IDS = "SELECT id FROM agents WHERE user_id = %s"


def agents(conn: psycopg.Connection, user_id: str) -> list[Row]:
    """The user's agents with e2a's read-time figures (7-day traffic, held
    mail, webhook health)."""
    return conn.execute(
        """SELECT a.id, a.user_id, a.email, a.name, a.agent_mode, a.webhook_url, a.deleted_at,
                  a.hitl_enabled, a.hitl_ttl_seconds, a.hitl_expiration_action, a.created_at,
                  d.domain, d.verified AS domain_verified,
                  (SELECT count(*) FROM messages m
                    WHERE m.agent_id = a.id AND m.direction = 'inbound'
                      AND m.created_at >= now() - interval '7 days') AS inbound_7d,
                  (SELECT count(*) FROM messages m
                    WHERE m.agent_id = a.id AND m.direction = 'outbound'
                      AND m.created_at >= now() - interval '7 days') AS outbound_7d,
                  (SELECT count(*) FROM messages m
                    WHERE m.agent_id = a.id AND m.status = 'pending_approval') AS pending_count,
                  (SELECT max(v.last_attempt_at) FROM deliveries v
                    WHERE v.agent_id = a.id AND v.status = 'delivered') AS last_delivery_at,
                  NOT EXISTS (SELECT 1 FROM deliveries v
                               WHERE v.agent_id = a.id AND v.status = 'failed'
                                 AND v.last_attempt_at >= now() - interval '24 hours'
                             ) AS webhook_healthy
             FROM agents a JOIN domains d ON d.id = a.domain_id
            WHERE a.user_id = %s
            ORDER BY a.created_at, a.id""",
        (user_id,)).fetchall()


def webhooks(conn: psycopg.Connection, user_id: str) -> list[Row]:
    return conn.execute(
        """SELECT id, url, description, events, filters, enabled, auto_disabled_at,
                  last_delivered_at, created_at
             FROM webhooks WHERE user_id = %s ORDER BY created_at, id""",
        (user_id,)).fetchall()


def messages_batch(conn: psycopg.Connection, agent_id: str,
                   after: tuple[datetime, str] | None, max_rows: int,
                   max_bytes: int) -> list[Row]:
    """An agent's next messages, oldest first, after ``after``: at most
    ``max_rows`` and, past the first row, no more than about ``max_bytes``
    of content in all, so a run of large mails stays small in memory. The
    sizes are read without fetching the content."""
    params: dict[str, Any] = {"agent_id": agent_id, "max_rows": max_rows,
                              "max_bytes": max_bytes}
    keyset = ""
    if after is not None:
        keyset = "AND (m.created_at, m.id) > (%(after_at)s, %(after_id)s)"
        params["after_at"], params["after_id"] = after
    return conn.execute(
        f"""SELECT * FROM (
                SELECT m.*, r.name AS reviewed_by_name,
                       row_number() OVER w AS n,
                       sum(coalesce(octet_length(m.raw_message), 0)
                           + coalesce(octet_length(m.body_text), 0)
                           + coalesce(octet_length(m.body_html), 0)
                           + coalesce(pg_column_size(m.attachments), 0)) OVER w AS running
                  FROM messages m LEFT JOIN users r ON r.id = m.reviewed_by_user_id
                 WHERE m.agent_id = %(agent_id)s {keyset}
                WINDOW w AS (ORDER BY m.created_at, m.id)
                 ORDER BY m.created_at, m.id
                 LIMIT %(max_rows)s) page
            WHERE n = 1 OR running <= %(max_bytes)s
            ORDER BY created_at, id""",
        params).fetchall()


def lock_agents(conn: psycopg.Connection, user_id: str) -> None:
    """Holds off new mail for the user's agents until the transaction ends:
    the milter's insert waits, then fails on the vanished agent and answers
    4xx, so nothing is accepted into an account being erased."""
    conn.execute("SELECT id FROM agents WHERE user_id = %s FOR UPDATE", (user_id,))


# Children before parents (agents before the domains they RESTRICT), the
# user last; each count is what that statement removed.
ERASE_ORDER: tuple[tuple[str, str], ...] = (
    ("messages", f"DELETE FROM messages WHERE agent_id IN ({_AGENT_IDS})"),
    # Emptied by the messages' delete trigger (sql/002_usage.sql), then removed.
    ("usage_monthly", "DELETE FROM usage_monthly WHERE user_id = %s"),
    ("events", "DELETE FROM events WHERE user_id = %s"),
    ("webhooks", "DELETE FROM webhooks WHERE user_id = %s"),
    ("api_keys", "DELETE FROM api_keys WHERE user_id = %s"),
    ("signing_secrets", "DELETE FROM signing_secrets WHERE user_id = %s"),
    ("idempotency_keys", "DELETE FROM idempotency_keys WHERE user_id = %s"),
    ("agent_suppressions", "DELETE FROM agent_suppressions WHERE user_id = %s"),
    ("unsubscribe_tokens", "DELETE FROM unsubscribe_tokens WHERE user_id = %s"),
    ("account_suppressions", "DELETE FROM account_suppressions WHERE user_id = %s"),
    ("agents", "DELETE FROM agents WHERE user_id = %s"),
    ("domains", "DELETE FROM domains WHERE user_id = %s AND NOT is_shared"),
    ("users", "DELETE FROM users WHERE id = %s"),
)


def erase(conn: psycopg.Connection, user_id: str) -> dict[str, int]:
    """Delete every row of the user; rows removed per table. The caller's
    transaction makes it all or nothing."""
    return {table: conn.execute(sql, (user_id,)).rowcount for table, sql in ERASE_ORDER}
