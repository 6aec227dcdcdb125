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

from e2a.core import keys, replyaddress, replyapproval, tokens
from e2a.core.db import open_pool, single_connection
from e2a.core.mailauth.verdict import Verdict
from e2a.core.store import signing as signing_store

PASS = Verdict(spf="pass", dkim="pass", dmarc="pass", aligned=True, dkim_aligned=True)
FAIL = Verdict(spf="none", dkim="none", dmarc="fail", aligned=False)
# SPF aligned and DMARC pass, but no DKIM signature of the From domain.
SPF_ONLY = Verdict(spf="pass", dkim="none", dmarc="pass", aligned=True)
# An aligned DKIM pass for a domain that publishes no DMARC record.
NO_DMARC = Verdict(spf="pass", dkim="pass", dmarc="none", aligned=True, dkim_aligned=True)
DMARC_TEMPERROR = Verdict(spf="pass", dkim="pass", dmarc="temperror", aligned=True,
                          dkim_aligned=True)


def given(verdict: Verdict) -> replyapproval.Authenticate:
    return lambda: verdict


@pytest.fixture(scope="module")
def pool(hitl_cfg: Any) -> Iterator[Any]:
    p = open_pool(hitl_cfg, name="test-reply", wait=True)
    yield p
    p.close()


def reply_address(hitl_cfg: Any, hitl_owner: Any, message_id: str) -> str:
    key = keys.for_owner(hitl_cfg, keys.REPLY_ADDRESS, hitl_owner.user["id"])
    return replyaddress.build(message_id, key, hitl_cfg.hitl.reply_domain)


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
                                  given(PASS), ["someone@example.org", to])
    assert taken == [to]
    row = message_row(hitl_cfg, message_id)
    assert (row["status"], row["reviewed_by_user_id"]) == ("sent", hitl_owner.user["id"])
    handler, _ = hitl_reinjection
    assert [m for m in handler.messages if m.rcpt_tos == ["byreply@example.org"]]
    # The same reply again (a retry after a 4xx) finds it resolved: nothing more.
    assert replyapproval.consume(pool, hitl_cfg, reply(hitl_owner.user["email"], to, "approve"),
                                 given(PASS), [to]) == [to]


def test_owner_with_aligned_pass_rejects(pool: Any, hitl_cfg: Any, hitl_client: Any,
                                         hitl_owner: Any) -> None:
    message_id = hold(hitl_client, hitl_owner, hitl_owner.agent)
    to = reply_address(hitl_cfg, hitl_owner, message_id)
    replyapproval.consume(pool, hitl_cfg, reply(hitl_owner.user["email"], to, "No"),
                          given(PASS), [to])
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
        to = replyaddress.build(message_id, b"not the owner's key", hitl_cfg.hitl.reply_domain)
    else:
        text = "please send it"
    assert replyapproval.consume(pool, hitl_cfg, reply(sender, to, text), given(verdict),
                                 [to]) == [to]
    assert message_row(hitl_cfg, message_id)["status"] == "pending_approval"


def test_reply_addresses_of_other_domains_are_left_alone(pool: Any, hitl_cfg: Any, hitl_client: Any,
                                                        hitl_owner: Any) -> None:
    message_id = hold(hitl_client, hitl_owner, hitl_owner.agent)
    key = keys.for_owner(hitl_cfg, keys.REPLY_ADDRESS, hitl_owner.user["id"])
    elsewhere = replyaddress.build(message_id, key, "elsewhere.example")
    assert replyapproval.consume(pool, hitl_cfg, reply(hitl_owner.user["email"], elsewhere, "ok"),
                                 given(PASS), [elsewhere]) == []
    assert message_row(hitl_cfg, message_id)["status"] == "pending_approval"


def _mac_address(key: bytes, message_id: str, domain: str) -> str:
    import hashlib
    import hmac
    mac = hmac.new(key, message_id.encode(), hashlib.sha256).hexdigest()[:replyaddress.MAC_HEX]
    return f"approve-{message_id.removeprefix('msg_')}-{mac}@{domain}"


def test_a_reply_address_made_with_the_owners_signing_secret_is_refused(
        pool: Any, hitl_cfg: Any, hitl_client: Any, hitl_owner: Any) -> None:
    # Agents hold the signing secrets: an address made with one (raw, or the
    # way reply addresses were keyed before) must not let an agent approve.
    message_id = hold(hitl_client, hitl_owner, hitl_owner.agent)
    with single_connection(hitl_cfg) as conn:
        secrets = [*signing_store.secrets_of(conn, hitl_owner.user["id"]),
                   hitl_cfg.secrets.hmac_secret]
    domain = hitl_cfg.hitl.reply_domain
    for secret in secrets:
        for key in (secret.encode(), tokens.purpose_key(secret, "hitl-reply"),
                    hmac_key(secret)):
            to = _mac_address(key, message_id, domain)
            assert replyapproval.consume(pool, hitl_cfg, reply(hitl_owner.user["email"], to,
                                                               "approve"),
                                         given(PASS), [to]) == [to]
    assert message_row(hitl_cfg, message_id)["status"] == "pending_approval"


def hmac_key(secret: str) -> bytes:
    """How reply addresses were keyed before core/keys.py."""
    import hashlib
    import hmac
    return hmac.new(secret.encode(), b"e2a-token:hitl-reply", hashlib.sha256).digest()


def test_a_reply_address_of_one_owner_cannot_act_on_another_owners_message(
        pool: Any, hitl_cfg: Any, hitl_client: Any, hitl_owner: Any) -> None:
    from apisupport import make_tenant
    stranger = make_tenant(hitl_cfg)
    message_id = hold(hitl_client, hitl_owner, hitl_owner.agent)
    to = reply_address(hitl_cfg, stranger, message_id)
    assert replyapproval.consume(pool, hitl_cfg, reply(hitl_owner.user["email"], to, "approve"),
                                 given(PASS), [to]) == [to]
    assert message_row(hitl_cfg, message_id)["status"] == "pending_approval"


@pytest.mark.parametrize("verdict", [SPF_ONLY, NO_DMARC, DMARC_TEMPERROR, FAIL],
                         ids=["spf only", "no dmarc record", "dmarc temperror", "fail"])
def test_a_reply_needs_an_aligned_dkim_pass_and_dmarc_pass(
        pool: Any, hitl_cfg: Any, hitl_client: Any, hitl_owner: Any, verdict: Verdict) -> None:
    message_id = hold(hitl_client, hitl_owner, hitl_owner.agent)
    to = reply_address(hitl_cfg, hitl_owner, message_id)
    assert replyapproval.consume(pool, hitl_cfg, reply(hitl_owner.user["email"], to, "approve"),
                                 given(verdict), [to]) == [to]
    assert message_row(hitl_cfg, message_id)["status"] == "pending_approval"


@pytest.mark.parametrize("case", ["bad mac", "stranger"])
def test_no_authentication_work_before_the_mac_and_from_are_right(
        pool: Any, hitl_cfg: Any, hitl_client: Any, hitl_owner: Any, case: str) -> None:
    message_id = hold(hitl_client, hitl_owner, hitl_owner.agent)
    to = reply_address(hitl_cfg, hitl_owner, message_id)
    sender = hitl_owner.user["email"]
    if case == "bad mac":
        to = replyaddress.build(message_id, b"guessed", hitl_cfg.hitl.reply_domain)
    else:
        sender = "mallory@example.org"
    asked: list[bool] = []

    def authenticate() -> Verdict:
        asked.append(True)
        return PASS

    assert replyapproval.consume(pool, hitl_cfg, reply(sender, to, "approve"), authenticate,
                                 [to]) == [to]
    assert asked == []
    assert message_row(hitl_cfg, message_id)["status"] == "pending_approval"


@pytest.mark.parametrize("poison", [
    "Content-Type: text/plain; charset*=idna''abc",
    "Content-Type: multipart/mixed; boundary*0*=x''%FF",
])
def test_a_reply_no_parser_can_read_is_consumed_and_does_nothing(
        pool: Any, hitl_cfg: Any, hitl_client: Any, hitl_owner: Any, poison: str) -> None:
    """A poison reply is answered for good (its addresses consumed), never
    with a 4xx the sender would retry for days; and it approves nothing."""
    message_id = hold(hitl_client, hitl_owner, hitl_owner.agent)
    to = reply_address(hitl_cfg, hitl_owner, message_id)
    raw = (f"From: Owner <{hitl_owner.user['email']}>\r\nTo: {to}\r\n"
           f"Subject: Re: x\r\nMIME-Version: 1.0\r\n{poison}\r\n\r\napprove\r\n").encode()
    assert replyapproval.consume(pool, hitl_cfg, raw, given(PASS), [to]) == [to]
    assert message_row(hitl_cfg, message_id)["status"] == "pending_approval"
