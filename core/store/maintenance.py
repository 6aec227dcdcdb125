"""Deleting what has outlived its retention, in batches several workers can
share: rows another worker has locked are skipped, not waited for."""

from __future__ import annotations

from datetime import timedelta

import psycopg

# table -> (its primary key columns, the timestamp that ages it)
PURGEABLE: dict[str, tuple[str, str]] = {
    "idempotency_keys": ("user_id, key", "created_at"),
    "rate_limits": ("bucket, window_start", "window_start"),
    "events": ("id", "created_at"),
    "owner_notifications": ("user_id, sent_at", "sent_at"),
    # The trash (sql/020, sql/021): only trashed rows have a deleted_at.
    "messages": ("id", "deleted_at"),
    "agents": ("id", "deleted_at"),
    # The dashboard's sign-in links and sessions (sql/050), once expired.
    "dashboard_signins": ("token_hash", "expires_at"),
    "dashboard_sessions": ("token_hash", "expires_at"),
}


def purge_older_than(conn: psycopg.Connection, table: str, age: timedelta, limit: int) -> int:
    """Delete up to ``limit`` of the oldest rows older than ``age``; the count deleted."""
    keys, stamp = PURGEABLE[table]
    cur = conn.execute(
        f"""DELETE FROM {table} WHERE ({keys}) IN (
                SELECT {keys} FROM {table}
                 WHERE {stamp} < now() - %s
                 ORDER BY {stamp} LIMIT %s
                   FOR UPDATE SKIP LOCKED)""",
        (age, limit))
    return cur.rowcount
