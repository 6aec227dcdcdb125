"""Per-user signing secrets."""

from __future__ import annotations

from typing import Any

import psycopg


def newest_secret(conn: psycopg.Connection, user_id: str) -> str | None:
    row = conn.execute(
        """SELECT secret FROM signing_secrets WHERE user_id = %s
            ORDER BY created_at DESC, id DESC LIMIT 1""",
        (user_id,)).fetchone()
    return row["secret"] if row else None


def secrets_of(conn: psycopg.Connection, user_id: str) -> list[str]:
    """Every secret the user has, newest first: a magic link signed with any
    of them still verifies; one signed with a deleted secret no longer does."""
    rows = conn.execute(
        """SELECT secret FROM signing_secrets WHERE user_id = %s
            ORDER BY created_at DESC, id DESC""",
        (user_id,)).fetchall()
    return [row["secret"] for row in rows]


# Everything but the secret itself: lists and exports never carry it.
_SUMMARY_COLUMNS = """id, user_id, name, left(secret, 12) AS secret_prefix, created_at,
                      last_signed_at"""


def list_secrets(conn: psycopg.Connection, user_id: str) -> list[dict[str, Any]]:
    """Newest first: the first one is the one that signs."""
    return conn.execute(
        f"""SELECT {_SUMMARY_COLUMNS} FROM signing_secrets WHERE user_id = %s
             ORDER BY created_at DESC, id DESC""",
        (user_id,)).fetchall()


def count_secrets(conn: psycopg.Connection, user_id: str) -> int:
    row = conn.execute("SELECT count(*) AS n FROM signing_secrets WHERE user_id = %s",
                       (user_id,)).fetchone()
    return row["n"]


def create_secret(conn: psycopg.Connection, secret_id: str, user_id: str, name: str,
                  secret: str) -> dict[str, Any]:
    return conn.execute(
        f"""INSERT INTO signing_secrets (id, user_id, name, secret) VALUES (%s, %s, %s, %s)
            RETURNING {_SUMMARY_COLUMNS}""",
        (secret_id, user_id, name, secret)).fetchone()


def secret_exists(conn: psycopg.Connection, user_id: str, secret_id: str) -> bool:
    return conn.execute("SELECT 1 FROM signing_secrets WHERE id = %s AND user_id = %s",
                        (secret_id, user_id)).fetchone() is not None


def delete_secret(conn: psycopg.Connection, user_id: str, secret_id: str) -> bool:
    cur = conn.execute("DELETE FROM signing_secrets WHERE id = %s AND user_id = %s",
                       (secret_id, user_id))
    return cur.rowcount == 1
