"""The event outbox."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

# Notified (on commit) whenever an event or a delivery is queued: the
# workers LISTEN here and deliver at once instead of at their next poll.
EVENTS_CHANNEL = "e2a_events"


def insert_event(conn: psycopg.Connection, event_id: str, user_id: str, type_: str,
                 data: dict[str, Any], *, agent_id: str | None = None,
                 message_id: str | None = None, conversation_id: str | None = None) -> None:
    # The workers' wake-up (notify_workers) in the same statement: one round trip.
    conn.execute(
        """WITH e AS (INSERT INTO events (id, user_id, agent_id, message_id, conversation_id,
                                          type, data)
                      VALUES (%s, %s, %s, %s, %s, %s, %s))
           SELECT pg_notify(%s, '')""",
        (event_id, user_id, agent_id, message_id, conversation_id, type_, Jsonb(data),
         EVENTS_CHANNEL))


def insert_event_once(conn: psycopg.Connection, event_id: str, user_id: str, type_: str,
                      data: dict[str, Any], *, agent_id: str | None = None,
                      message_id: str | None = None) -> bool:
    """``insert_event`` under an id derived from what it reports: a retry of
    the same trigger writes nothing. Whether it was written."""
    written = conn.execute(
        """INSERT INTO events (id, user_id, agent_id, message_id, type, data)
           VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (id) DO NOTHING""",
        (event_id, user_id, agent_id, message_id, type_, Jsonb(data))).rowcount == 1
    if written:
        notify_workers(conn)
    return written


def notify_workers(conn: psycopg.Connection) -> None:
    """Postgres sends it on commit, once per transaction however often it is
    called (same channel, same payload)."""
    conn.execute("SELECT pg_notify(%s, '')", (EVENTS_CHANNEL,))


def insert_synthetic_event(conn: psycopg.Connection, event_id: str, user_id: str,
                           type_: str, data: dict[str, Any]) -> dict[str, Any]:
    """A test event: born dispatched (it goes to one subscription only, by an
    explicit delivery) and never listed."""
    return conn.execute(
        """INSERT INTO events (id, user_id, type, data, synthetic, dispatched_at)
           VALUES (%s, %s, %s, %s, true, now()) RETURNING *""",
        (event_id, user_id, type_, Jsonb(data))).fetchone()


def undispatched(conn: psycopg.Connection, limit: int) -> list[dict[str, Any]]:
    """The oldest events not yet fanned out, locked for this transaction;
    rows another worker holds are skipped. With each: the labels of its
    message and the mode and webhook of its agent, as they are now."""
    return conn.execute(
        """SELECT e.id, e.user_id, e.agent_id, e.message_id, e.conversation_id, e.type,
                  e.data, coalesce(m.labels, '{}') AS labels, a.agent_mode, a.webhook_url
             FROM events e
             LEFT JOIN messages m ON m.id = e.message_id
             LEFT JOIN agents a ON a.id = e.agent_id
            WHERE e.dispatched_at IS NULL
            ORDER BY e.created_at
            LIMIT %s
              FOR UPDATE OF e SKIP LOCKED""",
        (limit,)).fetchall()


def mark_dispatched(conn: psycopg.Connection, event_ids: list[str]) -> None:
    conn.execute("UPDATE events SET dispatched_at = now() WHERE id = ANY(%s)", (event_ids,))


@dataclass(frozen=True)
class EventFilter:
    """Which of a user's events a listing holds; empty fields do not narrow."""

    type: str = ""
    types: tuple[str, ...] = ()  # any of these (the /v1 names cover several)
    agent_id: str = ""
    conversation_id: str = ""
    message_id: str = ""
    since: datetime | None = None  # created_at >= since
    until: datetime | None = None  # created_at < until


_EVENT_COLUMNS = """id, type, schema_version, created_at, agent_id, conversation_id,
                    message_id, data, dispatched_at,
                    (SELECT email FROM agents a WHERE a.id = events.agent_id) AS agent_email"""


def list_for_user(conn: psycopg.Connection, user_id: str, filt: EventFilter, *,
                  not_before: datetime, limit: int,
                  after: tuple[datetime, str] | None) -> list[dict[str, Any]]:
    """Newest first, keyset-paginated on (created_at, id) like messages;
    nothing older than ``not_before`` (the retention boundary)."""
    clauses = ["user_id = %(user_id)s", "NOT synthetic", "created_at >= %(not_before)s"]
    params: dict[str, Any] = {"user_id": user_id, "not_before": not_before, "limit": limit}
    for column in ("type", "agent_id", "conversation_id", "message_id"):
        value = getattr(filt, column)
        if value:
            clauses.append(f"{column} = %({column})s")
            params[column] = value
    if filt.types:
        clauses.append("type = ANY(%(types)s)")
        params["types"] = list(filt.types)
    if filt.since:
        clauses.append("created_at >= %(since)s")
        params["since"] = filt.since
    if filt.until:
        clauses.append("created_at < %(until)s")
        params["until"] = filt.until
    if after:
        clauses.append("(created_at, id) < (%(after_at)s, %(after_id)s)")
        params["after_at"], params["after_id"] = after
    return conn.execute(
        f"""SELECT {_EVENT_COLUMNS} FROM events WHERE {' AND '.join(clauses)}
             ORDER BY created_at DESC, id DESC LIMIT %(limit)s""",
        params).fetchall()


def event_for_user(conn: psycopg.Connection, user_id: str,
                   event_id: str) -> dict[str, Any] | None:
    """Any age (the caller tells expired from live); test events are not events."""
    return conn.execute(
        f"""SELECT {_EVENT_COLUMNS} FROM events
             WHERE id = %s AND user_id = %s AND NOT synthetic""",
        (event_id, user_id)).fetchone()


def received_for_messages(conn: psycopg.Connection,
                          message_ids: list[str]) -> dict[str, dict[str, Any]]:
    """The ``email.received`` event of each of these messages, by message id
    (the /v1 WebSocket frames them, so a frame and a webhook delivery of the
    same mail carry the same event id)."""
    rows = conn.execute(
        f"""SELECT {_EVENT_COLUMNS} FROM events
             WHERE message_id = ANY(%s) AND type = 'email.received' AND NOT synthetic""",
        (message_ids,)).fetchall()
    return {r["message_id"]: r for r in rows}
