"""What a user stores, as the quota checks need it: kept per month in
usage_monthly by triggers on messages (sql/002_usage.sql), so reading it costs
a few rows however big the mailbox."""

from __future__ import annotations

from typing import Any

import psycopg

Row = dict[str, Any]

# The limits and usage of the users row ``u``: max_messages_month,
# max_storage_bytes, messages_this_month (inbound, calendar month in UTC) and
# storage_bytes (every message, both directions).
_QUOTA_COLUMNS = """u.max_messages_month, u.max_storage_bytes,
                    coalesce(s.messages_this_month, 0)::bigint AS messages_this_month,
                    coalesce(s.storage_bytes, 0)::bigint AS storage_bytes"""
_USAGE_JOIN = """LEFT JOIN LATERAL (
                     SELECT sum(m.inbound_messages) FILTER (
                                WHERE m.month = date_trunc('month', now() AT TIME ZONE 'UTC')::date
                            ) AS messages_this_month,
                            sum(m.size_bytes) AS storage_bytes
                       FROM usage_monthly m WHERE m.user_id = u.id) s ON true"""


def quota_of(conn: psycopg.Connection, user_id: str) -> Row | None:
    """The user's limits and usage; None when there is no such user."""
    return conn.execute(
        f"SELECT {_QUOTA_COLUMNS} FROM users u {_USAGE_JOIN} WHERE u.id = %s",
        (user_id,)).fetchone()


def agent_with_quota(conn: psycopg.Connection, email: str) -> Row | None:
    """The agent at ``email`` (id, user_id, domain_verified) with its owner's
    quota_of, in one query: the policy service asks for every recipient."""
    return conn.execute(
        f"""SELECT a.id, a.user_id, d.verified AS domain_verified, {_QUOTA_COLUMNS}
              FROM agents a JOIN domains d ON d.id = a.domain_id JOIN users u ON u.id = a.user_id
                   {_USAGE_JOIN}
             WHERE a.email = lower(%s) AND a.deleted_at IS NULL""",
        (email,)).fetchone()
