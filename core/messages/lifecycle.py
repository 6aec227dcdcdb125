"""A message's lifecycle: the steps it took, each named by a reason code of
the /v1 vocabulary (reference MessageLifecycleTransition). A reason code
fixes its stage, outcome and whether it is retryable; SDK 5.8.1 refuses any
value outside this vocabulary, so nothing else is ever written.

Recorded in the transaction of the change it describes: a step and the
state it led to commit together or not at all.
"""

from __future__ import annotations

import json
from typing import Any, NamedTuple

import psycopg

from e2a.core.ids import new_id
from e2a.core.store import lifecycle as lifecycle_store


class Reason(NamedTuple):
    stage: str
    outcome: str
    retryable: bool = False


REASONS: dict[str, Reason] = {
    "acceptance.inbound_smtp": Reason("accepted", "accepted"),
    "acceptance.outbound_api": Reason("accepted", "accepted"),
    "acceptance.local_loopback": Reason("accepted", "accepted"),
    "authentication.dmarc_pass": Reason("authentication", "passed"),
    "authentication.dmarc_fail": Reason("authentication", "failed"),
    "authentication.dmarc_none": Reason("authentication", "indeterminate"),
    "authentication.dmarc_permanent_error": Reason("authentication", "indeterminate"),
    "authentication.dmarc_temporary_error": Reason("authentication", "indeterminate", True),
    "review.hold_created": Reason("review", "pending"),
    "review.approved": Reason("review", "approved"),
    "review.expired_approved": Reason("review", "approved"),
    "review.rejected": Reason("review", "rejected"),
    "review.expired_rejected": Reason("review", "rejected"),
    "suppression.recipient_blocked": Reason("suppression", "blocked"),
    "suppression.hard_bounce_applied": Reason("suppression", "applied"),
    "suppression.complaint_applied": Reason("suppression", "applied"),
    "queue.inbound_processing": Reason("queued", "enqueued"),
    "queue.outbound_submission": Reason("queued", "enqueued"),
    "submission.upstream_accepted": Reason("submission", "accepted"),
    "submission.local_loopback_accepted": Reason("submission", "accepted"),
    "submission.temporary_failure": Reason("submission", "deferred", True),
    "submission.provider_rejected": Reason("submission", "failed"),
    "submission.local_retries_exhausted": Reason("submission", "failed", True),
    "submission.cancelled": Reason("submission", "failed"),
    "delivery.recipient_server_accepted": Reason("delivery", "delivered"),
    "delivery.temporary_delay": Reason("delivery", "deferred", True),
    "delivery.permanent_bounce": Reason("delivery", "bounced"),
    "delivery.transient_bounce": Reason("delivery", "bounced", True),
    "delivery.undetermined_bounce": Reason("delivery", "bounced"),
    "complaint.recipient_reported": Reason("complaint", "reported"),
}

# Evidence is shown to API clients: bounded like the reference's.
MAX_EVIDENCE_STRING = 2048
MAX_EVIDENCE_BYTES = 16384


def bounded(evidence: dict[str, Any]) -> dict[str, Any]:
    """Evidence with every string cut to MAX_EVIDENCE_STRING and, past
    MAX_EVIDENCE_BYTES in all, the later keys left out."""
    out: dict[str, Any] = {}
    size = 2
    for key, value in evidence.items():
        if isinstance(value, str):
            value = value[:MAX_EVIDENCE_STRING]
        size += len(json.dumps({key: value})) + 1
        if size > MAX_EVIDENCE_BYTES:
            break
        out[key] = value
    return out


_DMARC = {"pass": "authentication.dmarc_pass", "fail": "authentication.dmarc_fail",
          "none": "authentication.dmarc_none",
          "temperror": "authentication.dmarc_temporary_error",
          "permerror": "authentication.dmarc_permanent_error"}


def step(reason_code: str, *, recipient: str = "", evidence: dict[str, Any] | None = None,
         correlation_ids: dict[str, str] | None = None) -> dict[str, Any]:
    """One step to be written by a statement of the caller's (the milter's
    one-statement delivery, core/store/messages.store_inbound; an outbound
    message's passing on and its DSNs, core/store/outbound)."""
    reason = REASONS[reason_code]
    return {"id": new_id("lct"), "stage": reason.stage, "outcome": reason.outcome,
            "reason_code": reason_code, "retryable": reason.retryable,
            "recipient": recipient.lower(), "evidence": bounded(evidence or {}),
            "correlation_ids": {k: v for k, v in (correlation_ids or {}).items() if v}}


def inbound_steps(dmarc: str, queue_id: str, email_message_id: str) -> list[dict[str, Any]]:
    """What an inbound message's delivery records: accepted over SMTP, and
    its DMARC verdict."""
    ids = {"queue_id": queue_id, "email_message_id": email_message_id}
    return [step("acceptance.inbound_smtp", correlation_ids=ids),
            step(_DMARC.get(dmarc, "authentication.dmarc_none"),
                 evidence={"dmarc": dmarc or "none"}, correlation_ids=ids)]


def record(conn: psycopg.Connection, message_id: str, direction: str, reason_code: str, *,
           recipient: str = "", evidence: dict[str, Any] | None = None,
           correlation_ids: dict[str, str] | None = None) -> bool:
    """Record one step; False when a once-only step was recorded already."""
    reason = REASONS[reason_code]  # KeyError: a code outside the vocabulary
    return lifecycle_store.insert(
        conn, new_id("lct"), message_id, direction, reason.stage, reason.outcome,
        reason_code, retryable=reason.retryable, recipient=recipient.lower(),
        evidence=bounded(evidence or {}),
        correlation_ids={k: v for k, v in (correlation_ids or {}).items() if v})
