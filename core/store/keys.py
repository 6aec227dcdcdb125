"""API key administration (creation and the lookup by digest are in users.py)."""

from __future__ import annotations

from typing import Any

import psycopg

Row = dict[str, Any]

# Never the digest: nothing outside authentication needs it.
_COLUMNS = """k.id, k.user_id, k.agent_id, k.name, k.key_prefix, k.created_at,
              k.last_used_at, k.revoked_at, k.expires_at, a.email AS agent_email"""


def keys_for_user(conn: psycopg.Connection, user_id: str) -> list[Row]:
    return conn.execute(
        f"""SELECT {_COLUMNS} FROM api_keys k LEFT JOIN agents a ON a.id = k.agent_id
             WHERE k.user_id = %s ORDER BY k.created_at, k.id""",
        (user_id,)).fetchall()


def key_by_id(conn: psycopg.Connection, key_id: str) -> Row | None:
    return conn.execute(
        f"""SELECT {_COLUMNS} FROM api_keys k LEFT JOIN agents a ON a.id = k.agent_id
             WHERE k.id = %s""",
        (key_id,)).fetchone()


def revoke_key(conn: psycopg.Connection, key_id: str) -> bool:
    """True when this call revoked it; False when it was revoked already."""
    return conn.execute(
        "UPDATE api_keys SET revoked_at = now() WHERE id = %s AND revoked_at IS NULL",
        (key_id,)).rowcount == 1
