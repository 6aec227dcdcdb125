"""Rows as /v1 shows them (reference/e2a-v1-current.md §3). Required
nullable fields are present as null; optional ones are left out when empty."""

from __future__ import annotations

import base64
from typing import Any

from e2a.core.mail import parts as mailparts
from e2a.core.mailauth import evidence
from e2a.core.timefmt import rfc3339

VERSION = "e2a-postfix"


def _dt(moment: Any) -> str | None:
    return rfc3339(moment) if moment is not None else None


def agent(row: dict[str, Any]) -> dict[str, Any]:
    view = {"email": row["email"], "name": row["name"], "domain": row["domain"],
            # Subdomain agents do not exist here: the registered domain is its own.
            "registered_domain": row["domain"], "domain_verified": row["domain_verified"],
            "created_at": rfc3339(row["created_at"])}
    if row.get("deleted_at") is not None:
        view["deleted_at"] = rfc3339(row["deleted_at"])
    return view


def _delivery_status(row: dict[str, Any]) -> str | None:
    if row["direction"] != "outbound" or row.get("status") == "pending_approval":
        return None
    return _DELIVERY.get(row.get("delivery_status") or "",
                         "sent" if row.get("status") == "sent" else None)


# Ours (core/store/outbound.py) -> /v1's accepted -> sending -> sent ->
# delivered | deferred | bounced | failed. Recorded but not yet confirmed by
# Postfix's submit service is "accepted"; in Postfix, before its content
# filter passed it on, "sending"; "sent" once the queue that goes to the
# internet has it. "unconfirmed" (core/outbound/reconcile.py) is not known to
# have failed: still "accepted", its delivery_detail says what is wrong.
_DELIVERY = {"submitting": "accepted", "unconfirmed": "accepted", "queued": "sending",
             "sent": "sent", "deferred": "deferred", "delivered": "delivered",
             "bounced": "bounced", "failed": "failed"}


# Our HITL statuses in the /v1 review vocabulary.
_REVIEW = {"pending_approval": "pending_review", "rejected": "review_rejected",
           "expired_approved": "review_expired_approved",
           "expired_rejected": "review_expired_rejected"}


def message_summary(row: dict[str, Any]) -> dict[str, Any]:
    inbound = row["direction"] == "inbound"
    view: dict[str, Any] = {
        "id": row["id"],
        "direction": row["direction"],
        "created_at": rfc3339(row["created_at"]),
        "subject": row["subject"],
        "conversation_id": row["conversation_id"] or "",
        "to": list(row["to_recipients"] or []),
        "cc": list(row["cc"] or []),
        "reply_to": list(row["reply_to"] or []) if inbound else [],
        "delivered_to": row["recipient"] if inbound else "",
        "header_from": row["sender"] or None,
        "envelope_from": (row.get("envelope_sender") or None) if inbound else None,
        "verified_domain": evidence.verified_domain(row),
        "read_status": (row["inbox_status"] or "") if inbound else "",
        "labels": list(row["labels"] or []),
        "size_bytes": row["size_bytes"],
    }
    status = _delivery_status(row)
    if status:
        view["delivery_status"] = status
    review = _REVIEW.get(row.get("status") or "")
    if review:
        view["review_status"] = review
    if row.get("deleted_at") is not None:
        view["deleted_at"] = rfc3339(row["deleted_at"])
    if row.get("flagged"):
        view.update(flagged=True, flag_reason=row.get("flag_reason") or "")
    if row.get("webhook_status"):
        view["webhook_status"] = row["webhook_status"]
    if row.get("webhook_error"):
        view["webhook_error"] = row["webhook_error"]
    return view


def message(row: dict[str, Any], authserv_id: str) -> dict[str, Any]:
    raw = bytes(row["raw_message"]) if row["raw_message"] is not None else None
    view = message_summary(row)
    auth = None
    if row["direction"] == "inbound":
        auth = evidence.authentication(raw, authserv_id, row)
        view["verified_domain"] = evidence.verified_domain(row, auth)
    parts = mailparts.split(raw)
    body = {k: v for k, v in (("text", parts.text), ("html", parts.html)) if v is not None}
    view.update({
        "authentication": auth,
        "attachments": parts.attachments,
        "raw_message": base64.b64encode(raw).decode("ascii") if raw is not None else None,
    })
    if body:
        view["body"] = body
    if row.get("delivery_error"):
        view["delivery_detail"] = row["delivery_error"]
    view.update(screening(row))
    return view


def screening(row: dict[str, Any]) -> dict[str, Any]:
    """The review detail of a message: why it is held and what protection
    found (both beta, present only when there is something)."""
    out: dict[str, Any] = {}
    if row.get("hold_reason"):
        out["hold_reason"] = dict(row["hold_reason"])
    if row.get("protection"):
        out["protection"] = list(row["protection"])
    if row.get("flagged"):
        out.update(flagged=True, flag_reason=row.get("flag_reason") or "")
    return out


def conversation_summary(row: dict[str, Any]) -> dict[str, Any]:
    return {"id": row["conversation_id"],
            "message_count": row["message_count"],
            "inbound_count": row["inbound_count"],
            "outbound_count": row["outbound_count"],
            "has_unread": row["has_unread"],
            "first_message_at": rfc3339(row["first_message_at"]),
            "last_message_at": rfc3339(row["last_message_at"]),
            "latest_subject": row["latest_subject"],
            "latest_from": row["latest_sender"]}


def conversation(row: dict[str, Any], members: list[dict[str, Any]], *,
                 participants: list[str], labels: list[str]) -> dict[str, Any]:
    return {**conversation_summary(row), "participants": participants, "labels": labels,
            "messages": [message_summary(m) for m in members]}


def account(principal: Any, data: dict[str, Any], agent_email: str | None) -> dict[str, Any]:
    view = {"user": data["user"], "scope": "agent" if principal.agent_id else "account",
            "plan_code": data["plan_code"], "upgrade_url": "",
            "limits": data["limits"], "usage": data["usage"]}
    if agent_email:
        view["agent_email"] = agent_email
    return view
