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
import hashlib
import hmac
import logging
import time
from collections.abc import Sequence
from email.message import EmailMessage

import psycopg

from e2a.core.accounts import dkimkeys
from e2a.core.accounts.dkimkeys import SigningKey
from e2a.core.config import Config
from e2a.core.crypto import serverkeys as keys
from e2a.core.mail import headers
from e2a.core.messages import conversations
from e2a.core.mta import dkimsign, dsn, submit, verp
from e2a.core.mta.reinject import ReinjectError, Transaction, reinject
from e2a.core.net import addresses
from e2a.core.net.addresses import InetAddress
from e2a.core.store import domains as domain_store
from e2a.core.store import outbound as outbound_store

log = logging.getLogger("e2a.release")


# How long a reinjection login stays good, and how far a host's clock may
# run ahead of the one checking it.
LOGIN_SECONDS = 300
LOGIN_SKEW = 60


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
    """The key that signs the deployment's own mail from ``domain`` (owner
    notifications); None when we hold none for it. An agent's mail is
    signed with agent_signing_key."""
    return dkimkeys.load_private_key(conn, cfg, domain) if domain else None


def agent_signing_key(conn: psycopg.Connection, cfg: Config, raw: bytes,
                      user_id: str, msg: EmailMessage | None = None) -> SigningKey | None:
    """The key that signs a message of ``user_id``'s agent: its From
    domain's, only when that is one domain and a domain of this owner
    (domains.signing_key_of_owner). A From naming another tenant's domain, or any domain
    we hold a key for that is not the owner's, leaves unsigned: our
    signature would vouch for a name the sender does not own. ``msg``:
    ``raw`` parsed already (headers.parse)."""
    parsed = msg if msg is not None else headers.parse(raw)
    authors = [addresses.mailbox(a) for a in headers.header_addresses(parsed, "From")]
    domains = {a.rpartition("@")[2] for a in authors}
    if len(domains) != 1:
        return None
    domain = domains.pop()
    row = domain_store.signing_key_of_owner(conn, domain, user_id, authors)
    if row is None or not row["may_sign"]:
        log.warning("From domain %r is not the sender's owner's: passed on unsigned", domain)
        return None
    return dkimkeys.signing_key(cfg, row)


def reinject_login(cfg: Config, now: float | None = None) -> str:
    """The login the filter and release give the reinjection service (SMTP
    XCLIENT LOGIN): it proves the client is one of ours, and the service
    refuses every other client (master.cf, policy/socketmap.py). Good for
    LOGIN_SECONDS: Postfix logs it, so a copy from the log is soon useless.
    Derived from the deployment secret, so every host of one deployment
    makes and checks it alike; it never shows in a message."""
    stamp = str(int(time.time() if now is None else now))
    return f"e2a.{stamp}.{_login_mac(cfg.secrets.hmac_secret, stamp)}"


def valid_login(secret: str, login: str, now: float | None = None) -> bool:
    """Whether ``login`` is a reinject_login of this deployment, still good."""
    prefix, _, rest = login.partition(".")
    stamp, _, mac = rest.partition(".")
    if prefix != "e2a" or not stamp.isdigit() or len(stamp) > 12:
        return False
    age = (time.time() if now is None else now) - int(stamp)
    return -LOGIN_SKEW <= age <= LOGIN_SECONDS \
        and hmac.compare_digest(mac.encode("utf-8", "replace"),
                                _login_mac(secret, stamp).encode())


def _login_mac(secret: str, stamp: str) -> str:
    key = keys.derive(secret, keys.REINJECT_LOGIN)
    return hmac.new(key, stamp.encode(), hashlib.sha256).hexdigest()[:32]


def _without_header(raw: bytes, name: str) -> bytes:
    """``raw`` without any ``name`` header field (folded lines included)."""
    head, sep, body = raw.partition(b"\r\n\r\n")
    if not sep:
        return raw
    wanted = name.lower().encode("ascii")
    kept: list[bytes] = []
    dropping = False
    for line in head.split(b"\r\n"):
        if line[:1] in (b" ", b"\t"):
            if not dropping:
                kept.append(line)
            continue
        dropping = line.split(b":", 1)[0].strip().lower() == wanted
        if not dropping:
            kept.append(line)
    if len(kept) == len(head.split(b"\r\n")):
        return raw
    return b"\r\n".join(kept) + sep + body


def sign_and_reinject(txn: Transaction, key: SigningKey | None, *, to: InetAddress, helo: str,
                      timeout: float, login: str,
                      log_extra: dict[str, str] | None = None) -> str:
    """Sign ``txn``'s message with ``key`` (unsigned when None) and reinject
    it; the reinjection service's answer, naming its queue id. Raises
    core.mta.reinject.ReinjectError when it was not taken.

    Our conversation header is taken out first: it is an internal id that
    the world has no use for, and our own milter threads an agent's mail to
    another agent by the sender's outbound row, never by a header."""
    txn = dataclasses.replace(txn, data=_without_header(txn.data, conversations.HEADER))
    if key is not None:
        txn = dataclasses.replace(txn, data=dkimsign.sign(txn.data, key))
    else:
        log.info("no key of the sender's for From domain %r: passed on unsigned",
                 author_domain(txn.data), extra=log_extra or {})
    return reinject(to, txn, helo=helo, timeout=timeout, login=login)


def release(conn: psycopg.Connection, cfg: Config, *, message_id: str, agent_domain: str,
            raw: bytes, recipients: Sequence[str]) -> str:
    """Send our outbound message ``message_id`` (held until now) with its VERP
    return path; Postfix's queue id for it. ``conn`` only reads the signing
    key, in a transaction of its own: none stays open across the SMTP
    transaction (the caller's marker must be committed before it, and
    nothing it writes after may hang on our read). Raises ReleaseError when
    the message did not leave."""
    target = addresses.inet(cfg.filter.reinject)
    with conn.transaction():
        row = outbound_store.outbound_by_id(conn, message_id)
    if row is None:
        raise ReleaseError(f"no outbound message {message_id}")
    try:
        with conn.transaction():
            key = agent_signing_key(conn, cfg, raw, row["user_id"])
    except dkimkeys.DkimKeyError as exc:
        raise ReleaseError(str(exc)) from None
    txn = Transaction(
        verp.return_path(message_id, agent_domain, verp.key(cfg)), list(recipients), raw,
        # What Postfix must be told of a held SMTP submission's 8-bit body
        # or UTF-8 addresses; a composed message is 7-bit ASCII.
        body_type="8BITMIME" if not raw.isascii() else "",
        smtputf8=not all(r.isascii() for r in recipients),
        dsn=dsn.Dsn(message_id))
    try:
        reply = sign_and_reinject(txn, key, to=target, helo=cfg.mail.hostname,
                                  timeout=cfg.submit.timeout, login=reinject_login(cfg),
                                  log_extra={"message_id": message_id})
    except ReinjectError as exc:
        raise ReleaseError(str(exc), permanent=exc.permanent) from None
    queue_id = submit.queue_id(reply)
    if not queue_id:
        log.warning("no queue id in the reinjection's answer", extra={"message_id": message_id})
    return queue_id
