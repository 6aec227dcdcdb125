"""Bounces: delivery status notifications coming back to a VERP return path.

Outbound mail leaves with the envelope sender ``bounces+<msg_id>-<mac>@<agent's
domain>`` (core/mta/verp.py), so a DSN (RFC 3464) for that address reports on
that message. A report with ``Action: failed`` whose Final-Recipient is one
of that message's recipients marks the message bounced, with the reason,
and queues an ``email.bounced`` event, in one transaction, with the
failed recipients suppressed for the account (core/protection/brakes.hard_bounced). A report about
any other address is nobody's business of ours: whoever learnt a return
path must not mark the message bounced with a DSN about someone else.
``Action: delayed`` is a warning (Postfix keeps trying) and changes nothing.

Every VERP address on one of our domains is consumed, whatever arrives
there and whether or not its message is known: nobody reads these
mailboxes, and a bounce must never cause another one (backscatter).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from email import policy
from email.message import Message
from email.parser import BytesParser
from typing import Any

from psycopg_pool import ConnectionPool

from e2a.core.ids import new_id
from e2a.core.mta import verp
from e2a.core.protection import brakes
from e2a.core.store import agents as agent_store
from e2a.core.store import events as event_store
from e2a.core.store import outbound as outbound_store
from e2a.core.webhooks import eventtypes

log = logging.getLogger("e2a.bounces")

# delivery_error is shown to API clients; a DSN for hundreds of recipients
# would otherwise make it as long as the DSN.
MAX_ERROR = 1000


@dataclass(frozen=True)
class Report:
    """One per-recipient block of a DSN."""

    recipient: str  # Final-Recipient, the address only
    action: str  # failed | delayed | delivered | relayed | expanded (lowercase)
    status: str  # the enhanced status code, e.g. 5.1.1
    diagnostic: str  # Diagnostic-Code without its type, e.g. "550 5.1.1 ..."


def verp_recipients(recipients: Sequence[str]) -> list[str]:
    """The recipients that look like VERP return paths (no database asked)."""
    return [r for r in recipients if verp.shaped(r)]


def reports(raw: bytes) -> list[Report]:
    """The per-recipient reports of a DSN; [] when ``raw`` is not one."""
    try:
        msg = BytesParser(policy=policy.default).parsebytes(raw)
        if msg.get_content_type() != "multipart/report":
            return []
        found: list[Report] = []
        for part in msg.iter_parts():
            if part.get_content_type() != "message/delivery-status":
                continue
            # The first block describes the message, each further one a recipient.
            for block in part.get_payload()[1:]:
                if isinstance(block, Message):
                    found.append(_report(block))
        return found
    except Exception:
        # Anything too broken to read is no DSN (and must not make us 4xx
        # forever: the sender would retry it for days).
        log.info("unreadable report at a bounce address", exc_info=True)
        return []


def _report(block: Message) -> Report:
    def field(name: str) -> str:
        value = block.get(name)
        return " ".join(str(value).split()) if value is not None else ""

    def typed(name: str) -> str:  # "rfc822; a@b" -> "a@b", "smtp; 550 ..." -> "550 ..."
        kind, sep, rest = field(name).partition(";")
        return rest.strip() if sep else kind

    return Report(recipient=typed("Final-Recipient") or typed("Original-Recipient"),
                  action=field("Action").lower(), status=field("Status"),
                  diagnostic=typed("Diagnostic-Code"))


def reason(failed: Sequence[Report]) -> str:
    """delivery_error: each refused recipient with what its server said."""
    parts = [f"{r.recipient}: {r.diagnostic or r.status or 'failed'}" for r in failed]
    text = "; ".join(parts)
    return text if len(text) <= MAX_ERROR else text[:MAX_ERROR - 3] + "..."


def about(failed: Sequence[Report], row: Mapping[str, Any]) -> list[Report]:
    """The reports among ``failed`` on one of the outbound ``row``'s own
    recipients (To, Cc, Bcc; compared without regard to case)."""
    own = {a.lower() for column in ("to_recipients", "cc", "bcc") for a in row[column] or []}
    return [r for r in failed if r.recipient.lower() in own]


def consume(pool: ConnectionPool, raw: bytes, recipients: Sequence[str], verp_key: bytes,
            queue_id: str = "") -> list[str]:
    """Handle the mail for our VERP addresses among ``recipients``; return
    those addresses (the caller takes them away from Postfix). Raises on a
    database error: the caller answers 4xx and the DSN comes again."""
    candidates = verp_recipients(recipients)
    if not candidates:
        return []
    failed = [r for r in reports(raw) if r.action == "failed"]
    consumed: list[str] = []
    with pool.connection() as conn, conn.transaction():
        for rcpt in candidates:
            domain = verp.domain_of(rcpt)
            if agent_store.domain_by_name(conn, domain) is None:
                continue  # not ours: it passes on like any other address
            consumed.append(rcpt)
            message_id = verp.parse(rcpt, verp_key)  # None: a MAC not ours
            row = outbound_store.outbound_by_id(conn, message_id) if message_id else None
            if row is None or row["agent_domain"] != domain:
                log.info("bounce for an unknown message consumed",
                         extra={"queue_id": queue_id, "message_id": message_id})
                continue
            theirs = about(failed, row)
            if not theirs:
                log.info("report without a failure of one of the message's recipients "
                         "(a delay warning, an auto-reply, another address) consumed",
                         extra={"queue_id": queue_id, "message_id": message_id})
                continue
            error = reason(theirs)
            if not outbound_store.record_bounced(conn, message_id, error):
                log.info("bounce already recorded", extra={"queue_id": queue_id,
                                                          "message_id": message_id})
                continue
            event_store.insert_event(
                conn, new_id("evt"), row["user_id"], eventtypes.EMAIL_BOUNCED,
                {"message_id": message_id, "agent_id": row["agent_id"],
                 "from": row["agent_email"], "conversation_id": row["conversation_id"] or "",
                 "recipients": [r.recipient for r in theirs],
                 "status": theirs[0].status, "delivery_error": error},
                agent_id=row["agent_id"], message_id=message_id,
                conversation_id=row["conversation_id"])
            brakes.hard_bounced(conn, {**row, "id": message_id},
                                [(r.recipient, r.diagnostic or r.status) for r in theirs
                                 if not r.status.startswith("4")])
            log.info("bounce recorded", extra={"queue_id": queue_id, "message_id": message_id,
                                               "failed": len(theirs)})
    return consumed
