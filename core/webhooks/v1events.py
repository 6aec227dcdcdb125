"""The one event log as the current API (/v1, SDK 5.x) names it.

Events are stored once, in the legacy vocabulary (core/webhooks/eventtypes.py) with
``agent_id`` in their data; both API generations read the same rows. This
module is the translation for /v1 readers: its event types (the review
events got new names), ``agent_email`` instead of ``agent_id`` and the
envelope's ``data`` fields the 5.x SDK expects. It is used by the /v1 event
listing, /v1 webhook deliveries and the /v1 WebSocket, so the three show an
event identically (same ``id``, same ``data``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from e2a.core.timefmt import rfc3339
from e2a.core.webhooks import eventtypes

REVIEW_REQUESTED = "email.review_requested"
REVIEW_APPROVED = "email.review_approved"
REVIEW_REJECTED = "email.review_rejected"
SCHEMA_VERSION = "1"

# Stored type -> /v1 type. An expired hold is approved or rejected by its
# agent's expiry action; data.status says which (see v1_type).
_TO_V1 = {
    eventtypes.EMAIL_RECEIVED: eventtypes.EMAIL_RECEIVED,
    eventtypes.EMAIL_SENT: eventtypes.EMAIL_SENT,
    eventtypes.EMAIL_DELIVERED: eventtypes.EMAIL_DELIVERED,
    eventtypes.EMAIL_BOUNCED: eventtypes.EMAIL_BOUNCED,
    eventtypes.EMAIL_FAILED: eventtypes.EMAIL_FAILED,
    eventtypes.EMAIL_PENDING_APPROVAL: REVIEW_REQUESTED,
    eventtypes.EMAIL_APPROVED: REVIEW_APPROVED,
    eventtypes.EMAIL_REJECTED: REVIEW_REJECTED,
    eventtypes.EMAIL_FLAGGED: eventtypes.EMAIL_FLAGGED,
    eventtypes.EMAIL_BLOCKED: eventtypes.EMAIL_BLOCKED,
    eventtypes.DOMAIN_SUPPRESSION_ADDED: eventtypes.DOMAIN_SUPPRESSION_ADDED,
    eventtypes.AGENT_SUPPRESSION_ADDED: eventtypes.AGENT_SUPPRESSION_ADDED,
    eventtypes.AGENT_BRAKE_APPLIED: eventtypes.AGENT_BRAKE_APPLIED,
}
# /v1 type -> the stored types it covers.
_FROM_V1: dict[str, tuple[str, ...]] = {
    eventtypes.EMAIL_RECEIVED: (eventtypes.EMAIL_RECEIVED,),
    eventtypes.EMAIL_SENT: (eventtypes.EMAIL_SENT,),
    eventtypes.EMAIL_DELIVERED: (eventtypes.EMAIL_DELIVERED,),
    eventtypes.EMAIL_BOUNCED: (eventtypes.EMAIL_BOUNCED,),
    eventtypes.EMAIL_FAILED: (eventtypes.EMAIL_FAILED,),
    REVIEW_REQUESTED: (eventtypes.EMAIL_PENDING_APPROVAL,),
    REVIEW_APPROVED: (eventtypes.EMAIL_APPROVED, eventtypes.EMAIL_EXPIRED),
    REVIEW_REJECTED: (eventtypes.EMAIL_REJECTED, eventtypes.EMAIL_EXPIRED),
    eventtypes.EMAIL_FLAGGED: (eventtypes.EMAIL_FLAGGED,),
    eventtypes.EMAIL_BLOCKED: (eventtypes.EMAIL_BLOCKED,),
    eventtypes.DOMAIN_SUPPRESSION_ADDED: (eventtypes.DOMAIN_SUPPRESSION_ADDED,),
    eventtypes.AGENT_SUPPRESSION_ADDED: (eventtypes.AGENT_SUPPRESSION_ADDED,),
    eventtypes.AGENT_BRAKE_APPLIED: (eventtypes.AGENT_BRAKE_APPLIED,),
}
TYPES: tuple[str, ...] = tuple(_FROM_V1)


class UnknownType(ValueError):
    def __init__(self, name: object) -> None:
        super().__init__(f"unknown event type {name!r}; known: {', '.join(TYPES)}")
        self.name = name


def stored_types(v1_types: Iterable[object]) -> list[str]:
    """The stored types a /v1 subscription or filter on ``v1_types`` matches;
    UnknownType for a name /v1 does not have."""
    out: list[str] = []
    for name in v1_types:
        if not isinstance(name, str) or name not in _FROM_V1:
            raise UnknownType(name)
        out.extend(t for t in _FROM_V1[name] if t not in out)
    return out


def v1_types(stored: Iterable[str]) -> list[str]:
    """A subscription's stored types as /v1 names them (email.expired rides
    along with the review outcomes, so it names nothing of its own)."""
    out: list[str] = []
    for name in stored:
        v1 = _TO_V1.get(name)
        if v1 and v1 not in out:
            out.append(v1)
    return out


def v1_type(stored_type: str, data: Mapping[str, Any]) -> str:
    if stored_type == eventtypes.EMAIL_EXPIRED:
        approved = data.get("status") == "expired_approved"
        return REVIEW_APPROVED if approved else REVIEW_REJECTED
    return _TO_V1.get(stored_type, stored_type)


def _review(stored_type: str, data: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"direction": data.get("direction") or "outbound",
                           "message_type": data.get("type") or "send",
                           "from": data.get("from") or "",
                           "to": list(data.get("to") or []),
                           "cc": list(data.get("cc") or []),
                           "subject": data.get("subject") or "",
                           "conversation_id": data.get("conversation_id") or ""}
    if stored_type == eventtypes.EMAIL_EXPIRED:
        out["auto_resolved"] = True
    if v1_type(stored_type, data) == REVIEW_APPROVED:
        out.update(method="smtp", edited=bool(data.get("edited")))
    elif v1_type(stored_type, data) == REVIEW_REJECTED:
        out["reason"] = data.get("rejection_reason") or ""
    return out


def data(stored_type: str, stored: Mapping[str, Any], agent_email: str | None,
         created_at: datetime) -> dict[str, Any]:
    """The event's ``data`` for /v1: ``agent_email`` for ``agent_id``, and the
    fields the 5.x SDK's event models require filled from what was stored."""
    out = {k: v for k, v in stored.items() if k != "agent_id"}
    if agent_email:
        out["agent_email"] = agent_email
    if stored_type == eventtypes.EMAIL_RECEIVED and "message_id" in stored:
        recipient = stored.get("recipient") or agent_email or ""
        out.update(direction="inbound", header_from=stored.get("from") or None,
                   envelope_from=stored.get("envelope_from"),
                   verified_domain=stored.get("verified_domain"),
                   authentication=stored.get("authentication"),
                   to=list(stored.get("to") or [recipient]), cc=list(stored.get("cc") or []),
                   reply_to=list(stored.get("reply_to") or []), delivered_to=recipient,
                   subject=stored.get("subject") or "", received_at=rfc3339(created_at))
    elif stored_type == eventtypes.EMAIL_SENT:
        out.update(direction="outbound", method="smtp",
                   message_type=stored.get("type") or "send",
                   to=list(stored.get("to") or []), subject=stored.get("subject") or "")
    elif stored_type in (eventtypes.EMAIL_DELIVERED, eventtypes.EMAIL_BOUNCED):
        # Before per-recipient reports a bounce named its recipients in a list.
        out.update(direction="outbound", subject=stored.get("subject") or "",
                   delivered_to=stored.get("delivered_to")
                   or next(iter(stored.get("recipients") or []), ""))
        if stored_type == eventtypes.EMAIL_BOUNCED:
            out["bounce_type"] = stored.get("bounce_type") or "undetermined"
    elif stored_type == eventtypes.EMAIL_FAILED:
        out.update(direction="outbound", method="smtp",
                   message_type=stored.get("type") or "send",
                   to=list(stored.get("to") or []), subject=stored.get("subject") or "",
                   reason=stored.get("reason") or "")
    elif stored_type in (eventtypes.EMAIL_PENDING_APPROVAL, eventtypes.EMAIL_APPROVED,
                         eventtypes.EMAIL_REJECTED, eventtypes.EMAIL_EXPIRED):
        out.update(_review(stored_type, stored))
    return out


def envelope(event_id: str, stored_type: str, created_at: datetime,
             stored: Mapping[str, Any], agent_email: str | None) -> dict[str, Any]:
    """``{type, id, schema_version, created_at, data}``: a /v1 webhook body, a
    WebSocket frame, the head of an EventView."""
    return {"type": v1_type(stored_type, stored), "id": event_id,
            "schema_version": SCHEMA_VERSION, "created_at": rfc3339(created_at),
            "data": data(stored_type, stored, agent_email, created_at)}
