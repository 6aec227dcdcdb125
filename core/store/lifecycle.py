"""Message lifecycle transitions (sql/035): each step a message took, in
the /v1 vocabulary (core/messages/lifecycle.py owns it)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

Row = dict[str, Any]


def insert(conn: psycopg.Connection, transition_id: str, message_id: str, direction: str,
           stage: str, outcome: str, reason_code: str, *, retryable: bool,
           recipient: str, evidence: dict[str, Any],
           correlation_ids: dict[str, str]) -> bool:
    """False when this once-only step was recorded already (its trigger repeated)."""
    return conn.execute(
        """INSERT INTO message_lifecycle (id, message_id, direction, stage, outcome,
                                          reason_code, retryable, recipient, evidence,
                                          correlation_ids)
           VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
           ON CONFLICT DO NOTHING""",
        (transition_id, message_id, direction, stage, outcome, reason_code, retryable,
         recipient, Jsonb(evidence), Jsonb(correlation_ids))).rowcount == 1


def for_message(conn: psycopg.Connection, message_id: str, *, limit: int,
                after: tuple[datetime, str] | None = None) -> list[Row]:
    """A message's transitions in the order they happened, (occurred_at, id)
    past ``after``. The caller has checked that the message is the caller's."""
    if after is None:
        return conn.execute(
            """SELECT * FROM message_lifecycle WHERE message_id = %s
                ORDER BY occurred_at, id LIMIT %s""", (message_id, limit)).fetchall()
    return conn.execute(
        """SELECT * FROM message_lifecycle
            WHERE message_id = %s AND (occurred_at, id) > (%s, %s)
            ORDER BY occurred_at, id LIMIT %s""",
        (message_id, after[0], after[1], limit)).fetchall()
