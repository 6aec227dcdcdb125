"""Rows as the wire shows them (reference/e2a-v1-api.txt).

Absent values are empty strings or arrays, never null: 2.x SDKs deserialize
into non-optional fields.
"""

from __future__ import annotations

from typing import Any

from e2a.core.timefmt import rfc3339


def message_summary(row: dict[str, Any]) -> dict[str, Any]:
    inbound = row["direction"] == "inbound"
    return {
        "message_id": row["id"],
        "conversation_id": row["conversation_id"] or "",
        "created_at": rfc3339(row["created_at"]),
        "direction": row["direction"],
        "from": row["sender"],
        "to": list(row["to_recipients"] or []),
        "cc": list(row["cc"] or []),
        "reply_to": list(row["reply_to"] or []),
        "recipient": row["recipient"],
        "subject": row["subject"],
        "labels": list(row["labels"] or []),
        "size_bytes": row["size_bytes"],
        # Inbox state for inbound rows, HITL state for outbound ones; each is
        # empty on the other direction, as in e2a.
        "status": (row["inbox_status"] or "") if inbound else "",
        "hitl_status": "" if inbound else (row["status"] or ""),
        "webhook_status": row["webhook_status"],
        "webhook_error": row["webhook_error"],
    }
