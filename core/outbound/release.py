"""Letting an outbound message go: DKIM-signed with its From domain's key and
handed to Postfix's reinjection service (filter.reinject), which never hands
it to our content filter again, so the message never meets the hold again (an
operator's own content_filter, chained there by install, still sees it).

The content filter passes every message it lets through this way
(filter/gate.py), and a held message leaves the same way once approved
(core/outbound/approval.py): one signing and one reinjection for both.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence

import psycopg

from e2a.core.accounts import dkimkeys
from e2a.core.accounts.dkimkeys import SigningKey
from e2a.core.config import Config
from e2a.core.mail import headers
from e2a.core.mta import dkimsign, submit, verp
from e2a.core.mta.reinject import ReinjectError, Transaction, reinject
from e2a.core.net import addresses
from e2a.core.net.addresses import InetAddress

log = logging.getLogger("e2a.release")


class ReleaseError(Exception):
    """The message did not leave (reinjection refused or unreachable, or its
    signing key unreadable); str() is one line for a log or a reason, never
    message content. ``permanent``: Postfix refused it for good (a 5xx: it
    would be refused again as it is)."""

    def __init__(self, reason: str, *, permanent: bool = False) -> None:
        super().__init__(reason)
        self.permanent = permanent


def author_domain(raw: bytes) -> str:
    """The domain of the message's From address, lowercase ("" when none)."""
    return headers.from_address(headers.parse(raw)).rpartition("@")[2].lower()


def signing_key(conn: psycopg.Connection, cfg: Config, domain: str) -> SigningKey | None:
    """The key that signs mail from ``domain``; None when we hold none for it."""
    return dkimkeys.load_private_key(conn, cfg, domain) if domain else None


def sign_and_reinject(txn: Transaction, key: SigningKey | None, *, to: InetAddress, helo: str,
                      timeout: float, log_extra: dict[str, str] | None = None) -> str:
    """Sign ``txn``'s message with ``key`` (unsigned when None) and reinject
    it; the reinjection service's answer, naming its queue id. Raises
    policy.reinject.ReinjectError when it was not taken."""
    if key is not None:
        txn = dataclasses.replace(txn, data=dkimsign.sign(txn.data, key))
    else:
        log.info("From domain %r has no key of ours: passed on unsigned",
                 author_domain(txn.data), extra=log_extra or {})
    return reinject(to, txn, helo=helo, timeout=timeout)


def release(conn: psycopg.Connection, cfg: Config, *, message_id: str, agent_domain: str,
            raw: bytes, recipients: Sequence[str]) -> str:
    """Send our outbound message ``message_id`` (held until now) with its VERP
    return path; Postfix's queue id for it. ``conn`` only reads the signing
    key, in a transaction of its own: none stays open across the SMTP
    transaction (the caller's marker must be committed before it, and
    nothing it writes after may hang on our read). Raises ReleaseError when
    the message did not leave."""
    target = addresses.inet(cfg.filter.reinject)
    try:
        with conn.transaction():
            key = signing_key(conn, cfg, author_domain(raw))
    except dkimkeys.DkimKeyError as exc:
        raise ReleaseError(str(exc)) from None
    txn = Transaction(
        verp.return_path(message_id, agent_domain, verp.key(cfg)), list(recipients), raw,
        # What Postfix must be told of a held SMTP submission's 8-bit body
        # or UTF-8 addresses; a composed message is 7-bit ASCII.
        body_type="8BITMIME" if not raw.isascii() else "",
        smtputf8=not all(r.isascii() for r in recipients))
    try:
        reply = sign_and_reinject(txn, key, to=target, helo=cfg.mail.hostname,
                                  timeout=cfg.submit.timeout, log_extra={"message_id": message_id})
    except ReinjectError as exc:
        raise ReleaseError(str(exc), permanent=exc.permanent) from None
    queue_id = submit.queue_id(reply)
    if not queue_id:
        log.warning("no queue id in the reinjection's answer", extra={"message_id": message_id})
    return queue_id
