"""The dashboard's browser sessions (sql/050), keyed by the HMAC of the
cookie's token."""

from __future__ import annotations

from typing import Any

import psycopg

Row = dict[str, Any]


def insert(conn: psycopg.Connection, token_hash: bytes, user_id: str, ttl_seconds: int) -> None:
    conn.execute(
        """INSERT INTO dashboard_sessions (token_hash, user_id, expires_at)
           VALUES (%s, %s, clock_timestamp() + make_interval(secs => %s))""",
        (token_hash, user_id, ttl_seconds))


def live(conn: psycopg.Connection, token_hash: bytes) -> Row | None:
    """The signed-in user (id, email, name) of a session neither ended nor expired."""
    return conn.execute(
        """SELECT u.id AS user_id, u.email, u.name
             FROM dashboard_sessions s JOIN users u ON u.id = s.user_id
            WHERE s.token_hash = %s AND s.ended_at IS NULL
              AND s.expires_at > clock_timestamp()""",
        (token_hash,)).fetchone()


def end(conn: psycopg.Connection, token_hash: bytes) -> None:
    conn.execute(
        """UPDATE dashboard_sessions SET ended_at = clock_timestamp()
            WHERE token_hash = %s AND ended_at IS NULL""", (token_hash,))
