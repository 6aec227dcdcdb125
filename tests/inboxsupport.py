"""Set-up for the inbox API tests: paths, messages at chosen times, rows the
agent sent, labels, and the inbox state as the database holds it."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from e2a.core.db import single_connection
from e2a.core.store import messages as message_store


def agent_path(email: str) -> str:
    return "/api/v1/agents/" + email.replace("@", "%40")


def message_path(email: str, message_id: str) -> str:
    return f"{agent_path(email)}/messages/{message_id}"


def conversations_path(email: str, conversation_id: str = "") -> str:
    base = f"{agent_path(email)}/conversations"
    return f"{base}/{conversation_id}" if conversation_id else base


def set_created_at(cfg: Any, message_id: str, when: datetime) -> None:
    with single_connection(cfg) as conn:
        conn.execute("UPDATE messages SET created_at = %s WHERE id = %s", (when, message_id))


def make_outbound(cfg: Any, message_id: str, status: str = "sent") -> None:
    """Turn a stored row into one the agent sent (there is no send path yet)."""
    with single_connection(cfg) as conn:
        conn.execute("UPDATE messages SET direction = 'outbound', inbox_status = NULL, "
                     "status = %s WHERE id = %s", (status, message_id))


def set_labels(cfg: Any, message_id: str, labels: list[str]) -> None:
    with single_connection(cfg) as conn:
        message_store.set_labels(conn, message_id, labels)


def mark_read(cfg: Any, message_id: str) -> None:
    with single_connection(cfg) as conn:
        conn.execute("UPDATE messages SET inbox_status = 'read' WHERE id = %s", (message_id,))


def stored(cfg: Any, message_id: str) -> dict[str, Any]:
    with single_connection(cfg) as conn:
        return conn.execute("SELECT * FROM messages WHERE id = %s", (message_id,)).fetchone()
