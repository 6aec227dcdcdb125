"""Telling an owner that a message of one of their agents is held: the
worker's ``notify owners`` job.

One mail per held message, through Postfix (the reinjection service: it is
our own mail, the hold is not for it), DKIM-signed when we hold a key for the
notify_from domain. It names the agent, the recipients, the subject and the
expiry, never the body (mailboxes get forwarded and indexed; the draft is
for the review page), and carries the approve and reject magic links, the
review link and, as Reply-To, the address a one-word reply acts on.

Each message is claimed FOR UPDATE SKIP LOCKED and marked notified in the
same transaction, after Postfix's 250: two workers never mail the same
owner twice, and a notification that did not leave is tried again.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import Any

import psycopg

from e2a.core import addresses, compose, dkimkeys, release, replyaddress, tokens
from e2a.core.config import Config
from e2a.core.store import notifications as notification_store
from e2a.core.store import signing as signing_store
from e2a.core.timefmt import rfc3339
from e2a.policy.reinject import ReinjectError, Transaction

log = logging.getLogger("e2a.notification")

BATCH = 20  # notifications per job run
# A link stays usable this long after the hold expired (CONTRACT.md), so a
# click in the last minute still shows a page that says what happened.
LINK_GRACE_SECONDS = 600
REPLY_WORDS = "approve, yes, lgtm or ok; reject or no"


def link_secret(conn: psycopg.Connection, cfg: Config, user_id: str) -> str:
    """What the owner's links and reply address are signed with: their newest
    signing secret, else (a user who never made one) the deployment's, as
    for the X-E2A-Auth-* headers of their inbound mail."""
    return signing_store.newest_secret(conn, user_id) or cfg.secrets.hmac_secret


def reply_secrets(conn: psycopg.Connection, cfg: Config, user_id: str) -> list[str]:
    """Every secret a reply address of this owner may have been made with."""
    return [*signing_store.secrets_of(conn, user_id), cfg.secrets.hmac_secret]


def links(cfg: Config, secret: str, message_id: str, expires_at: datetime) -> dict[str, str]:
    base = cfg.http.public_url.rstrip("/")
    exp = int(expires_at.timestamp()) + LINK_GRACE_SECONDS
    return {
        "approve": f"{base}/api/v1/approve?token="
                   + tokens.magic_link(secret, message_id, "approve", exp),
        "reject": f"{base}/api/v1/reject?token="
                  + tokens.magic_link(secret, message_id, "reject", exp),
        "review": f"{base}/api/v1/messages/{message_id}",
    }


def render(cfg: Config, held: Mapping[str, Any], *, secret: str,
           now: datetime | None = None) -> bytes:
    """The notification for ``held`` (a claim_unnotified row), CRLF line ends."""
    message_id = held["id"]
    subject = compose.one_line(held["subject"] or "") or "(no subject)"
    urls = links(cfg, secret, message_id, held["approval_expires_at"])
    after = ("it is sent anyway" if held["hitl_expiration_action"] == "approve"
             else "it is discarded")
    lines = [
        f"Your agent {held['agent_email']} wants to send a message. It is held",
        "until you approve or reject it.",
        "",
        f"Agent:    {held['agent_email']}",
        f"To:       {', '.join(held['to_recipients']) or '-'}",
    ]
    if held["cc"]:
        lines.append(f"Cc:       {', '.join(held['cc'])}")
    if held["bcc"]:
        lines.append(f"Bcc:      {', '.join(held['bcc'])}")
    lines += [
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
        f"Or reply to this mail with one word on the first line: {REPLY_WORDS}.",
    ]
    msg = EmailMessage(policy=compose.POLICY)
    msg["From"] = Address("e2a approvals", addr_spec=cfg.hitl.notify_from)
    msg["To"] = held["owner_email"]
    msg["Reply-To"] = replyaddress.build(message_id, secret, cfg.hitl.reply_domain)
    msg["Subject"] = f"Approval needed: {subject}"
    msg["Date"] = format_datetime(now or datetime.now(UTC))
    msg["Message-ID"] = make_msgid(domain=cfg.hitl.reply_domain)
    # RFC 3834: no vacation replies to this.
    msg["Auto-Submitted"] = "auto-generated"
    msg.set_content("\n".join(lines) + "\n")
    return msg.as_bytes()


def send(conn: psycopg.Connection, cfg: Config, held: Mapping[str, Any], raw: bytes) -> str:
    """Mail the owner the notification ``raw`` about ``held``; Postfix's
    answer. Raises ReinjectError when it did not leave."""
    target = addresses.inet(cfg.filter.reinject)
    try:
        key = release.signing_key(conn, cfg, cfg.hitl.notify_from.rpartition("@")[2].lower())
    except dkimkeys.DkimKeyError as exc:
        # Unsigned is still better than no notification at all.
        log.warning("notification not signed: %s", exc, extra={"message_id": held["id"]})
        key = None
    # The null sender: a notification that cannot be delivered bounces to nobody.
    txn = Transaction("", [held["owner_email"]], raw)
    return release.sign_and_reinject(txn, key, to=target, helo=cfg.mail.hostname,
                                     login=release.reinject_login(cfg),
                                     timeout=cfg.submit.timeout,
                                     log_extra={"message_id": held["id"]})


def notify_owners(cfg: Config, conn: psycopg.Connection, limit: int = BATCH) -> int:
    """One notification per held message not yet notified, up to ``limit``;
    how many were handled. Stops at the first that Postfix does not take
    (unreachable, most likely): the next run tries it again. One that cannot
    even be written as mail never will be: it is logged and passed over, so
    it does not hold up the others."""
    done = 0
    for _ in range(limit):
        with conn.transaction():
            held = notification_store.claim_unnotified(conn)
            if held is None:
                break
            extra = {"message_id": held["id"]}
            secret = link_secret(conn, cfg, held["user_id"])
            try:
                raw = render(cfg, held, secret=secret)
            except Exception:
                log.exception("owner notification cannot be composed: skipped", extra=extra)
                raw = None
            if raw is not None:
                try:
                    send(conn, cfg, held, raw)
                except ReinjectError as exc:
                    log.warning("owner notification not sent, retrying later: %s", exc,
                                extra=extra)
                    break
                log.info("owner notified of a held message", extra=extra)
            notification_store.mark_notified(conn, held["id"])
        done += 1
    return done
