"""The one outbound gate: what happens to each message the content filter
receives, between Postfix's submit queue and its reinjection service.

For every message: find (or make) its outbound row, ask the one hold
decision (held: stored as pending_approval by core/outbound/holds.py, 250, not passed
on), DKIM-sign it with its From domain's key, hand it back to Postfix
with its VERP return path, and record Postfix's new queue id on the row.
Any failure raises: the filter answers 4xx and Postfix keeps the message.
"""

from __future__ import annotations

import dataclasses
import logging

import psycopg
from psycopg_pool import ConnectionPool

from e2a.core import timefmt
from e2a.core.config import Config
from e2a.core.mail import headers
from e2a.core.mta import dsn, submit, verp, xforward
from e2a.core.mta.reinject import ReinjectError, Transaction, reinject
from e2a.core.net.addresses import InetAddress
from e2a.core.outbound import brakes, delivery, holds, release, screening
from e2a.core.outbound import decision as outbound
from e2a.core.outbound import identify as outgoing
from e2a.core.runtime import metrics

log = logging.getLogger("e2a.filter")

# How long a message waits for a database connection before the filter
# gives up on it (4xx; Postfix tries again).
DB_TIMEOUT = 10.0
# How pass_on's answer starts when the message was held, not passed on.
HELD = "2.0.0 Ok: held for approval"
# Agent mail submitted elsewhere than this host (SASL submission, a host of
# mynetworks): Postfix returns it to its sender with this reason.
FOREIGN_AGENT = f"550 5.7.1 {outbound.FOREIGN_AGENT}"


class Refused(Exception):
    """The message is refused for good; str() is the SMTP reply."""


def protection_refusal(sending: outgoing.Sending) -> str:
    """The text of a 550 for mail the agent's protection blocks: one line,
    printable ASCII (it ends up in the bounce)."""
    reason = sending.screened.reason if sending.screened is not None else ""
    text = "".join(c for c in reason if c.isascii() and c.isprintable())[:300]
    return f"refused by the agent's protection settings: {text or 'blocked'}"


class Gate:
    def __init__(self, pool: ConnectionPool, cfg: Config, reinject_to: InetAddress, *,
                 helo: str, timeout: float, db_timeout: float = DB_TIMEOUT) -> None:
        self.pool = pool
        self.cfg = cfg
        self.reinject_to = reinject_to
        self.helo = helo
        self.timeout = timeout
        self.db_timeout = db_timeout
        self.verp_key = verp.key(cfg)

    def pass_on(self, txn: Transaction) -> str:
        """Pass ``txn`` on; the reinjection service's answer (naming its queue id)."""
        queue_id = txn.xforward.get("IDENT", "")
        msg = headers.parse(txn.data)
        if not xforward.from_this_host(txn.xforward):
            # Postfix's content_filter sends all its mail here, the internet's
            # too (to the host's own users, relayed domains): no agent sent
            # it, so it is never signed, held or recorded as an agent's. One
            # that names an agent as a sender (remote submission, a host of
            # mynetworks) would leave in the agent's name unheld and
            # unsigned: refused. (The milter refuses it during SMTP already
            # where it runs.)
            with self.pool.connection(timeout=self.db_timeout) as conn:
                if outbound.sending_agents(conn, txn.mail_from, msg):
                    log.info("refused: agent sender from a client that is not this host",
                             extra={"queue_id": queue_id})
                    raise Refused(FOREIGN_AGENT)
            log.info("not from this host: passed on untouched", extra={"queue_id": queue_id})
            return reinject(self.reinject_to, txn, helo=self.helo, timeout=self.timeout,
                            login=release.reinject_login(self.cfg))
        sub = outgoing.Submission(txn.mail_from, txn.recipients, txn.data, msg, queue_id)
        with self.pool.connection(timeout=self.db_timeout) as conn:
            sending = outgoing.identify(conn, sub, self.verp_key)
            if sending is not None and sending.passed_on_as:
                # Our earlier 250 was lost on its way to Postfix.
                log.info("passed on before, not again", extra={
                    "queue_id": queue_id, "message_id": sending.message_id})
                return f"2.0.0 Ok: queued as {sending.passed_on_as}"
            brake = brakes.PASS if sending is None else brakes.at_filter(
                conn, self.cfg, sending.agent, txn.recipients, msg,
                message_id=sending.message_id, counted=txn.mail_from == sending.return_path)
            if sending is not None and brake.action in brakes.REFUSALS:
                if brake.action is not brakes.Action.THROTTLE:  # 5xx: Postfix returns it
                    delivery.failed(conn, sending.message_id, brake.reason)
                raise Refused(brake.smtp_reply)
            decision = outbound.decide(outbound.Candidate(
                txn.mail_from, txn.recipients, txn.data,
                agent=sending.agent if sending is not None else None,
                status=sending.status if sending is not None else "sent",
                senders=sending.senders if sending is not None else (),
                screened=sending.screened if sending is not None else None,
                brake_hold=brake.reason if brake.action is brakes.Action.HOLD else ""))
            if decision is outbound.Decision.BLOCK and sending is not None:
                log.info("refused by the agent's protection: %s", sending.screened, extra={
                    "queue_id": queue_id, "agent": sending.agent["email"]})
                raise Refused(f"550 5.7.1 {protection_refusal(sending)}")
            if decision is outbound.Decision.HOLD and sending is not None:
                return self._hold(conn, sending, txn, queue_id,
                                  brake if brake.action is brakes.Action.HOLD else None)
            if decision is not outbound.Decision.PASS:
                raise RuntimeError(f"the filter cannot handle outbound decision {decision}")
            # Only an agent's mail, and only with a key of its owner's domain.
            key = release.agent_signing_key(conn, self.cfg, txn.data, sending.agent["user_id"],
                                            msg) if sending is not None else None
        if sending is not None:
            # The reinjection makes the queue file that goes to the internet:
            # asked there, Postfix reports every recipient's fate to the
            # return path (core/mta/dsn.py), the content filter's hop never.
            txn = dataclasses.replace(txn, mail_from=sending.return_path,
                                      dsn=dsn.Dsn(sending.message_id))
        try:
            reply = release.sign_and_reinject(txn, key, to=self.reinject_to, helo=self.helo,
                                              timeout=self.timeout,
                                              login=release.reinject_login(self.cfg),
                                              log_extra={"queue_id": queue_id})
        except ReinjectError as exc:
            if exc.permanent and sending is not None:
                # The filter answers with the 5xx and Postfix bounces the
                # message: the row says so now, not after days of retries.
                with self.pool.connection(timeout=self.db_timeout) as conn, \
                        conn.transaction():
                    delivery.failed(conn, sending.message_id, str(exc))
            raise
        if sending is not None:
            new_queue_id = submit.queue_id(reply)
            if not new_queue_id:
                log.warning("no queue id in the reinjection's answer", extra={
                    "queue_id": queue_id, "message_id": sending.message_id})
            with self.pool.connection(timeout=self.db_timeout) as conn:
                delivery.passed_on(conn, sending.message_id, new_queue_id)
            log.info("sent", extra={"queue_id": queue_id, "message_id": sending.message_id,
                                    "agent": sending.agent["email"], "signed": key is not None})
        return reply

    def _hold(self, conn: psycopg.Connection, sending: outgoing.Sending, txn: Transaction,
              queue_id: str, brake: brakes.Verdict | None) -> str:
        """Keep the message for a person's decision: stored, not passed on.
        The 250 follows the commit; release (core/outbound/release.py) sends it later."""
        with conn.transaction():
            held = holds.hold(conn, sending.message_id, txn.data, sending.agent,
                              screening.brake_held(brake.reason if brake else "", sending.screened,
                                                   brake.brake if brake else ""))
        if held.pending:
            metrics.holds.inc()
            log.info("held for approval", extra={
                "queue_id": queue_id, "message_id": sending.message_id,
                "agent": sending.agent["email"], "recipients": len(txn.recipients),
                "approval_expires_at": timefmt.rfc3339(held.approval_expires_at)})
        else:
            # Postfix retried a message that was decided on meanwhile.
            log.info("decided on before (%s), not held or sent again", held.status, extra={
                "queue_id": queue_id, "message_id": sending.message_id})
        return f"{HELD} as {sending.message_id}"
