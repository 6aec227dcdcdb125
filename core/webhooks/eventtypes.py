"""The event types of the event log and of webhook subscriptions.

Whatever writes an event (core/store/events.insert_event) uses one of these
names; a subscription may only ask for these. A new kind of event is added
here first.
"""

from __future__ import annotations

EMAIL_RECEIVED = "email.received"
EMAIL_SENT = "email.sent"
EMAIL_BOUNCED = "email.bounced"
# Per recipient, from Postfix's DSNs (core/outbound/delivery.py).
EMAIL_DELIVERED = "email.delivered"
# Postfix refused the message for good before it left (one per message).
EMAIL_FAILED = "email.failed"
EMAIL_PENDING_APPROVAL = "email.pending_approval"
# A held message's outcome (core/outbound/approval.py); data.status says which.
EMAIL_APPROVED = "email.approved"
EMAIL_REJECTED = "email.rejected"
EMAIL_EXPIRED = "email.expired"
# Protection (core/outbound/screening.py, core/inbound/screening.py): beta.
EMAIL_FLAGGED = "email.flagged"
EMAIL_BLOCKED = "email.blocked"
# Suppressions (core/outbound/suppressions.py): account-wide after a bounce or
# complaint, and agent-scoped after an unsubscribe or by hand.
DOMAIN_SUPPRESSION_ADDED = "domain.suppression_added"
AGENT_SUPPRESSION_ADDED = "agent.suppression_added"
# A loop or abuse brake acted on an agent's mail (core/outbound/brakes.py);
# an e2a-postfix extension, data.decision and data.reason say what and why.
AGENT_BRAKE_APPLIED = "agent.brake_applied"

TYPES: tuple[str, ...] = (
    EMAIL_RECEIVED,
    EMAIL_SENT,
    EMAIL_DELIVERED,
    EMAIL_BOUNCED,
    EMAIL_FAILED,
    EMAIL_PENDING_APPROVAL,
    EMAIL_APPROVED,
    EMAIL_REJECTED,
    EMAIL_EXPIRED,
    EMAIL_FLAGGED,
    EMAIL_BLOCKED,
    DOMAIN_SUPPRESSION_ADDED,
    AGENT_SUPPRESSION_ADDED,
    AGENT_BRAKE_APPLIED,
)

SCHEMA_VERSION = 1


def is_known(name: object) -> bool:
    return isinstance(name, str) and name in TYPES
