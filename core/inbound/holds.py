"""Received mail held by an agent's inbound protection (review): released
to the agent when a person approves it, kept hidden when rejected, and on
expiry whichever the agent's ``holds.on_expiry`` says.

Held, a message has no email.received event and is left out of every
listing, so neither WebSocket, webhook nor mailbox sees it; releasing
writes that event (and the NOTIFYs) as a delivery at once would have.
One row lock decides it once, from either API or the expiry job.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool

from e2a.core.ids import new_id
from e2a.core.runtime import metrics
from e2a.core.store import events as event_store
from e2a.core.store import holds as hold_store
from e2a.core.store import messages as message_store
from e2a.core.webhooks import eventtypes

log = logging.getLogger("e2a.inbound")

PENDING = "pending_approval"
REJECTED, EXPIRED_REJECTED, EXPIRED_APPROVED = "rejected", "expired_rejected", "expired_approved"


class NotPending(Exception):
    def __init__(self, status: str) -> None:
        super().__init__(f"no longer pending review ({status})")
        self.status = status


def _status(row: dict[str, Any]) -> str:
    return row["status"] or "approved"


def held(conn: psycopg.Connection, message_id: str, owner_id: str) -> dict[str, Any] | None:
    """The received message (held now or once), None when it is no
    inbound review of ``owner_id``'s."""
    return hold_store.lock_inbound(conn, message_id, owner_id)


def _release(conn: psycopg.Connection, row: dict[str, Any], reviewer: str | None,
             status: str) -> None:
    hold_store.resolve_inbound(conn, row["id"], status=None, reviewer_user_id=reviewer)
    message_store.announce_inbound(
        conn, row, event_id=new_id("evt"),
        event_data={"message_id": row["id"], "agent_id": row["agent_id"],
                    "recipient": row["recipient"], "from": row["sender"],
                    "subject": row["subject"],
                    "conversation_id": row["conversation_id"] or ""},
        notify_payload=json.dumps({"message_id": row["id"], "agent_id": row["agent_id"]}))
    _event(conn, row, eventtypes.EMAIL_APPROVED if status == "sent"
           else eventtypes.EMAIL_EXPIRED, status)


def _event(conn: psycopg.Connection, row: dict[str, Any], type_: str, status: str,
           reason: str = "") -> None:
    event_store.insert_event(
        conn, new_id("evt"), row["user_id"], type_,
        {"message_id": row["id"], "agent_id": row["agent_id"], "direction": "inbound",
         "from": row["sender"], "subject": row["subject"], "type": "inbound",
         "status": status, "rejection_reason": reason,
         "conversation_id": row["conversation_id"] or ""},
        agent_id=row["agent_id"], message_id=row["id"], conversation_id=row["conversation_id"])


def approve(pool: ConnectionPool, message_id: str, *, owner_id: str, reviewer: str) -> bool:
    """Release the held message to its agent. False when it is no inbound
    review of ``owner_id``'s; NotPending when decided on before."""
    with pool.connection() as conn, conn.transaction():
        row = hold_store.lock_inbound(conn, message_id, owner_id)
        if row is None:
            return False
        if row["status"] != PENDING:
            raise NotPending(_status(row))
        _release(conn, row, reviewer, "sent")
    metrics.approvals.labels(action="approve").inc()
    log.info("inbound review approved", extra={"message_id": message_id})
    return True


def reject(pool: ConnectionPool, message_id: str, *, owner_id: str, reviewer: str,
           reason: str) -> bool:
    """Keep the held message from its agent for good (it stays hidden)."""
    with pool.connection() as conn, conn.transaction():
        row = hold_store.lock_inbound(conn, message_id, owner_id)
        if row is None:
            return False
        if row["status"] != PENDING:
            raise NotPending(_status(row))
        hold_store.resolve_inbound(conn, message_id, status=REJECTED,
                                   reviewer_user_id=reviewer, reason=reason)
        _event(conn, row, eventtypes.EMAIL_REJECTED, REJECTED, reason)
    metrics.approvals.labels(action="reject").inc()
    return True


def expire_due(conn: psycopg.Connection, limit: int = 20) -> int:
    """Decide up to ``limit`` expired inbound holds by their agent's expiry
    action; how many."""
    done = 0
    while done < limit:
        with conn.transaction():
            row = hold_store.claim_due_inbound(conn)
            if row is None:
                break
            if row["hitl_expiration_action"] == "approve":
                _release(conn, row, None, EXPIRED_APPROVED)
            else:
                hold_store.resolve_inbound(conn, row["id"], status=EXPIRED_REJECTED,
                                           reviewer_user_id=None, reason="expired")
                _event(conn, row, eventtypes.EMAIL_EXPIRED, EXPIRED_REJECTED, "expired")
        done += 1
    return done
