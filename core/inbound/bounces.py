"""Bounces: delivery status notifications coming back to a VERP return path.

Outbound mail leaves with the envelope sender ``bounces+<msg_id>-<mac>@<agent's
domain>`` (core/mta/verp.py), so a DSN (RFC 3464, read by core/mta/dsn.py)
for that address reports on that message. Postfix sends one for every
outcome we ask it to (success, delay, failure): each report about one of
that message's own recipients moves that recipient's fate forward, with
its events and lifecycle steps, in one transaction (core/outbound/delivery.py);
a hard bounce suppresses the address for the account (core/outbound/brakes.hard_bounced).
A report about any other address is nobody's business of ours: whoever
learnt a return path must not mark the message with a DSN about someone else.

Every VERP address on one of our domains is consumed, whatever arrives
there and whether or not its message is known: nobody reads these
mailboxes, and a bounce must never cause another one (backscatter).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from psycopg_pool import ConnectionPool

from e2a.core.mta import dsn, verp
from e2a.core.outbound import delivery
from e2a.core.store import agents as agent_store
from e2a.core.store import outbound as outbound_store

log = logging.getLogger("e2a.bounces")


def verp_recipients(recipients: Sequence[str]) -> list[str]:
    """The recipients that look like VERP return paths (no database asked)."""
    return [r for r in recipients if verp.shaped(r)]


def consume(pool: ConnectionPool, raw: bytes, recipients: Sequence[str], verp_key: bytes,
            queue_id: str = "") -> list[str]:
    """Handle the mail for our VERP addresses among ``recipients``; return
    those addresses (the caller takes them away from Postfix). Raises on a
    database error: the caller answers 4xx and the DSN comes again."""
    candidates = verp_recipients(recipients)
    if not candidates:
        return []
    reports = dsn.reports(raw)
    consumed: list[str] = []
    with pool.connection() as conn, conn.transaction():
        for rcpt in sorted(candidates):  # one order of row locks for all
            domain = verp.domain_of(rcpt)
            message_id = verp.parse(rcpt, verp_key)  # None: a MAC not ours
            row = outbound_store.outbound_by_id(conn, message_id, lock=True) \
                if message_id else None
            if row is None or row["agent_domain"] != domain:
                # Its message's agent's domain is ours: asked only otherwise.
                if agent_store.domain_by_name(conn, domain) is None:
                    continue  # not ours: it passes on like any other address
                consumed.append(rcpt)
                log.info("report for an unknown message consumed",
                         extra={"queue_id": queue_id, "message_id": message_id})
                continue
            consumed.append(rcpt)
            changed = delivery.apply(conn, row, reports, queue_id=queue_id)
            log.info("report consumed", extra={"queue_id": queue_id, "message_id": message_id,
                                               "recipients_changed": changed})
    return consumed
