"""Deliveries: one row per event and target (a subscription, or a cloud
agent's own webhook_url), claimed by workers with FOR UPDATE SKIP LOCKED."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

Row = dict[str, Any]

# next_attempt_at of the pending deliveries of a disabled subscription: out of
# the way of every claim (which reads the due ones in next_attempt_at order)
# until the subscription is on again.
PARKED = datetime(3000, 1, 1, tzinfo=UTC)


def insert_deliveries(conn: psycopg.Connection, rows: Iterable[Row]) -> None:
    """Rows of id, event_id, webhook_id, agent_id, origin. A dispatch row
    that exists already is skipped (one dispatch per event and target)."""
    with conn.cursor() as cur:
        cur.executemany(
            """INSERT INTO deliveries (id, event_id, webhook_id, agent_id, origin)
               VALUES (%(id)s, %(event_id)s, %(webhook_id)s, %(agent_id)s, %(origin)s)
               ON CONFLICT DO NOTHING""",
            list(rows))


def insert_delivery(conn: psycopg.Connection, delivery_id: str, event_id: str,
                    webhook_id: str, origin: str) -> Row:
    return conn.execute(
        """INSERT INTO deliveries (id, event_id, webhook_id, origin)
           VALUES (%s, %s, %s, %s) RETURNING *""",
        (delivery_id, event_id, webhook_id, origin)).fetchone()


def claim_due(conn: psycopg.Connection, limit: int, lease: timedelta) -> list[Row]:
    """Take up to ``limit`` due deliveries for one attempt each.

    The claim counts the attempt and moves ``next_attempt_at`` a lease into
    the future: once committed, other workers leave the rows alone until the
    lease ends, and a worker that dies mid-attempt leaves them to be tried
    again then. Deliveries to disabled subscriptions wait where they are.
    Each row carries what the attempt needs from the event and the target.
    """
    return conn.execute(
        """WITH due AS (
               SELECT d.id FROM deliveries d
                WHERE d.status = 'pending' AND d.next_attempt_at <= now()
                  AND (d.webhook_id IS NULL
                       OR EXISTS (SELECT 1 FROM webhooks w
                                   WHERE w.id = d.webhook_id AND w.enabled))
                ORDER BY d.next_attempt_at
                LIMIT %(limit)s
                  FOR UPDATE OF d SKIP LOCKED)
           UPDATE deliveries d
              SET attempts = d.attempts + 1, last_attempt_at = now(),
                  next_attempt_at = now() + %(lease)s
             FROM due, events e
            WHERE d.id = due.id AND e.id = d.event_id
        RETURNING d.id, d.event_id, d.webhook_id, d.agent_id, d.attempts, d.origin,
                  e.user_id, e.type, e.schema_version, e.data, e.message_id,
                  e.created_at AS event_created_at,
                  (SELECT email FROM agents a WHERE a.id = e.agent_id) AS event_agent_email""",
        {"limit": limit, "lease": lease}).fetchall()


def webhook_targets(conn: psycopg.Connection, webhook_ids: Sequence[str]) -> dict[str, Row]:
    """URL and secrets of these subscriptions; the previous secret only while
    its grace period lasts."""
    rows = conn.execute(
        """SELECT id, url, secret, generation,
                  CASE WHEN previous_secret_expires_at > now() THEN previous_secret END
                      AS previous_secret
             FROM webhooks WHERE id = ANY(%s)""",
        (list(webhook_ids),)).fetchall()
    return {r["id"]: r for r in rows}


def agent_targets(conn: psycopg.Connection, agent_ids: Sequence[str]) -> dict[str, Row]:
    rows = conn.execute(
        "SELECT id, user_id, agent_mode, webhook_url FROM agents WHERE id = ANY(%s)",
        (list(agent_ids),)).fetchall()
    return {r["id"]: r for r in rows}


def message_for_payload(conn: psycopg.Connection, message_id: str) -> Row | None:
    return conn.execute(
        """SELECT id, conversation_id, sender, to_recipients, cc, reply_to, recipient,
                  raw_message, auth_headers, created_at
             FROM messages WHERE id = %s""",
        (message_id,)).fetchone()


def record_delivered(conn: psycopg.Connection, delivery_id: str, attempt: int,
                     status_code: int | None) -> bool:
    """False when the row is no longer this attempt's (its lease ran out and
    another worker took it): the newer attempt's outcome stands."""
    cur = conn.execute(
        """UPDATE deliveries SET status = 'delivered', last_status_code = %s, last_error = ''
            WHERE id = %s AND attempts = %s AND status = 'pending'""",
        (status_code, delivery_id, attempt))
    return cur.rowcount == 1


def record_failed_attempt(conn: psycopg.Connection, delivery_id: str, attempt: int,
                          status_code: int | None, error: str,
                          retry_in: timedelta | None) -> bool:
    """A failed attempt: retried after ``retry_in``, or failed for good when
    None. False as for record_delivered."""
    cur = conn.execute(
        """UPDATE deliveries
              SET status = CASE WHEN %(retry)s::interval IS NULL THEN 'failed'
                                ELSE 'pending' END,
                  next_attempt_at = coalesce(now() + %(retry)s::interval, next_attempt_at),
                  last_status_code = %(code)s, last_error = %(error)s
            WHERE id = %(id)s AND attempts = %(attempt)s AND status = 'pending'""",
        {"retry": retry_in, "code": status_code, "error": error, "id": delivery_id,
         "attempt": attempt})
    return cur.rowcount == 1


def park_pending(conn: psycopg.Connection, webhook_id: str) -> None:
    conn.execute("""UPDATE deliveries SET next_attempt_at = %s
                     WHERE webhook_id = %s AND status = 'pending'""", (PARKED, webhook_id))


def resume_parked(conn: psycopg.Connection, webhook_id: str) -> None:
    conn.execute("""UPDATE deliveries SET next_attempt_at = now()
                     WHERE webhook_id = %s AND status = 'pending' AND next_attempt_at >= %s""",
                 (webhook_id, PARKED))


def set_message_webhook_state(conn: psycopg.Connection, message_id: str, status: str,
                              error: str, attempts: int) -> None:
    """The message's own view of its per-agent webhook delivery."""
    conn.execute(
        """UPDATE messages SET webhook_status = %s, webhook_error = %s, webhook_attempts = %s
            WHERE id = %s""",
        (status, error, attempts, message_id))


def set_messages_pending(conn: psycopg.Connection, message_ids: Sequence[str]) -> None:
    conn.execute(
        """UPDATE messages SET webhook_status = 'pending'
            WHERE id = ANY(%s) AND webhook_status = ''""",
        (list(message_ids),))


def list_for_webhook(conn: psycopg.Connection, webhook_id: str, status: str | None,
                     limit: int, after: tuple[Any, str] | None = None) -> list[Row]:
    """Newest first; ``after``: the (created_at, id) of the previous page's last."""
    after_at, after_id = after or (None, None)
    return conn.execute(
        """SELECT d.*, e.type AS event_type, e.data AS event_data FROM deliveries d
             JOIN events e ON e.id = d.event_id
            WHERE d.webhook_id = %(webhook_id)s
              AND (%(status)s::text IS NULL OR d.status = %(status)s)
              AND (%(after_at)s::timestamptz IS NULL
                   OR (d.created_at, d.id) < (%(after_at)s, %(after_id)s))
            ORDER BY d.created_at DESC, d.id DESC LIMIT %(limit)s""",
        {"webhook_id": webhook_id, "status": status, "limit": limit,
         "after_at": after_at, "after_id": after_id}).fetchall()


# Over a dispatched delivery d: whether one to the same subscription is pending.
_PENDING = """EXISTS (SELECT 1 FROM deliveries p
                       WHERE p.event_id = d.event_id AND p.webhook_id = d.webhook_id
                         AND p.status = 'pending') AS pending"""


def matched_webhooks(conn: psycopg.Connection, event_id: str) -> list[Row]:
    """The subscriptions the dispatcher matched this event to (the set a
    replay may target), with whether each has a delivery still pending."""
    return conn.execute(
        f"""SELECT w.id, w.enabled, {_PENDING}
             FROM deliveries d JOIN webhooks w ON w.id = d.webhook_id
            WHERE d.event_id = %s AND d.origin = 'dispatch'
            ORDER BY w.created_at, w.id""",
        (event_id,)).fetchall()


def matched_events_since(conn: psycopg.Connection, webhook_id: str,
                         since: datetime, not_before: datetime) -> list[Row]:
    """Events since ``since`` (and not before ``not_before``, the retention
    boundary) that the dispatcher matched to this subscription, each with
    whether a delivery to it is still pending."""
    return conn.execute(
        f"""SELECT d.event_id, {_PENDING}
             FROM deliveries d JOIN events e ON e.id = d.event_id
            WHERE d.webhook_id = %s AND d.origin = 'dispatch'
              AND e.created_at >= %s AND e.created_at >= %s
            ORDER BY e.created_at, e.id""",
        (webhook_id, since, not_before)).fetchall()


def status_counts(conn: psycopg.Connection, event_ids: Sequence[str]) -> dict[str, Row]:
    """Per event: how many subscriptions it matched and where the latest
    delivery to each stands (pending, delivered, failed)."""
    rows = conn.execute(
        """SELECT event_id, count(*) AS matched_webhooks,
                  count(*) FILTER (WHERE status = 'pending') AS pending,
                  count(*) FILTER (WHERE status = 'delivered') AS delivered,
                  count(*) FILTER (WHERE status = 'failed') AS failed
             FROM (SELECT DISTINCT ON (event_id, webhook_id) event_id, webhook_id, status
                     FROM deliveries
                    WHERE event_id = ANY(%s) AND webhook_id IS NOT NULL
                    ORDER BY event_id, webhook_id, created_at DESC, id DESC) latest
            GROUP BY event_id""",
        (list(event_ids),)).fetchall()
    return {r["event_id"]: r for r in rows}
