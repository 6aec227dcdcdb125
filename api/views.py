"""Rows as the wire shows them (reference/e2a-v1-api.txt).

Absent values are empty strings or arrays, never null: 2.x SDKs deserialize
into non-optional fields.
"""

from __future__ import annotations

import base64
from typing import Any

from e2a.core.accounts import domaindns
from e2a.core.config import Config
from e2a.core.outbound import screening
from e2a.core.protection import config as protection
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
        # Inbox state for inbound rows; empty on outbound ones, as in e2a.
        "status": (row["inbox_status"] or "") if inbound else "",
        "webhook_error": row["webhook_error"],
        # Enumerations, left out when empty as e2a does: the 2.x Python SDK
        # validates them against their values, and "" fails the whole page.
        **_present("hitl_status", "" if inbound else (row["status"] or "")),
        **_present("webhook_status", row["webhook_status"]),
    }


def _present(key: str, value: str) -> dict[str, str]:
    return {key: value} if value else {}


# MessageDetail shares these with MessageSummary, under the same rules.
_DETAIL_FROM_SUMMARY = ("message_id", "conversation_id", "created_at", "from", "to", "cc",
                        "reply_to", "recipient", "subject", "status", "labels")


def message_detail(row: dict[str, Any]) -> dict[str, Any]:
    summary = message_summary(row)
    raw = row["raw_message"]
    return {
        **{key: summary[key] for key in _DETAIL_FROM_SUMMARY},
        "auth_headers": dict(row["auth_headers"] or {}),
        # The stored bytes exactly: X-E2A-Auth-Body-Hash is their SHA-256.
        "raw_message": base64.b64encode(bytes(raw)).decode("ascii") if raw is not None else "",
    }


def labels_update(message_id: str, labels: list[str]) -> dict[str, Any]:
    return {"message_id": message_id, "labels": labels}


def conversation_summary(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "conversation_id": row["conversation_id"],
        "first_message_at": rfc3339(row["first_message_at"]),
        "last_message_at": rfc3339(row["last_message_at"]),
        "message_count": row["message_count"],
        "inbound_count": row["inbound_count"],
        "outbound_count": row["outbound_count"],
        "has_unread": row["has_unread"],
        "latest_subject": row["latest_subject"],
        "latest_sender": row["latest_sender"],
    }


def conversation_detail(row: dict[str, Any], members: list[dict[str, Any]], *,
                        participants: list[str], labels: list[str]) -> dict[str, Any]:
    return {**conversation_summary(row), "participants": participants, "labels": labels,
            "messages": [message_summary(m) for m in members]}


def domain(cfg: Config, row: dict[str, Any]) -> dict[str, Any]:
    """A Domain. ``agent_count`` is filled by the list only (0 elsewhere), as in e2a."""
    return {
        "domain": row["domain"],
        "verified": row["verified"],
        "verification_token": row["verification_token"],
        "dns_records": domaindns.records(cfg, row),
        "created_at": rfc3339(row["created_at"]),
        "verified_at": rfc3339(row["verified_at"]),
        "is_primary": row["is_primary"],
        "last_checked_at": rfc3339(row["last_checked_at"]),
        "agent_count": row.get("agent_count", 0),
    }


def domain_verification(row: dict[str, Any], probe: domaindns.Probe) -> dict[str, Any]:
    """A VerifyDomainResponse: the stored outcome plus what each probe saw."""
    return {
        "domain": row["domain"],
        "verified": row["verified"],
        "verified_at": rfc3339(row["verified_at"]) if row["verified"] else "",
        "mx": probe.mx,
        "spf": probe.spf,
        "dkim": probe.dkim,
    }


def agent(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "email": row["email"],
        "name": row["name"],
        "domain": row["domain"],
        "domain_verified": row["domain_verified"],
        "agent_mode": row["agent_mode"],
        "webhook_url": row["webhook_url"],
        "hitl_enabled": protection.legacy_hitl_enabled(protection.of_agent(row)),
        "hitl_ttl_seconds": row["hitl_ttl_seconds"],
        "hitl_expiration_action": row["hitl_expiration_action"],
        "created_at": rfc3339(row["created_at"]),
    }


def notification(row: dict[str, Any]) -> dict[str, Any]:
    """The WebSocket frame announcing one inbound message (docs/contract.md)."""
    return {
        "message_id": row["id"],
        "conversation_id": row["conversation_id"] or "",
        "from": row["sender"],
        "recipient": row["recipient"],
        "subject": row["subject"],
        "received_at": rfc3339(row["created_at"]),
    }


def pending_summary(row: dict[str, Any]) -> dict[str, Any]:
    """A PendingMessageSummary: a held message without its content."""
    return {
        "id": row["id"],
        "agent_id": row["agent_id"],
        "direction": row["direction"],
        "type": row["type"],
        "status": row["status"],
        "to": list(row["to_recipients"] or []),
        "cc": list(row["cc"] or []),
        "bcc": list(row["bcc"] or []),
        "subject": row["subject"],
        "conversation_id": row["conversation_id"] or "",
        "approval_expires_at": rfc3339(row["approval_expires_at"]),
        "created_at": rfc3339(row["created_at"]),
        # Why it waits (a gate, a scan, or the agent holds everything).
        "hold_reason": dict(row.get("hold_reason") or screening.SEND_HOLD),
    }


def pending_detail(row: dict[str, Any], replied_to: dict[str, Any] | None) -> dict[str, Any]:
    """A PendingMessageDetail. The body and attachments are there while the
    message is held (a terminal transition wipes them: empty then);
    ``inbound`` only for a reply whose received message is still stored."""
    detail = {
        **pending_summary(row),
        "body_text": row["body_text"] or "",
        "body_html": row["body_html"] or "",
        "attachments": list(row["attachments"] or []),
        "email_message_id": row["email_message_id"],
        "edited": row["edited"],
        "method": row["method"],
        "provider_message_id": row["provider_message_id"],
        "rejection_reason": row["rejection_reason"],
        "reviewed_at": rfc3339(row["reviewed_at"]),
        "reviewed_by_user_id": row["reviewed_by_user_id"] or "",
        "reviewed_by_name": row["reviewed_by_name"] or "",
    }
    if replied_to is not None:
        detail["inbound"] = {
            "sender": replied_to["sender"],
            "subject": replied_to["subject"],
            "created_at": rfc3339(replied_to["created_at"]),
            "auth_headers": {"spf": replied_to["spf"], "dkim": replied_to["dkim"],
                             "dmarc": replied_to["dmarc"]},
        }
    return detail
