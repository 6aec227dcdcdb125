"""Webhook subscriptions, their deliveries and events as the wire shows them
(WebhookResponse, WebhookDeliveryResponse, WebhookEvent in
reference/e2a-v1-api.txt). As in api/views.py: absent values are empty
strings, arrays or zero, never null."""

from __future__ import annotations

from typing import Any

from e2a.core.store.deliveries import PARKED
from e2a.core.timefmt import rfc3339
from e2a.core.webhooks.subscriptions import FILTER_KEYS


def webhook(row: dict[str, Any], *, secret: str = "") -> dict[str, Any]:
    """``secret`` only at creation: no other answer carries it."""
    filters = row["filters"] or {}
    out = {
        "id": row["id"],
        "url": row["url"],
        "description": row["description"],
        "events": list(row["events"] or []),
        "filters": {key: list(filters.get(key) or []) for key in FILTER_KEYS},
        "enabled": row["enabled"],
        "auto_disabled_at": rfc3339(row["auto_disabled_at"]),
        "created_at": rfc3339(row["created_at"]),
        "last_delivered_at": rfc3339(row["last_delivered_at"]),
    }
    if secret:
        out["signing_secret"] = secret
    return out


def rotation(row: dict[str, Any], secret: str) -> dict[str, Any]:
    return {"signing_secret": secret,
            "previous_secret_expires_at": rfc3339(row["previous_secret_expires_at"])}


def delivery(row: dict[str, Any]) -> dict[str, Any]:
    # A parked delivery (its subscription is off) has no next try yet.
    scheduled = row["status"] == "pending" and row["next_attempt_at"] < PARKED
    return {
        "id": row["id"],
        "event_id": row["event_id"],
        "event_type": row["event_type"],
        "status": row["status"],
        "attempts": row["attempts"],
        "last_error": row["last_error"],
        "last_status_code": row["last_status_code"] or 0,
        "last_attempt_at": rfc3339(row["last_attempt_at"]),
        "next_retry_at": rfc3339(row["next_attempt_at"]) if scheduled else "",
        "created_at": rfc3339(row["created_at"]),
    }


def _event_status(row: dict[str, Any], counts: dict[str, int]) -> str:
    """pending until every subscription it matched has its answer; then
    failed if one gave up, else delivered; dispatched when none matched."""
    if row["dispatched_at"] is None or counts["pending"]:
        return "pending"
    if counts["failed"]:
        return "failed"
    return "delivered" if counts["matched_webhooks"] else "dispatched"


def event(row: dict[str, Any], counts: dict[str, Any] | None) -> dict[str, Any]:
    status = {key: int((counts or {}).get(key) or 0)
              for key in ("matched_webhooks", "delivered", "pending", "failed")}
    return {
        "id": row["id"],
        "type": row["type"],
        "schema_version": row["schema_version"],
        "created_at": rfc3339(row["created_at"]),
        "agent_id": row["agent_id"] or "",
        "conversation_id": row["conversation_id"] or "",
        "message_id": row["message_id"] or "",
        "status": _event_status(row, status),
        "data": dict(row["data"] or {}),
        "delivery_status": status,
    }
