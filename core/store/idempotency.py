"""Idempotency keys: one row per (user, key), claimed by the first request
that uses the key and holding its answer once it has one."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

Row = dict[str, Any]

# A row older than ``retention`` is forgotten (housekeeping deletes it later);
# a claim without an answer older than ``stale`` belonged to a request that
# died without releasing it.
_REUSABLE = """(k.created_at < now() - %(retention)s
                OR (k.status_code IS NULL AND k.created_at < now() - %(stale)s))"""


def insert_claim(conn: psycopg.Connection, user_id: str, key: str,
                 request_hash: bytes) -> bool:
    """Claim a key nobody holds; False when a row for it exists (committed:
    a claim in flight elsewhere is waited for by the unique index)."""
    row = conn.execute(
        """INSERT INTO idempotency_keys (user_id, key, request_hash) VALUES (%s, %s, %s)
           ON CONFLICT (user_id, key) DO NOTHING RETURNING true AS claimed""",
        (user_id, key, request_hash)).fetchone()
    return row is not None


def get(conn: psycopg.Connection, user_id: str, key: str, *, retention: timedelta,
        stale: timedelta) -> Row | None:
    """The key's row with ``reusable`` (expired, or a dead claim); a plain
    read that never waits for the request holding it."""
    return conn.execute(
        f"""SELECT k.request_hash, k.status_code, k.response, {_REUSABLE} AS reusable,
                   (k.confirmed OR k.created_at < now() - %(stale)s) AS settled
              FROM idempotency_keys k WHERE k.user_id = %(user_id)s AND k.key = %(key)s""",
        {"user_id": user_id, "key": key, "retention": retention, "stale": stale}).fetchone()


def take_over(conn: psycopg.Connection, user_id: str, key: str, request_hash: bytes, *,
              retention: timedelta, stale: timedelta) -> bool:
    """Claim anew a key whose row is reusable; False when it is not (any more)."""
    row = conn.execute(
        f"""UPDATE idempotency_keys k
               SET request_hash = %(hash)s, status_code = NULL, response = NULL,
                   confirmed = true, created_at = now()
             WHERE k.user_id = %(user_id)s AND k.key = %(key)s AND {_REUSABLE}
            RETURNING true AS claimed""",
        {"user_id": user_id, "key": key, "hash": request_hash, "retention": retention,
         "stale": stale}).fetchone()
    return row is not None


def finish(conn: psycopg.Connection, user_id: str, key: str, status_code: int,
           response: dict[str, Any], *, confirmed: bool = True) -> None:
    conn.execute(
        """UPDATE idempotency_keys SET status_code = %s, response = %s, confirmed = %s
            WHERE user_id = %s AND key = %s""",
        (status_code, Jsonb(response), confirmed, user_id, key))


def confirm(conn: psycopg.Connection, user_id: str, key: str) -> None:
    conn.execute("UPDATE idempotency_keys SET confirmed = true WHERE user_id = %s AND key = %s",
                 (user_id, key))


def forget(conn: psycopg.Connection, user_id: str, key: str) -> None:
    """Drop the key, answered or not."""
    conn.execute("DELETE FROM idempotency_keys WHERE user_id = %s AND key = %s", (user_id, key))


def release(conn: psycopg.Connection, user_id: str, key: str) -> None:
    """Drop a claim that got no answer, so the key can be used again."""
    conn.execute(
        "DELETE FROM idempotency_keys WHERE user_id = %s AND key = %s AND status_code IS NULL",
        (user_id, key))
