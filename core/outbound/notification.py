"""Telling an owner that a message of one of their agents is held: the
worker's ``notify owners`` job.

One mail per held message, through Postfix (the reinjection service: it is
our own mail, the hold is not for it), DKIM-signed when we hold a key for the
notify_from domain. It names the agent, the recipients, the subject and the
expiry, never the body (mailboxes get forwarded and indexed; the draft is
for the review page), and carries the approve and reject magic links, the
review link and, as Reply-To, the address a one-word reply acts on.

At most ``hitl.notify_per_hour`` mails go to one owner in any hour (default
10): an agent looping on held sends would otherwise mail its owner thousands
of times a day. Messages held while the owner is at the limit wait, and the
next mail, once the hour has room, sums them all up (with each one's links).

Each owner is claimed FOR UPDATE SKIP LOCKED, and its messages marked
notified in the same transaction, after Postfix's 250: two workers never
mail the same owner about the same message, and a notification that did not
leave is tried again.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import Any

import psycopg

from e2a.core.accounts import dkimkeys
from e2a.core.config import Config
from e2a.core.crypto import serverkeys as keys
from e2a.core.crypto import tokens
from e2a.core.mta.reinject import ReinjectError, Transaction
from e2a.core.net import addresses
from e2a.core.outbound import compose, release, replyaddress
from e2a.core.store import notifications as notification_store
from e2a.core.timefmt import rfc3339

log = logging.getLogger("e2a.notification")

BATCH = 20  # notification mails per job run
# Held messages one summary lists at most; more wait for the next mail.
DIGEST_MAX = 50
# A link stays usable this long after the hold expired (docs/contract.md), so a
# click in the last minute still shows a page that says what happened.
LINK_GRACE_SECONDS = 600
REPLY_WORDS = "approve, yes, lgtm or ok; reject or no"


def links(cfg: Config, owner_id: str, message_id: str,
          expires_at: datetime) -> dict[str, str]:
    """The magic links for ``owner_id``'s held message, signed with the
    owner's keys.MAGIC_LINK key (core/crypto/serverkeys.py), never a secret agents hold."""
    base = cfg.http.public_url.rstrip("/")
    exp = int(expires_at.timestamp()) + LINK_GRACE_SECONDS
    key = keys.for_owner(cfg, keys.MAGIC_LINK, owner_id)
    return {
        "approve": f"{base}/api/v1/approve?token="
                   + tokens.magic_link(key, message_id, "approve", exp),
        "reject": f"{base}/api/v1/reject?token="
                  + tokens.magic_link(key, message_id, "reject", exp),
        "review": f"{base}/api/v1/messages/{message_id}",
        # The dashboard's page of the draft (edit, then approve or reject);
        # opening it asks for a sign-in when the browser has no session.
        "dashboard": f"{base}/dashboard/pending/{message_id}",
    }


def _details(cfg: Config, held: Mapping[str, Any]) -> list[str]:
    """What the owner reads of one held message: who, to whom, what, until
    when, and its links (never its body)."""
    subject = compose.one_line(held["subject"] or "") or "(no subject)"
    urls = links(cfg, held["user_id"], held["id"], held["approval_expires_at"])
    after = ("it is sent anyway" if held["hitl_expiration_action"] == "approve"
             else "it is discarded")
    lines = [f"Agent:    {held['agent_email']}",
             f"To:       {', '.join(held['to_recipients']) or '-'}"]
    if held["cc"]:
        lines.append(f"Cc:       {', '.join(held['cc'])}")
    if held["bcc"]:
        lines.append(f"Bcc:      {', '.join(held['bcc'])}")
    return [
        *lines,
        f"Subject:  {subject}",
        f"Expires:  {rfc3339(held['approval_expires_at'])} (if nobody decides by then, "
        f"{after})",
        "",
        "Review & approve:",
        urls["approve"],
        "",
        "Review & reject:",
        urls["reject"],
        "",
        "Review page (API):",
        urls["review"],
        "",
        "Edit in the dashboard:",
        urls["dashboard"],
    ]


def owner_mail(cfg: Config, owner_email: str, subject: str, lines: list[str],
               now: datetime | None, *, from_name: str = "e2a approvals") -> EmailMessage:
    """A plain-text mail of ours to an owner (a notification, a dashboard
    sign-in link), from hitl.notify_from."""
    msg = EmailMessage(policy=compose.POLICY)
    msg["From"] = Address(from_name, addr_spec=cfg.hitl.notify_from)
    msg["To"] = owner_email
    msg["Subject"] = subject
    msg["Date"] = format_datetime(now or datetime.now(UTC))
    msg["Message-ID"] = make_msgid(domain=cfg.hitl.reply_domain)
    # RFC 3834: no vacation replies to this.
    msg["Auto-Submitted"] = "auto-generated"
    msg.set_content("\n".join(lines) + "\n")
    return msg


def notice(cfg: Config, owner_email: str, subject: str, lines: list[str]) -> bytes:
    """Any other mail to an owner (an agent paused by its brakes), in the
    same form and through the same ``send``."""
    return owner_mail(cfg, owner_email, subject, lines, None).as_bytes()


def render(cfg: Config, held: Mapping[str, Any], *, now: datetime | None = None) -> bytes:
    """The notification for ``held`` (an unnotified_of row), CRLF line ends."""
    subject = compose.one_line(held["subject"] or "") or "(no subject)"
    lines = [
        f"Your agent {held['agent_email']} wants to send a message. It is held",
        "until you approve or reject it.",
        "",
        *_details(cfg, held),
        "",
        f"Or reply to this mail with one word on the first line: {REPLY_WORDS}.",
    ]
    msg = owner_mail(cfg, held["owner_email"], f"Approval needed: {subject}", lines, now)
    msg["Reply-To"] = replyaddress.build(
        held["id"], keys.for_owner(cfg, keys.REPLY_ADDRESS, held["user_id"]),
        cfg.hitl.reply_domain)
    return msg.as_bytes()


def render_digest(cfg: Config, held: Sequence[Mapping[str, Any]], *,
                  now: datetime | None = None) -> bytes:
    """One notification for several held messages of one owner: what waited
    while the owner's hourly limit was reached. No reply address: a reply
    acts on one message, and here the links say which."""
    lines = [
        f"Your agents want to send {len(held)} messages. Each is held until you",
        "approve or reject it. (You get at most "
        f"{cfg.hitl.notify_per_hour} of these mails an hour; this one sums up",
        "what came in meanwhile.)",
    ]
    for n, one in enumerate(held, 1):
        lines += ["", f"-- {n} of {len(held)} " + "-" * 40, *_details(cfg, one)]
    return owner_mail(cfg, held[0]["owner_email"],
                 f"Approval needed: {len(held)} messages of your agents", lines,
                 now).as_bytes()


def send(conn: psycopg.Connection, cfg: Config, held: Mapping[str, Any], raw: bytes) -> str:
    """Mail the owner the notification ``raw`` about ``held``; Postfix's
    answer. Raises ReinjectError when it did not leave."""
    return deliver(conn, cfg, held["owner_email"], raw, {"message_id": held["id"]})


def deliver(conn: psycopg.Connection, cfg: Config, recipient: str, raw: bytes,
            log_extra: Mapping[str, Any]) -> str:
    """Hand our own mail ``raw`` for ``recipient`` to Postfix (the reinjection
    service), DKIM-signed when we hold a key for notify_from's domain;
    Postfix's answer. Raises ReinjectError when it did not leave."""
    target = addresses.inet(cfg.filter.reinject)
    try:
        key = release.signing_key(conn, cfg, cfg.hitl.notify_from.rpartition("@")[2].lower())
    except dkimkeys.DkimKeyError as exc:
        # Unsigned is still better than no mail at all.
        log.warning("owner mail not signed: %s", exc, extra=dict(log_extra))
        key = None
    # The null sender: our mail that cannot be delivered bounces to nobody.
    txn = Transaction("", [recipient], raw)
    return release.sign_and_reinject(txn, key, to=target, helo=cfg.mail.hostname,
                                     login=release.reinject_login(cfg),
                                     timeout=cfg.submit.timeout, log_extra=dict(log_extra))


def notify_owners(cfg: Config, conn: psycopg.Connection, limit: int = BATCH) -> int:
    """Notify owners of their held messages nobody told them about, up to
    ``limit`` mails; how many messages were handled. One mail per owner at a
    time: one message gets its own notification, several (what waited while
    the owner was at hitl.notify_per_hour) one summary. An owner at the limit
    is passed over until the hour has room again, so an agent looping on
    held sends cannot flood its owner's mailbox. Stops at the first mail
    Postfix does not take (unreachable, most likely): the next run tries it
    again. A message that cannot even be written as mail never will be: it
    is logged and passed over, so it does not hold up the others."""
    done = 0
    for _ in range(limit):
        with conn.transaction():
            owner = notification_store.claim_owner(conn, cfg.hitl.notify_per_hour)
            if owner is None:
                break
            held = notification_store.unnotified_of(conn, owner["user_id"], DIGEST_MAX)
            if not held:
                continue  # another worker holds them all
            ids = [h["id"] for h in held]
            extra = {"message_id": ",".join(ids)}
            writable = [h for h in held if _renders(cfg, h)]
            if writable:
                raw = (render(cfg, writable[0]) if len(writable) == 1
                       else render_digest(cfg, writable))
                try:
                    send(conn, cfg, held[0], raw)
                except ReinjectError as exc:
                    log.warning("owner notification not sent, retrying later: %s", exc,
                                extra=extra)
                    break
                notification_store.record_sent(conn, owner["user_id"])
                log.info("owner notified of %d held message(s)", len(writable), extra=extra)
            notification_store.mark_notified(conn, ids)
        done += len(held)
    return done


def _renders(cfg: Config, held: Mapping[str, Any]) -> bool:
    try:
        render(cfg, held)
    except Exception:
        log.exception("owner notification cannot be composed: skipped",
                      extra={"message_id": held["id"]})
        return False
    return True
