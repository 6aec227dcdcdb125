"""Approve or reject by reply, behind the milter: a real database, messages
held as the API holds them, a real SMTP server as the reinjection service.
The verdict is given here (the milter's own is tested with the milter);
the system test sends real signed and spoofed replies through Postfix."""

from __future__ import annotations

from collections.abc import Iterator
from email.message import EmailMessage
from typing import Any

import pytest
from hitlsupport import hold, message_row

from e2a.core import notification, replyaddress, replyapproval
from e2a.core.db import open_pool, single_connection
from e2a.core.mailauth.verdict import Verdict

PASS = Verdict(spf="pass", dkim="pass", dmarc="pass", aligned=True)
FAIL = Verdict(spf="none", dkim="none", dmarc="fail", aligned=False)


@pytest.fixture(scope="module")
def pool(hitl_cfg: Any) -> Iterator[Any]:
    p = open_pool(hitl_cfg, name="test-reply", wait=True)
    yield p
    p.close()


def reply_address(hitl_cfg: Any, hitl_owner: Any, message_id: str) -> str:
    with single_connection(hitl_cfg) as conn:
        secret = notification.link_secret(conn, hitl_cfg, hitl_owner.user["id"])
    return replyaddress.build(message_id, secret, hitl_cfg.hitl.reply_domain)


def reply(sender: str, to: str, text: str, *, html: str = "") -> bytes:
    msg = EmailMessage()
    msg["From"] = f"Owner <{sender}>"
    msg["To"] = to
    msg["Subject"] = "Re: Approval needed: Draft for review"
    msg.set_content(text)
    if html:
        msg.add_alternative(html, subtype="html")
    return msg.as_bytes()


@pytest.mark.parametrize(("text", "word"), [
    ("approve\n\n> Your agent wants to send", "approve"),
    ("\n\n  Yes!\n", "approve"),
    ("LGTM.\nthanks", "approve"),
    ("ok", "approve"),
    ("Reject\n", "reject"),
    ("no.\n", "reject"),
    ("> approve\nno", None),  # nothing above the quote
    ("approve this later, maybe\n", None),
    ("nope", None),
    ("", None),
])
def test_the_first_line_decides(text: str, word: str | None) -> None:
    msg = EmailMessage()
    msg.set_content(text)
    assert replyapproval.command(msg) == word


def test_html_only_reply_is_read_too() -> None:
    msg = EmailMessage()
    msg.set_content("<div>Approve</div><blockquote>your agent...</blockquote>",
                    subtype="html")
    assert replyapproval.command(msg) == "approve"


def test_owner_with_aligned_pass_approves(pool: Any, hitl_cfg: Any, hitl_client: Any,
                                          hitl_owner: Any, hitl_reinjection: Any) -> None:
    message_id = hold(hitl_client, hitl_owner, hitl_owner.agent, to=["byreply@example.org"])
    to = reply_address(hitl_cfg, hitl_owner, message_id)
    taken = replyapproval.consume(pool, hitl_cfg, reply(hitl_owner.user["email"].upper(), to,
                                                    "approve\n> quoted"),
                                  PASS, ["someone@example.org", to])
    assert taken == [to]
    row = message_row(hitl_cfg, message_id)
    assert (row["status"], row["reviewed_by_user_id"]) == ("sent", hitl_owner.user["id"])
    handler, _ = hitl_reinjection
    assert [m for m in handler.messages if m.rcpt_tos == ["byreply@example.org"]]
    # The same reply again (a retry after a 4xx) finds it resolved: nothing more.
    assert replyapproval.consume(pool, hitl_cfg, reply(hitl_owner.user["email"], to, "approve"),
                                 PASS, [to]) == [to]


def test_owner_with_aligned_pass_rejects(pool: Any, hitl_cfg: Any, hitl_client: Any,
                                         hitl_owner: Any) -> None:
    message_id = hold(hitl_client, hitl_owner, hitl_owner.agent)
    to = reply_address(hitl_cfg, hitl_owner, message_id)
    replyapproval.consume(pool, hitl_cfg, reply(hitl_owner.user["email"], to, "No"), PASS, [to])
    row = message_row(hitl_cfg, message_id)
    assert (row["status"], row["rejection_reason"]) == ("rejected",
                                                        replyapproval.REJECT_REASON)


@pytest.mark.parametrize("case", ["spoofed", "stranger", "two senders", "bad mac",
                                  "no command"])
def test_anything_else_consumes_and_does_nothing(pool: Any, hitl_cfg: Any, hitl_client: Any,
                                                 hitl_owner: Any, case: str) -> None:
    message_id = hold(hitl_client, hitl_owner, hitl_owner.agent)
    to = reply_address(hitl_cfg, hitl_owner, message_id)
    sender, verdict, text = hitl_owner.user["email"], PASS, "approve"
    if case == "spoofed":
        verdict = FAIL  # the owner's address in From, without DMARC for it
    elif case == "stranger":
        sender = "mallory@example.org"
    elif case == "two senders":
        sender = f"{hitl_owner.user['email']}>, <mallory@example.org"
    elif case == "bad mac":
        to = replyaddress.build(message_id, "not the owner's secret", hitl_cfg.hitl.reply_domain)
    else:
        text = "please send it"
    assert replyapproval.consume(pool, hitl_cfg, reply(sender, to, text), verdict, [to]) == [to]
    assert message_row(hitl_cfg, message_id)["status"] == "pending_approval"


def test_reply_addresses_of_other_domains_are_left_alone(pool: Any, hitl_cfg: Any, hitl_client: Any,
                                                        hitl_owner: Any) -> None:
    message_id = hold(hitl_client, hitl_owner, hitl_owner.agent)
    with single_connection(hitl_cfg) as conn:
        secret = notification.link_secret(conn, hitl_cfg, hitl_owner.user["id"])
    elsewhere = replyaddress.build(message_id, secret, "elsewhere.example")
    assert replyapproval.consume(pool, hitl_cfg, reply(hitl_owner.user["email"], elsewhere, "ok"),
                                 PASS, [elsewhere]) == []
    assert message_row(hitl_cfg, message_id)["status"] == "pending_approval"
