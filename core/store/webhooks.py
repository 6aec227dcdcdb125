"""Webhook subscriptions (account level)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

Row = dict[str, Any]

# What PATCH may change; the rest is the server's.
UPDATABLE = ("url", "description", "events", "filters", "enabled")


def insert_webhook(conn: psycopg.Connection, webhook_id: str, user_id: str, url: str,
                   description: str, events: Sequence[str], filters: Mapping[str, Any],
                   secret: str, generation: str = "legacy") -> Row:
    return conn.execute(
        """INSERT INTO webhooks (id, user_id, url, description, events, filters, secret,
                                 generation)
           VALUES (%s, %s, %s, %s, %s, %s, %s, %s) RETURNING *""",
        (webhook_id, user_id, url, description, list(events), Jsonb(dict(filters)),
         secret, generation)).fetchone()


def count_for_user(conn: psycopg.Connection, user_id: str) -> int:
    return conn.execute("SELECT count(*) AS n FROM webhooks WHERE user_id = %s",
                        (user_id,)).fetchone()["n"]


def webhooks_for_user(conn: psycopg.Connection, user_id: str) -> list[Row]:
    return conn.execute(
        "SELECT * FROM webhooks WHERE user_id = %s ORDER BY created_at, id",
        (user_id,)).fetchall()


def webhooks_page(conn: psycopg.Connection, user_id: str, *, limit: int,
                  after: tuple[Any, str] | None) -> list[Row]:
    """Newest first, keyset-paginated on (created_at, id) (the /v1 listing)."""
    if after is None:
        return conn.execute(
            """SELECT * FROM webhooks WHERE user_id = %s
                ORDER BY created_at DESC, id DESC LIMIT %s""", (user_id, limit)).fetchall()
    return conn.execute(
        """SELECT * FROM webhooks WHERE user_id = %s AND (created_at, id) < (%s, %s)
            ORDER BY created_at DESC, id DESC LIMIT %s""",
        (user_id, *after, limit)).fetchall()


def webhook_for_user(conn: psycopg.Connection, user_id: str, webhook_id: str, *,
                     lock: bool = False) -> Row | None:
    return conn.execute(
        "SELECT * FROM webhooks WHERE id = %s AND user_id = %s"
        + (" FOR UPDATE" if lock else ""),
        (webhook_id, user_id)).fetchone()


def update_webhook(conn: psycopg.Connection, webhook_id: str, changes: Mapping[str, Any]) -> Row:
    """Apply ``changes`` (keys from UPDATABLE). Switching a disabled
    subscription on clears its failure record; enabled=true on one that is
    on changes nothing (it must not reset a run of failures)."""
    unknown = set(changes) - set(UPDATABLE)
    if unknown:
        raise ValueError(f"not updatable: {sorted(unknown)}")
    values = {k: Jsonb(dict(v)) if k == "filters" else v for k, v in changes.items()}
    sets = [sql.SQL("{} = {}").format(sql.Identifier(k), sql.Placeholder(k)) for k in values]
    if values.get("enabled") is True:
        sets += [sql.SQL("auto_disabled_at = CASE WHEN enabled THEN auto_disabled_at END"),
                 sql.SQL("consecutive_failures = CASE WHEN enabled "
                         "THEN consecutive_failures ELSE 0 END"),
                 sql.SQL("failing_since = CASE WHEN enabled THEN failing_since END")]
    if not sets:
        return conn.execute("SELECT * FROM webhooks WHERE id = %s", (webhook_id,)).fetchone()
    query = sql.SQL("UPDATE webhooks SET {} WHERE id = {} RETURNING *").format(
        sql.SQL(", ").join(sets), sql.Placeholder("webhook_id"))
    return conn.execute(query, {**values, "webhook_id": webhook_id}).fetchone()


def delete_webhook(conn: psycopg.Connection, user_id: str, webhook_id: str) -> bool:
    """Its deliveries go with it (ON DELETE CASCADE)."""
    cur = conn.execute("DELETE FROM webhooks WHERE id = %s AND user_id = %s",
                       (webhook_id, user_id))
    return cur.rowcount == 1


def rotate_secret(conn: psycopg.Connection, webhook_id: str, secret: str,
                  grace: timedelta) -> Row:
    """The new secret signs from now on; the current one keeps signing
    alongside it for ``grace``."""
    return conn.execute(
        """UPDATE webhooks SET previous_secret = secret, secret = %s,
                  previous_secret_expires_at = now() + %s
            WHERE id = %s RETURNING *""",
        (secret, grace, webhook_id)).fetchone()


def enabled_for_users(conn: psycopg.Connection, user_ids: Sequence[str]) -> list[Row]:
    """What the dispatcher matches events against."""
    return conn.execute(
        """SELECT id, user_id, events, filters, generation FROM webhooks
            WHERE user_id = ANY(%s) AND enabled ORDER BY created_at, id""",
        (list(user_ids),)).fetchall()


def record_success(conn: psycopg.Connection, webhook_id: str) -> None:
    conn.execute(
        """UPDATE webhooks SET consecutive_failures = 0, failing_since = NULL,
                  last_delivered_at = now()
            WHERE id = %s""",
        (webhook_id,))


def record_failure(conn: psycopg.Connection, webhook_id: str, *, disable_after: int,
                   disable_window: timedelta) -> bool:
    """Count a failed attempt; switch the subscription off when it has failed
    at least ``disable_after`` times in a row over at least
    ``disable_window``. True when this call switched it off."""
    row = conn.execute(
        """UPDATE webhooks w
              SET consecutive_failures = w.consecutive_failures + 1,
                  failing_since = coalesce(w.failing_since, now()),
                  enabled = w.enabled AND NOT (
                      w.consecutive_failures + 1 >= %(after)s
                      AND coalesce(w.failing_since, now()) <= now() - %(window)s),
                  auto_disabled_at = CASE
                      WHEN w.enabled AND w.consecutive_failures + 1 >= %(after)s
                           AND coalesce(w.failing_since, now()) <= now() - %(window)s
                      THEN now() ELSE w.auto_disabled_at END
            WHERE w.id = %(id)s
        RETURNING w.enabled, w.auto_disabled_at = now() AS just_disabled""",
        {"id": webhook_id, "after": disable_after, "window": disable_window}).fetchone()
    return bool(row and row["just_disabled"])
