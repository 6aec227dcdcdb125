"""Approve or reject a held message by replying to its notification.

The notification's Reply-To is a reply address (core/replyaddress.py). A
reply to it acts only when all of these hold, checked cheapest first: the
address's MAC is the owner's (keys.REPLY_ADDRESS: no DNS, no DKIM work for
mail to an address nobody was given), the reply's one From address is the
owner's email, and the milter's verdict on it has a DKIM pass aligned with
that From domain AND a DMARC result of pass: anyone can type the owner's
address into From, not everyone can sign for its domain. SPF alone is not
enough (it vouches for the last hop, and a forwarder's or a shared
provider's IP passes it for many senders), nor is a domain without a DMARC
record (nothing says its owner meant its mail to be checked). Then the
first non-empty line above any quote decides: approve, yes, lgtm, ok
approve; reject, no reject. Anything else does nothing, and says why in
the log (never the text itself).

Like a bounce to a VERP address, mail to a reply address on one of our
domains is consumed whatever it says: nobody reads these mailboxes. Errors
(the database, a release Postfix did not take) propagate: the milter
answers 4xx and the reply comes again, when it finds the message resolved.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser

from psycopg_pool import ConnectionPool

from e2a.core import approval, inbound, keys, mimetext, replyaddress
from e2a.core.config import Config
from e2a.core.mailauth.verdict import Verdict
from e2a.core.store import agents as agent_store
from e2a.core.store import notifications as notification_store

log = logging.getLogger("e2a.replyapproval")

APPROVE = frozenset({"approve", "yes", "lgtm", "ok"})
REJECT = frozenset({"reject", "no"})
REJECT_REASON = "rejected by email reply"


def reply_recipients(recipients: Sequence[str]) -> list[str]:
    """The recipients shaped like reply addresses (no database asked)."""
    return [r for r in recipients if replyaddress.parse(r)]


def command(msg: EmailMessage) -> str | None:
    """"approve", "reject" or None, from the first non-empty line of the
    reply's text; a quoted line first means there is nothing above the quote."""
    try:
        text = mimetext.readable_text(msg)
    except Exception:  # a body too broken to decode says nothing
        log.info("reply body unreadable")
        return None
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        if line.startswith(">"):
            return None
        word = line.lower().rstrip(".!")
        if word in APPROVE:
            return "approve"
        if word in REJECT:
            return "reject"
        return None
    return None


def _command_of(raw: bytes) -> str | None:
    try:
        msg = BytesParser(policy=policy.default).parsebytes(raw)
    except Exception:  # any parse failure of the reply itself: it says nothing
        log.info("reply unreadable")
        return None
    return command(msg)


Authenticate = Callable[[], Verdict]


def trusted(verdict: Verdict) -> bool:
    """Whether ``verdict`` lets a reply act: an aligned DKIM pass and DMARC pass."""
    return verdict.dkim_aligned and verdict.dmarc == "pass"


def consume(pool: ConnectionPool, cfg: Config, raw: bytes, authenticate: Authenticate,
            recipients: Sequence[str], queue_id: str = "") -> list[str]:
    """Act on the reply ``raw`` for the reply addresses among ``recipients``;
    return those on our domains (the caller takes them away from Postfix).
    ``authenticate`` gives the milter's verdict on ``raw``; it is called only
    once a reply address's MAC and From are right, at most once."""
    candidates = [(r, p) for r in recipients if (p := replyaddress.parse(r)) is not None]
    if not candidates:
        return []
    with pool.connection() as conn:
        ours = [(r, p) for r, p in candidates
                if p.domain == cfg.hitl.reply_domain
                or agent_store.domain_by_name(conn, p.domain) is not None]
    if not ours:
        return []
    # The header section by the milter's own robust reader; the body by the
    # full parser, which a poison message can make raise: such a reply says
    # nothing, and is still consumed for good rather than retried.
    senders = [a.lower() for a in inbound.header_addresses(inbound.parse(raw), "From")]
    word = _command_of(raw)
    verdicts: list[Verdict] = []

    def verdict() -> Verdict:
        if not verdicts:
            verdicts.append(authenticate())
        return verdicts[0]

    for _, parsed in ours:
        _act(pool, cfg, parsed, senders, verdict, word, queue_id)
    return [r for r, _ in ours]


def _act(pool: ConnectionPool, cfg: Config, parsed: replyaddress.ReplyAddress,
         senders: list[str], verdict: Authenticate, word: str | None, queue_id: str) -> None:
    extra = {"queue_id": queue_id, "message_id": parsed.message_id}
    with pool.connection() as conn:
        held = notification_store.held_for_reply(conn, parsed.message_id)
    if held is None or not replyaddress.verify(
            parsed, keys.for_owner(cfg, keys.REPLY_ADDRESS, held["user_id"])):
        log.info("mail to a reply address nobody was given: ignored", extra=extra)
        return
    if senders != [held["owner_email"].lower()]:
        log.warning("reply to a held message ignored: not from its owner", extra=extra)
        return
    checked = verdict()
    if not trusted(checked):
        log.warning("reply to a held message ignored: no DKIM pass aligned with its From "
                    "and DMARC pass (dkim=%s, dmarc=%s)", checked.dkim, checked.dmarc,
                    extra=extra)
        return
    if word is None:
        log.info("reply to a held message ignored: its first line is no approve or reject",
                 extra=extra)
        return
    try:
        if word == "approve":
            approval.approve(pool, cfg, parsed.message_id, owner_id=held["user_id"],
                             reviewer_user_id=held["user_id"], via="reply")
        else:
            approval.reject(pool, parsed.message_id, owner_id=held["user_id"],
                            reviewer_user_id=held["user_id"], reason=REJECT_REASON,
                            via="reply")
    except approval.NotPending as exc:
        log.info("reply to a held message ignored: already %s", exc.status, extra=extra)
    except approval.NotFound:
        log.info("reply to a held message ignored: no such message", extra=extra)
