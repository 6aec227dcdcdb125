"""Per-user signing secrets."""

from __future__ import annotations

import psycopg


def newest_secret(conn: psycopg.Connection, user_id: str) -> str | None:
    row = conn.execute(
        """SELECT secret FROM signing_secrets WHERE user_id = %s
            ORDER BY created_at DESC, id DESC LIMIT 1""",
        (user_id,)).fetchone()
    return row["secret"] if row else None
