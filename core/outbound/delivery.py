"""An outbound message's fate after it left us, from Postfix's own reports.

Postfix reports each recipient to the VERP return path (core/mta/dsn.py
asks it to): ``relayed``/``delivered`` -> delivered, ``delayed`` -> deferred
(Postfix keeps trying), ``failed`` -> bounced. Each recipient's fate is kept
with the remote server's reply (store.outbound.record_recipient); the
message's delivery_status adds them up (``aggregate``) and delivery_detail
lists them. A report changes a recipient only forward (deferred ->
delivered | bounced), so the same DSN twice changes nothing and writes no
second event or lifecycle step.

Events: one ``email.delivered`` or ``email.bounced`` per recipient (the /v1
shapes carry ``delivered_to``, the one recipient); deferrals have no event of
their own, only a lifecycle step. A permanent bounce calls
``hard_bounce_recorded``: the one place that hears "this agent's mail to
this address bounced for good" (suppressions hook in there).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg

from e2a.core.ids import new_id
from e2a.core.messages import lifecycle
from e2a.core.mta import dsn
from e2a.core.outbound import brakes
from e2a.core.store import events as event_store
from e2a.core.store import outbound as outbound_store
from e2a.core.webhooks import eventtypes

log = logging.getLogger("e2a.delivery")

# delivery_detail is shown to API clients; a DSN for many recipients would
# otherwise make it as long as the DSN.
MAX_DETAIL = 2000

_REASON = {
    (dsn.DELIVERED, ""): "delivery.recipient_server_accepted",
    (dsn.DEFERRED, ""): "delivery.temporary_delay",
    (dsn.BOUNCED, "permanent"): "delivery.permanent_bounce",
    (dsn.BOUNCED, "transient"): "delivery.transient_bounce",
    (dsn.BOUNCED, "undetermined"): "delivery.undetermined_bounce",
}


@dataclass(frozen=True)
class HardBounce:
    """A recipient's server refused an agent's message for good (5.x.x)."""

    user_id: str
    agent_id: str
    agent_email: str
    recipient: str  # lowercase
    message_id: str
    diagnostic: str  # the remote server's reply


def hard_bounce_recorded(conn: psycopg.Connection, bounce: HardBounce) -> None:
    """Called once per (message, recipient) hard bounce, in the transaction
    that records it: the address is suppressed for the account and the
    bounce counts toward the agent's bounce rate."""
    brakes.hard_bounced(conn, {"user_id": bounce.user_id, "agent_id": bounce.agent_id,
                               "id": bounce.message_id},
                        [(bounce.recipient, bounce.diagnostic)])
    log.info("hard bounce recorded", extra={"message_id": bounce.message_id,
                                            "agent": bounce.agent_email})


def own_recipients(row: Mapping[str, Any]) -> list[str]:
    """The outbound row's recipients (To, Cc, Bcc), lowercase, each once."""
    seen: list[str] = []
    for column in ("to_recipients", "cc", "bcc"):
        for address in row.get(column) or []:
            if address.lower() not in seen:
                seen.append(address.lower())
    return seen


def about(reports: Sequence[dsn.Report], row: Mapping[str, Any]) -> list[tuple[str, dsn.Report]]:
    """(recipient, report) for each report on one of the outbound ``row``'s
    own recipients with an action we act on. A report about any other
    address, or naming another message (Original-Envelope-Id), is nobody's
    business of ours: whoever learnt a return path must not change a
    message with a DSN about someone else."""
    own = set(own_recipients(row))
    found = []
    for report in reports:
        if not report.outcome or (report.envid and report.envid.lower() != row["id"]):
            continue
        if report.address() in own:
            found.append((report.address(), report))
    return found


def aggregate(row: Mapping[str, Any], states: Mapping[str, str]) -> str | None:
    """The message's delivery_status from its recipients' (``states``:
    recipient -> deferred | delivered | bounced); None: nothing to change.
    Any bounce is what the sender must hear about first; then any delay;
    delivered once every recipient is."""
    values = set(states.values())
    if dsn.BOUNCED in values:
        return "bounced"
    if dsn.DEFERRED in values:
        return "deferred"
    if values and all(states.get(r) == dsn.DELIVERED for r in own_recipients(row)):
        return "delivered"
    return None


def detail(rows: Sequence[Mapping[str, Any]]) -> str:
    """delivery_detail: each reported recipient, its fate and what its server said."""
    parts = [f"{r['recipient']}: {r['status']}: "
             f"{r['diagnostic'] or r['dsn_status'] or r['action']}" for r in rows]
    text = "; ".join(parts)
    return text if len(text) <= MAX_DETAIL else text[:MAX_DETAIL - 3] + "..."


def apply(conn: psycopg.Connection, row: Mapping[str, Any], reports: Sequence[dsn.Report],
          *, queue_id: str = "") -> int:
    """Record what ``reports`` say of outbound ``row``'s recipients, in the
    caller's transaction; how many recipients changed."""
    message_id = row["id"]
    if row["delivery_status"] == "failed":
        # Refused on its way out by our own side (the reinjection's 5xx, told
        # already by email.failed): Postfix's bounce of it says nothing of
        # the recipients' servers, and must never count as their hard bounce.
        return 0
    changed: list[tuple[str, dsn.Report]] = []
    rows: list[dict[str, Any]] = []
    for recipient, report in about(reports, row):
        rows = outbound_store.record_recipient(
            conn, message_id, recipient, status=report.outcome,
            bounce_type=report.bounce_type, action=report.action,
            dsn_status=report.status, diagnostic=report.diagnostic,
            remote_mta=report.remote_mta)
        if any(r["changed"] for r in rows):
            changed.append((recipient, report))
    if not changed:
        return 0
    status = aggregate(row, {r["recipient"]: r["status"] for r in rows})
    text = detail(rows)
    told = [_recipient_changed(row, recipient, report, queue_id, text)
            for recipient, report in changed]
    outbound_store.record_reported(
        conn, message_id, status or row["delivery_status"] or "sent", text,
        steps=[step for step, _ in told], events=[event for _, event in told if event])
    for recipient, report in changed:
        if report.bounce_type == "permanent":
            hard_bounce_recorded(conn, HardBounce(
                user_id=row["user_id"], agent_id=row["agent_id"],
                agent_email=row["agent_email"], recipient=recipient, message_id=row["id"],
                diagnostic=report.diagnostic))
    return len(changed)


def _recipient_changed(row: Mapping[str, Any], recipient: str, report: dsn.Report,
                       queue_id: str, text: str) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The lifecycle step of a recipient whose fate changed, and its event
    (None for a deferral: Postfix keeps trying, a step and no event)."""
    reason = _REASON[(report.outcome, report.bounce_type)]
    step = lifecycle.step(
        reason, recipient=recipient,
        evidence={"action": report.action, "status": report.status,
                  "smtp_detail": report.diagnostic, "remote_mta": report.remote_mta},
        correlation_ids={"provider_message_id": row.get("provider_message_id") or "",
                         "queue_id": queue_id,
                         "email_message_id": row.get("email_message_id") or ""})
    if report.outcome == dsn.DEFERRED:
        return step, None
    data: dict[str, Any] = {
        "message_id": row["id"], "agent_id": row["agent_id"], "from": row["agent_email"],
        "conversation_id": row["conversation_id"] or "", "subject": row.get("subject") or "",
        "delivered_to": recipient, "recipients": [recipient],
        "smtp_detail": report.diagnostic, "status": report.status,
        "delivery_error": text}
    if report.outcome == dsn.BOUNCED:
        data["bounce_type"] = report.bounce_type
        event_type = eventtypes.EMAIL_BOUNCED
    else:
        event_type = eventtypes.EMAIL_DELIVERED
    return step, {"id": new_id("evt"), "user_id": row["user_id"], "agent_id": row["agent_id"],
                  "message_id": row["id"], "conversation_id": row["conversation_id"],
                  "type": event_type, "data": data}


def passed_on(conn: psycopg.Connection, message_id: str, queue_id: str) -> None:
    """Postfix's reinjection took the message (the queue that goes to the
    internet): delivery_status sent, and its lifecycle step once. One
    statement: it needs no transaction of the caller's."""
    outbound_store.record_passed_on(conn, message_id, queue_id, steps=[lifecycle.step(
        "submission.upstream_accepted", correlation_ids={"provider_message_id": queue_id})])


def failed(conn: psycopg.Connection, message_id: str, reason: str) -> None:
    """Postfix refused the message for good before it left (Postfix bounces
    it to the sender too): delivery_status failed, one email.failed."""
    if not outbound_store.record_failed(conn, message_id, reason):
        return
    row = outbound_store.outbound_by_id(conn, message_id)
    if row is None:
        return
    lifecycle.record(conn, message_id, "outbound", "submission.provider_rejected",
                     evidence={"smtp_detail": reason})
    event_store.insert_event(
        conn, new_id("evt"), row["user_id"], eventtypes.EMAIL_FAILED,
        {"message_id": message_id, "agent_id": row["agent_id"], "from": row["agent_email"],
         "to": list(row["to_recipients"] or []), "cc": list(row["cc"] or []),
         "subject": row["subject"] or "", "type": row["type"],
         "conversation_id": row["conversation_id"] or "", "reason": reason,
         "reason_code": "submission.provider_rejected", "retryable": False},
        agent_id=row["agent_id"], message_id=message_id,
        conversation_id=row["conversation_id"])
