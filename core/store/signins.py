"""The dashboard's sign-in links (sql/050): one row per link sent, keyed
by the HMAC of its token."""

from __future__ import annotations

from typing import Any

import psycopg

Row = dict[str, Any]


def insert(conn: psycopg.Connection, token_hash: bytes, user_id: str, ttl_seconds: int) -> None:
    conn.execute(
        """INSERT INTO dashboard_signins (token_hash, user_id, expires_at)
           VALUES (%s, %s, clock_timestamp() + make_interval(secs => %s))""",
        (token_hash, user_id, ttl_seconds))


def redeem(conn: psycopg.Connection, token_hash: bytes) -> Row | None:
    """Use the link up: its user (id, email), or None when it is unknown,
    used already or expired. One statement, so of two redemptions racing
    one finds it used."""
    return conn.execute(
        """UPDATE dashboard_signins s SET used_at = clock_timestamp()
             FROM users u
            WHERE s.token_hash = %s AND s.used_at IS NULL
              AND s.expires_at > clock_timestamp() AND u.id = s.user_id
        RETURNING u.id AS user_id, u.email""",
        (token_hash,)).fetchone()
