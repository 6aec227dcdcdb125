"""Sending a composed message for an agent: recorded and handed to Postfix,
all or nothing.

The outbound row (and the idempotent answer) are committed BEFORE Postfix's
submit service is asked, with the in-flight marker delivery_status
``submitting``; its event follows Postfix's 250. Why: a database can fail
between Postfix's 250 and our commit. Had the row been in the transaction
still open across the SMTP transaction, it would roll back with the lost
commit: the client hears an error for a message Postfix is delivering and
sends it again (its Idempotency-Key answer rolled back too). With the marker
committed first, the content filter meets the message under its VERP id,
finds the row, takes the marker away and writes the event itself (whoever
of the two comes first does, once: store.outbound.confirm_submitted), and a
retry with the same key is told "in progress" until the answer is confirmed
(or stale, core/idempotency.py), then replays it. Postfix unreachable or refusing
(nothing queued): the row and the answer are deleted again, nothing says
"sent". A row left ``submitting`` (the process died before the SMTP
transaction ended) is the trace of a message Postfix may not have.

An agent with HITL on: the row is inserted already held (pending_approval,
the draft's bodies, the approval deadline; core/outbound/holds.py) with an
``email.pending_approval`` event instead, and submitted all the same, so that
the hold is the content filter's to enforce on every path.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool

from e2a.core.config import Config
from e2a.core.ids import new_id
from e2a.core.messages import lifecycle
from e2a.core.mta import submit, verp
from e2a.core.outbound import decision as outbound
from e2a.core.outbound import holds, screening
from e2a.core.outbound.compose import Composed
from e2a.core.store import events as event_store
from e2a.core.store import messages as message_store
from e2a.core.store import outbound as outbound_store
from e2a.core.webhooks import eventtypes

log = logging.getLogger("e2a.sending")

METHOD = "smtp"
KINDS = ("send", "reply", "forward", "test")


@dataclass(frozen=True)
class AgentMessage:
    message_id: str  # msg_..., also in the Message-ID and the VERP return path
    kind: str  # one of KINDS
    agent: dict[str, Any]  # the sending agent's row (with its domain)
    composed: Composed


class Blocked(Exception):
    """The agent's recipient gate refuses the message: nothing recorded but
    its email.blocked event; str() says why."""


@dataclass(frozen=True)
class Sent:
    message_id: str
    status: str  # "sent", or "pending_approval" when held for a person's approval
    method: str
    queue_id: str  # Postfix's, on its submit service
    approval_expires_at: datetime | None = None  # when held


# Called inside the transaction that records the message, before the
# submission: whatever it writes commits with the message (an idempotent
# answer, not confirmed yet). Then, in a transaction of the caller's too,
# ``confirmed`` after Postfix's 250, or ``undo`` when Postfix did not take it.
InTransaction = Callable[[psycopg.Connection, Sent], None]
AfterSubmission = Callable[[psycopg.Connection], None]


def _row(out: AgentMessage, return_path: str, status: str) -> dict[str, Any]:
    draft = out.composed.draft
    to = [box.address for box in draft.to]
    return {
        "id": out.message_id, "user_id": out.agent["user_id"], "agent_id": out.agent["id"],
        "type": out.kind, "recipient": to[0], "sender": out.agent["email"],
        "envelope_sender": return_path, "to_recipients": to,
        "cc": [box.address for box in draft.cc], "bcc": [box.address for box in draft.bcc],
        "subject": out.composed.subject, "email_message_id": out.composed.email_message_id,
        "in_reply_to": draft.in_reply_to, "references_ids": list(draft.references),
        "conversation_id": draft.conversation_id or None, "raw_message": out.composed.raw,
        "size_bytes": len(out.composed.raw), "status": status,
        "delivery_status": outbound_store.SUBMITTING,
        "method": METHOD,
    }


def _event_data(row: dict[str, Any]) -> dict[str, Any]:
    return {"message_id": row["id"], "agent_id": row["agent_id"], "from": row["sender"],
            "to": row["to_recipients"], "cc": row["cc"], "subject": row["subject"],
            "conversation_id": row["conversation_id"] or "", "type": row["type"]}


def confirm(conn: psycopg.Connection, message_id: str, queue_id: str) -> None:
    """Postfix took the API's message ``message_id`` (its 250 to us, or the
    filter meeting it): the in-flight marker goes and its event is written,
    once whichever side comes first."""
    _confirmed(conn, outbound_store.confirm_submitted(conn, message_id, queue_id), queue_id)


def _confirmed(conn: psycopg.Connection, row: dict[str, Any] | None, queue_id: str) -> None:
    """The lifecycle step and event of a confirmation, when ``row`` says
    this side took the marker away."""
    if row is None:
        return
    message_id = row["id"]
    lifecycle.record(conn, message_id, "outbound", "queue.outbound_submission",
                     correlation_ids={"queue_id": queue_id})
    event_store.insert_event(conn, new_id("evt"), row["user_id"],
                             eventtypes.EMAIL_PENDING_APPROVAL if row["status"] == holds.PENDING
                             else eventtypes.EMAIL_SENT,
                             _event_data(row), agent_id=row["agent_id"],
                             message_id=row["id"], conversation_id=row["conversation_id"])


def send(pool: ConnectionPool, cfg: Config, out: AgentMessage, *,
         in_transaction: InTransaction | None = None,
         confirmed: AfterSubmission | None = None,
         undo: AfterSubmission | None = None, brake_hold: str = "",
         brake: str = "") -> Sent:
    """Record and submit ``out``. Raises submit.SubmitError when Postfix did
    not take it (nothing recorded then) and psycopg errors when the database
    failed. ``brake_hold``: a brake's reason to hold it for a person, ``brake``
    that brake's name."""
    if out.kind not in KINDS:
        raise ValueError(f"unknown kind of outbound message {out.kind!r}")
    return_path = verp.return_path(out.message_id, out.agent["domain"], verp.key(cfg))
    recipients = out.composed.recipients
    expires: datetime | None = None
    with pool.connection() as conn:
        # Screened here, once: the filter then finds the row decided on.
        screened = screening.screen(out.agent, recipients, out.composed.raw,
                                    screening.known_recipients(conn, out.agent))
        decision = outbound.decide(outbound.Candidate(return_path, recipients,
                                                      out.composed.raw, agent=out.agent,
                                                      screened=screened,
                                                      brake_hold=brake_hold))
        if decision is outbound.Decision.BLOCK:
            with conn.transaction():
                screening.record_block(conn, out.agent, out.composed.raw, recipients,
                                       screened)
            raise Blocked(screened.reason)
        held = decision is outbound.Decision.HOLD
        status = holds.PENDING if held else "sent"
        row = _row(out, return_path, status)
        with conn.transaction():
            if message_store.insert_outbound(conn, row) is None:
                raise RuntimeError(f"message id {out.message_id} is taken")
            lifecycle.record(conn, out.message_id, "outbound", "acceptance.outbound_api",
                             correlation_ids={
                                 "email_message_id": out.composed.email_message_id})
            if held:
                expires = holds.hold_draft(
                    conn, out.message_id, out.composed, out.agent,
                    screening.brake_held(brake_hold, screened, brake)).approval_expires_at
            if in_transaction is not None:
                in_transaction(conn, Sent(out.message_id, status, METHOD, "", expires))
        try:
            answer = submit.submit(cfg.submit.address, return_path, recipients,
                                   out.composed.raw, helo=cfg.mail.hostname,
                                   timeout=cfg.submit.timeout)
        except submit.SubmitError:
            with conn.transaction():
                if outbound_store.discard_unsubmitted(conn, out.message_id) \
                        and undo is not None:
                    undo(conn)
            raise
        queue_id = submit.queue_id(answer)
        with conn.transaction():
            # Postfix's queue id as we heard it, even when the filter came first.
            _confirmed(conn, outbound_store.confirm_heard(conn, out.message_id, queue_id),
                       queue_id)
            if confirmed is not None:
                confirmed(conn)
    log.info("submitted", extra={"message_id": out.message_id, "queue_id": queue_id,
                                 "kind": out.kind, "recipients": len(recipients),
                                 "held": held})
    return Sent(out.message_id, status, METHOD, queue_id, expires)


# delivery_status values at or past Postfix's reinjection (the queue that
# goes to the internet): the message has left our hands.
LEFT = ("sent", "deferred", "delivered", "bounced")
WAIT_POLL = 0.1


def wait_sent(pool: ConnectionPool, message_id: str, timeout: float) -> dict[str, Any] | None:
    """Wait up to ``timeout`` for the API's message to leave (reinjected,
    or reported on already) or fail for good; its delivery state then, None
    when it has not by then (still accepted, or held for a person)."""
    deadline = time.monotonic() + timeout
    while True:
        with pool.connection() as conn:
            state = outbound_store.delivery_state(conn, message_id)
        if state is None or state["status"] == holds.PENDING:
            return None
        if state["delivery_status"] in (*LEFT, "failed"):
            return state
        if time.monotonic() >= deadline:
            return None
        time.sleep(WAIT_POLL)
