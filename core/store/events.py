"""The event outbox."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.types.json import Jsonb


def insert_event(conn: psycopg.Connection, event_id: str, user_id: str, type_: str,
                 data: dict[str, Any], *, agent_id: str | None = None,
                 message_id: str | None = None, conversation_id: str | None = None) -> None:
    conn.execute(
        """INSERT INTO events (id, user_id, agent_id, message_id, conversation_id, type, data)
           VALUES (%s, %s, %s, %s, %s, %s, %s)""",
        (event_id, user_id, agent_id, message_id, conversation_id, type_, Jsonb(data)))
