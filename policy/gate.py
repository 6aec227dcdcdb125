"""The one outbound gate: what happens to each message the content filter
receives, between Postfix's submit queue and its reinjection service.

For every message: find (or make) its outbound row, ask the one hold
decision, DKIM-sign it with its From domain's key, hand it back to Postfix
with its VERP return path, and record Postfix's new queue id on the row.
Any failure raises: the filter answers 4xx and Postfix keeps the message.
"""

from __future__ import annotations

import dataclasses
import logging

from psycopg_pool import ConnectionPool

from e2a.core import dkimkeys, dkimsign, inbound, outbound, outgoing, submit
from e2a.core.addresses import InetAddress
from e2a.core.config import Config
from e2a.core.store import outbound as outbound_store
from e2a.policy.reinject import Transaction, reinject

log = logging.getLogger("e2a.filter")

# How long a message waits for a database connection before the filter
# gives up on it (4xx; Postfix tries again).
DB_TIMEOUT = 10.0


class Gate:
    def __init__(self, pool: ConnectionPool, cfg: Config, reinject_to: InetAddress, *,
                 helo: str, timeout: float, db_timeout: float = DB_TIMEOUT) -> None:
        self.pool = pool
        self.cfg = cfg
        self.reinject_to = reinject_to
        self.helo = helo
        self.timeout = timeout
        self.db_timeout = db_timeout

    def pass_on(self, txn: Transaction) -> str:
        """Pass ``txn`` on; the reinjection service's answer (naming its queue id)."""
        headers = inbound.parse(txn.data)
        queue_id = txn.xforward.get("IDENT", "")
        sub = outgoing.Submission(txn.mail_from, txn.recipients, txn.data, headers, queue_id)
        author_domain = inbound.from_address(headers).rpartition("@")[2].lower()
        with self.pool.connection(timeout=self.db_timeout) as conn:
            sending = outgoing.identify(conn, sub)
            if sending is not None and sending.passed_on_as:
                # Our earlier 250 was lost on its way to Postfix.
                log.info("passed on before, not again", extra={
                    "queue_id": queue_id, "message_id": sending.message_id})
                return f"2.0.0 Ok: queued as {sending.passed_on_as}"
            decision = outbound.decide(outbound.Outgoing(
                txn.mail_from, txn.recipients, txn.data,
                agent=sending.agent if sending is not None else None))
            if decision is not outbound.Decision.PASS:
                raise RuntimeError(f"the filter cannot handle outbound decision {decision}")
            key = dkimkeys.load_private_key(conn, self.cfg, author_domain) \
                if author_domain else None
        if key is not None:
            txn = dataclasses.replace(txn, data=dkimsign.sign(txn.data, key))
        else:
            log.info("From domain %r has no key of ours: passed on unsigned", author_domain,
                     extra={"queue_id": queue_id})
        if sending is not None:
            txn = dataclasses.replace(txn, mail_from=sending.return_path)
        reply = reinject(self.reinject_to, txn, helo=self.helo, timeout=self.timeout)
        if sending is not None:
            new_queue_id = submit.queue_id(reply)
            if not new_queue_id:
                log.warning("no queue id in the reinjection's answer", extra={
                    "queue_id": queue_id, "message_id": sending.message_id})
            with self.pool.connection(timeout=self.db_timeout) as conn:
                outbound_store.record_passed_on(conn, sending.message_id, new_queue_id)
            log.info("sent", extra={"queue_id": queue_id, "message_id": sending.message_id,
                                    "agent": sending.agent["email"], "signed": key is not None})
        return reply
