"""Users and their API keys."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import psycopg

Row = dict[str, Any]


def create_user(conn: psycopg.Connection, user_id: str, email: str, name: str = "") -> Row:
    return conn.execute(
        "INSERT INTO users (id, email, name) VALUES (%s, %s, %s) RETURNING *",
        (user_id, email, name)).fetchone()


def user_by_email(conn: psycopg.Connection, email: str) -> Row | None:
    return conn.execute("SELECT * FROM users WHERE lower(email) = lower(%s)",
                        (email,)).fetchone()


def user_by_id(conn: psycopg.Connection, user_id: str) -> Row | None:
    return conn.execute("SELECT * FROM users WHERE id = %s", (user_id,)).fetchone()


def create_api_key(conn: psycopg.Connection, key_id: str, user_id: str, key_hash: bytes,
                   key_prefix: str, name: str = "", agent_id: str | None = None,
                   expires_at: datetime | None = None) -> Row:
    return conn.execute(
        """INSERT INTO api_keys (id, user_id, agent_id, name, key_hash, key_prefix, expires_at)
           VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING *""",
        (key_id, user_id, agent_id, name, key_hash, key_prefix, expires_at)).fetchone()


# A key's last use is recorded at most once a minute (docs/contract.md).
_USE_UNRECORDED = "(k.last_used_at IS NULL OR k.last_used_at < now() - interval '1 minute')"


def api_key_by_hash(conn: psycopg.Connection, key_hash: bytes) -> Row | None:
    """The live key with this digest, with its owner's id and agent scope;
    ``use_unrecorded``: its last_used_at is older than touch_api_key's minute."""
    return conn.execute(
        f"""SELECT k.*, u.email AS user_email, {_USE_UNRECORDED} AS use_unrecorded
             FROM api_keys k JOIN users u ON u.id = k.user_id
            WHERE k.key_hash = %s AND k.revoked_at IS NULL
              AND (k.expires_at IS NULL OR k.expires_at > now())""",
        (key_hash,)).fetchone()


def api_key_is_live(conn: psycopg.Connection, key_id: str) -> bool:
    """The key exists, is not revoked and has not expired."""
    return conn.execute("SELECT 1 FROM api_keys WHERE id = %s AND revoked_at IS NULL"
                        " AND (expires_at IS NULL OR expires_at > now())",
                        (key_id,)).fetchone() is not None


def touch_api_key(conn: psycopg.Connection, key_id: str) -> None:
    # Once a minute is precise enough and spares a write on every request;
    # the condition again here: a concurrent request may have written it.
    conn.execute(
        f"""UPDATE api_keys k SET last_used_at = now()
            WHERE id = %s AND {_USE_UNRECORDED}""",
        (key_id,))


def lock_user(conn: psycopg.Connection, user_id: str) -> bool:
    """Serialize changes to one user's account until the transaction ends
    (counted caps such as "at most 5 signing secrets" stay exact under
    concurrent requests). False when the user is gone."""
    return conn.execute("SELECT id FROM users WHERE id = %s FOR UPDATE",
                        (user_id,)).fetchone() is not None
