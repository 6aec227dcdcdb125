"""Resolving held messages: approve (as held, or edited), reject, or let the
agent's expiration action decide once the hold has run out.

Each resolution locks the message's row, checks it is still pending, acts,
and commits the outcome. Whoever comes second (an API call, a magic link, a
reply, the CLI or an expiry worker) waits on the lock and then finds it no
longer pending, so a message leaves once. Every outcome wipes the draft's
body, HTML and attachments, and writes its event (email.approved,
email.rejected, email.expired) in the transaction that records it.

Sending is the one outcome that crosses to Postfix, and a database can fail
between Postfix's 250 and our commit. So an approval first commits the
decision with an in-flight marker (status already sent or expired_approved,
delivery_status ``submitting``), only then hands the message to Postfix, and
records Postfix's queue id, the edits and the event after its 250. Were that
last commit lost, the row still says the message was decided on: nobody
sends it again (it is not pending) and Postfix has it (nothing dropped); it
keeps ``submitting`` and its bodies as the trace of it. Had Postfix not taken
the message, the marker is taken back: pending again, for a reviewer or the
next expiry run to retry, unless Postfix refused it for good (a 5xx), which
ends an expiry's automatic approval as expired_rejected with the reason.
(Holding the row lock across the SMTP transaction instead, as one
transaction, would roll the decision back with the lost commit and send the
message a second time at the next approval or expiry.)
"""

from __future__ import annotations

import base64
import logging
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool

from e2a.core.config import Config
from e2a.core.ids import new_id
from e2a.core.messages import lifecycle
from e2a.core.outbound import compose, holds, release, screening, suppressions, unsubscribe
from e2a.core.outbound.compose import Attachment, Mailbox
from e2a.core.runtime import metrics
from e2a.core.store import approvals as store
from e2a.core.store import events as event_store
from e2a.core.webhooks import eventtypes

log = logging.getLogger("e2a.approval")

PENDING = holds.PENDING
SENT, REJECTED = "sent", "rejected"
EXPIRED_APPROVED, EXPIRED_REJECTED = "expired_approved", "expired_rejected"
VIAS = ("api", "link", "reply", "cli", "expiry", "dashboard")
EXPIRED_REASON = "approval expired"

Row = dict[str, Any]


@dataclass(frozen=True)
class Edits:
    """What the reviewer changed; None: not given. Only the fields that
    differ from the stored draft count as edits."""

    subject: str | None = None
    body_text: str | None = None
    body_html: str | None = None
    to: list[str] | None = None
    cc: list[str] | None = None
    bcc: list[str] | None = None
    attachments: list[Attachment] | None = None

    def __repr__(self) -> str:  # bodies never land in a log line
        given = [name for name in self.__dataclass_fields__ if getattr(self, name) is not None]
        return f"Edits({', '.join(given)})"


class NotFound(Exception):
    """No outbound message with that id (for that owner)."""


class NotPending(Exception):
    """The message is resolved already (or was never held)."""

    def __init__(self, message_id: str, status: str) -> None:
        super().__init__(f"{message_id} is {status}, not pending approval")
        self.status = status


@dataclass(frozen=True)
class Resolved:
    message_id: str
    status: str
    edited: bool
    method: str
    provider_message_id: str
    rejection_reason: str


METHOD = "smtp"  # how an approved message leaves: through Postfix, like every send


def approve(pool: ConnectionPool, cfg: Config, message_id: str, *, owner_id: str | None,
            reviewer_user_id: str | None, edits: Edits | None = None, via: str) -> Resolved:
    """Send the held message, with ``edits`` applied. Raises NotFound,
    NotPending, compose.ComposeError (edits that break a rule),
    suppressions.Suppressed and release.ReleaseError (it did not leave; both
    leave it pending)."""
    _check_via(via)
    with pool.connection() as conn:
        with conn.transaction():
            row = _pending(conn, message_id, owner_id)
            changed = _changes(row, edits or Edits())
            outgoing = _recomposed(row, changed, cfg) if changed else None
            # Suppressed since it was held, or edited to name one: refused,
            # and it stays pending (the transaction changed nothing).
            suppressions.check(conn, _sender_agent(row), _recipients(row, outgoing))
            store.mark_sending(conn, message_id, status=SENT,
                               reviewer_user_id=reviewer_user_id, reviewed=True)
        try:
            queue_id = _release(conn, cfg, row, outgoing)
        except release.ReleaseError as exc:
            with conn.transaction():
                store.unmark_sending(conn, message_id, status=SENT, error=str(exc))
            raise
        with conn.transaction():
            store.finish_sent(conn, message_id, status=SENT, queue_id=queue_id,
                              reviewer_user_id=reviewer_user_id, reviewed=True, edited=outgoing)
            _event(conn, row, SENT, edited=outgoing)
            screening.on_approved(conn, row if outgoing is None else {
                **row, "to_recipients": outgoing["to"], "cc": outgoing["cc"],
                "bcc": outgoing["bcc"]})
    return _done(message_id, SENT, via, edited=outgoing is not None, queue_id=queue_id)


def reject(pool: ConnectionPool, message_id: str, *, owner_id: str | None,
           reviewer_user_id: str | None, reason: str, via: str) -> Resolved:
    """Discard the held message. Raises NotFound and NotPending."""
    _check_via(via)
    with pool.connection() as conn, conn.transaction():
        row = _pending(conn, message_id, owner_id)
        store.finish_discarded(conn, message_id, status=REJECTED, reason=reason,
                               reviewer_user_id=reviewer_user_id, reviewed=True)
        _event(conn, row, REJECTED, reason=reason)
    return _done(message_id, REJECTED, via, reason=reason)


def expire_due(conn: psycopg.Connection, cfg: Config, limit: int = 20) -> int:
    """Finish up to ``limit`` expired holds with their agent's expiration
    action; how many. Each is claimed and decided in its own transaction,
    and one approved automatically is sent as approve() sends (marker first).
    Rows other workers hold are skipped (SKIP LOCKED), so several workers
    share the work. Postfix away: the message stays pending and this run
    ends, the next run tries again."""
    done = 0
    while done < limit:
        with conn.transaction():
            row = store.claim_due(conn)
            if row is None:
                break
            approving = row["hitl_expiration_action"] == "approve"
            if approving:
                store.mark_sending(conn, row["id"], status=EXPIRED_APPROVED,
                                   reviewer_user_id=None, reviewed=False)
            else:
                _discard_expired(conn, row, EXPIRED_REASON)
        if not approving:
            _done(row["id"], EXPIRED_REJECTED, "expiry", reason=EXPIRED_REASON)
        elif not _expire_approved(conn, cfg, row):
            break
        done += 1
    return done


def _discard_expired(conn: psycopg.Connection, row: Row, reason: str) -> None:
    store.finish_discarded(conn, row["id"], status=EXPIRED_REJECTED, reason=reason,
                           reviewer_user_id=None, reviewed=False)
    _event(conn, row, EXPIRED_REJECTED, reason=reason)


def _expire_approved(conn: psycopg.Connection, cfg: Config, row: Row) -> bool:
    """Send the expired ``row`` (marked sending) as its agent's action says;
    False when Postfix was away (the row is pending again, for a later run)."""
    try:
        queue_id = _release(conn, cfg, row, None)
    except release.ReleaseError as exc:
        if exc.permanent:
            # Refused for good: it would be refused at every retry. The
            # owner reads why.
            reason = f"automatic approval failed: {exc}"
            with conn.transaction():
                _discard_expired(conn, row, reason)
            _done(row["id"], EXPIRED_REJECTED, "expiry", reason=reason)
            return True
        with conn.transaction():
            store.unmark_sending(conn, row["id"], status=EXPIRED_APPROVED, error=str(exc))
        log.warning("automatic approval not sent, retrying at the next run: %s", exc,
                    extra={"message_id": row["id"]})
        return False
    with conn.transaction():
        store.finish_sent(conn, row["id"], status=EXPIRED_APPROVED, queue_id=queue_id,
                          reviewer_user_id=None, reviewed=False)
        _event(conn, row, EXPIRED_APPROVED)
    _done(row["id"], EXPIRED_APPROVED, "expiry", queue_id=queue_id)
    return True


# -- the parts -------------------------------------------------------------------


_REVIEW_REASONS = {SENT: "review.approved", REJECTED: "review.rejected",
                   EXPIRED_APPROVED: "review.expired_approved",
                   EXPIRED_REJECTED: "review.expired_rejected"}
_EVENT_TYPES = {SENT: eventtypes.EMAIL_APPROVED, REJECTED: eventtypes.EMAIL_REJECTED,
                EXPIRED_APPROVED: eventtypes.EMAIL_EXPIRED,
                EXPIRED_REJECTED: eventtypes.EMAIL_EXPIRED}


def _event(conn: psycopg.Connection, row: Row, status: str, *, edited: Row | None = None,
           reason: str = "") -> None:
    """The outcome in the event outbox, in the outcome's transaction: what
    was decided and, for an edited message, what went out instead."""
    sent = edited or {}
    event_store.insert_event(
        conn, new_id("evt"), row["user_id"], _EVENT_TYPES[status],
        {"message_id": row["id"], "agent_id": row["agent_id"], "from": row["sender"],
         "to": sent.get("to", row["to_recipients"]), "cc": sent.get("cc", row["cc"]),
         "subject": sent.get("subject", row["subject"]),
         "conversation_id": row["conversation_id"] or "", "type": row["type"],
         "status": status, "edited": edited is not None, "rejection_reason": reason},
        agent_id=row["agent_id"], message_id=row["id"], conversation_id=row["conversation_id"])
    lifecycle.record(conn, row["id"], "outbound", _REVIEW_REASONS[status],
                     evidence={"reason": reason} if reason else None)
    if status in (SENT, EXPIRED_APPROVED):  # released: Postfix's outbound queue has it
        lifecycle.record(conn, row["id"], "outbound", "submission.upstream_accepted")


def _check_via(via: str) -> None:
    if via not in VIAS:
        raise ValueError(f"unknown way of resolving {via!r}")


def _pending(conn: psycopg.Connection, message_id: str, owner_id: str | None) -> Row:
    row = store.lock(conn, message_id, owner_id)
    if row is None:
        raise NotFound(message_id)
    if row["status"] != PENDING:
        raise NotPending(message_id, row["status"] or "")
    return row


def stored_attachments(row: Row) -> list[Attachment]:
    """The held draft's attachments (the jsonb list of {filename,
    content_type, data (base64)})."""
    return [Attachment(item.get("filename", ""), item.get("content_type", ""),
                       base64.b64decode(item.get("data", "")))
            for item in row["attachments"] or []]


def _changes(row: Row, edits: Edits) -> dict[str, Any]:
    """The edits that really change the stored draft: field -> new value.
    Addresses compare without regard to case; a display name is a change
    (the stored recipients are bare addresses)."""
    changed: dict[str, Any] = {}
    for name, stored in (("subject", row["subject"] or ""), ("body_text", row["body_text"] or ""),
                         ("body_html", row["body_html"] or "")):
        value = getattr(edits, name)
        if value is not None and value != stored:
            changed[name] = value
    for name, column in (("to", "to_recipients"), ("cc", "cc"), ("bcc", "bcc")):
        value = getattr(edits, name)
        if value is None:
            continue
        boxes = [compose.mailbox(v, name) for v in value]
        if [b.address.lower() for b in boxes] != [a.lower() for a in row[column] or []] \
                or any(b.name for b in boxes):
            changed[name] = boxes
    if edits.attachments is not None and list(edits.attachments) != stored_attachments(row):
        changed["attachments"] = list(edits.attachments)
    return changed


def _recomposed(row: Row, changed: dict[str, Any], cfg: Config) -> Row:
    """The held draft with ``changed`` applied, composed again under the same
    Message-ID and thread headers; what finish_sent records of it."""
    def boxes(name: str, column: str) -> tuple[Mailbox, ...]:
        if name in changed:
            return tuple(changed[name])
        return tuple(Mailbox(a) for a in row[column] or [])

    sender = row["sender"] or row["agent_email"]
    unsubscribe_url, unsubscribe_mailto = unsubscribe.targets_of(row["raw_message"])
    draft = compose.Draft(
        sender=Mailbox(sender, row["agent_name"] if sender == row["agent_email"] else ""),
        to=boxes("to", "to_recipients"), cc=boxes("cc", "cc"), bcc=boxes("bcc", "bcc"),
        subject=changed.get("subject", row["subject"] or ""),
        text=changed.get("body_text", row["body_text"] or ""),
        html=changed.get("body_html", row["body_html"] or ""),
        attachments=tuple(changed.get("attachments", stored_attachments(row))),
        conversation_id=row["conversation_id"] or "",
        in_reply_to=row["in_reply_to"] or "",
        references=tuple(row["references_ids"] or ()),
        unsubscribe_url=unsubscribe_url, unsubscribe_mailto=unsubscribe_mailto)
    composed = compose.compose(draft, message_id=row["id"], domain=row["agent_domain"],
                               limits=compose.SendLimits.of(cfg),
                               email_message_id=row["email_message_id"] or "")
    return {"subject": composed.subject, "to": [b.address for b in draft.to],
            "cc": [b.address for b in draft.cc], "bcc": [b.address for b in draft.bcc],
            "raw": composed.raw, "recipients": composed.recipients}


def _sender_agent(row: Row) -> Row:
    return {"id": row["agent_id"], "user_id": row["user_id"], "email": row["agent_email"]}


def _recipients(row: Row, outgoing: Row | None) -> list[str]:
    if outgoing is not None:
        return list(outgoing["recipients"])
    return compose.unique_addresses(
        [Mailbox(a) for a in [*row["to_recipients"], *row["cc"], *row["bcc"]]])


def _release(conn: psycopg.Connection, cfg: Config, row: Row, outgoing: Row | None) -> str:
    recipients = _recipients(row, outgoing)
    if outgoing is not None:
        raw = outgoing["raw"]
    else:
        if row["raw_message"] is None:
            raise release.ReleaseError("the held message's content is gone", permanent=True)
        raw = bytes(row["raw_message"])
    return release.release(conn, cfg, message_id=row["id"], agent_domain=row["agent_domain"],
                           raw=raw, recipients=recipients)


def _done(message_id: str, status: str, via: str, *, edited: bool = False,
          queue_id: str = "", reason: str = "") -> Resolved:
    metrics.approvals.labels(action=status).inc()
    log.info("held message resolved", extra={"message_id": message_id, "status": status,
                                             "via": via, "edited": edited,
                                             "queue_id": queue_id})
    method = METHOD if status in (SENT, EXPIRED_APPROVED) else ""
    return Resolved(message_id, status, edited, method, queue_id, reason)
