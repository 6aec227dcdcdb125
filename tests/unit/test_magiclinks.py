"""The magic links of the owner's notification on a real database: the
confirmation page (the whole draft, one button, no script, the headers that
keep it private), that a GET changes nothing, the POST that acts once, and
every token that must not act: wrong action, expired, reused, tampered,
foreign, unknown.

Messages are held as the API holds them; an approval releases to a real SMTP
server (aiosmtpd) standing in for Postfix's reinjection service."""

from __future__ import annotations

import base64
import hashlib
import html
import re
import time
from urllib.parse import urlencode

import pytest
from apisupport import make_tenant
from hitlsupport import (
    FRIEND,
    enable_hitl,
    hold,
    link_token,
    message_row,
    owner_secret,
    released,
    reset,
)

from e2a.core import tokens
from e2a.core.db import single_connection
from e2a.core.store import signing as signing_store

PDF = b"%PDF-1.7\n\x00\x01 binary"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


@pytest.fixture(autouse=True)
def fresh(postfix, hitl_reinjection):
    reset(postfix, hitl_reinjection)


@pytest.fixture(scope="module")
def tenant(hitl_cfg, hitl_client):
    owner = make_tenant(hitl_cfg)
    enable_hitl(hitl_client, owner, owner.agent)
    owner_secret(hitl_cfg, owner)
    return owner


@pytest.fixture
def held(hitl_client, tenant):
    return hold(hitl_client, tenant, tenant.agent, subject="Q3 <numbers> & plans",
                cc=["cc@elsewhere.example"], bcc=["audit@elsewhere.example"],
                attachments=[{"filename": "q3.pdf", "content_type": "application/pdf",
                              "data": base64.b64encode(PDF).decode()}])


def get(hitl_client, action, token):
    return hitl_client.simulate_get(f"/api/v1/{action}", params={"token": token})


def post(hitl_client, action, token, **fields):
    return hitl_client.simulate_post(f"/api/v1/{action}", headers=FORM,
                                body=urlencode({"token": token, **fields}))


def assert_page(result, status, heading):
    """A page for a person, with the headers every one of them carries."""
    assert result.status_code == status, result.text
    assert result.headers["Content-Type"].startswith("text/html")
    assert result.headers["Cache-Control"] == "no-store"
    assert result.headers["X-Frame-Options"] == "DENY"
    assert result.headers["Referrer-Policy"] == "no-referrer"
    policy = result.headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy and "frame-ancestors 'none'" in policy
    assert "script-src" not in policy and "unsafe-inline" not in policy
    # The one stylesheet is allowed by its hash: the hash of this page's.
    style = re.search(r"<style>(.*?)</style>", result.text, re.S).group(1)
    digest = base64.b64encode(hashlib.sha256(style.encode()).digest()).decode()
    assert f"style-src 'sha256-{digest}'" in policy
    assert "<script" not in result.text.lower()
    assert heading in html.unescape(result.text), result.text
    return result.text


def mint(key: bytes, message_id, action, exp=None):
    """A token in the contract's encoding signed with ``key`` (raw bytes):
    what anyone holding those bytes could make."""
    exp = exp or int(time.time()) + 3600
    return tokens.sign(key, f"{message_id}|{action}|{exp}".encode())


def link_key(cfg, tenant) -> bytes:
    """The tenant's magic-link key: what the server signs its links with."""
    from e2a.core import keys
    return keys.for_owner(cfg, keys.MAGIC_LINK, tenant.user["id"])


# -- the page --------------------------------------------------------------


def test_the_approve_page_shows_the_whole_draft_and_one_button(hitl_cfg, hitl_client, tenant, held,
                                                                hitl_reinjection):
    token = link_token(hitl_cfg, held, "approve")
    before = message_row(hitl_cfg, held)

    page = assert_page(get(hitl_client, "approve", token), 200, "Approve and send this email?")

    text = html.unescape(page)
    for shown in (tenant.agent["email"], FRIEND, "cc@elsewhere.example",
                  "audit@elsewhere.example", "Q3 <numbers> & plans",
                  "Hello, friend.\nSee the attached numbers.", "q3.pdf"):
        assert shown in text, shown
    assert "<numbers>" not in page  # escaped, not markup
    forms = re.findall(r"<form [^>]*>", page)
    assert forms == ['<form method="post" action="approve">']
    assert page.count("<button") == 1
    assert f'name="token" value="{token}"' in page
    # A GET changes nothing: the row is as it was and nothing left.
    assert message_row(hitl_cfg, held) == before
    assert released(hitl_reinjection) == []
    assert assert_page(get(hitl_client, "approve", token), 200, "Approve and send")


def test_the_reject_page_asks_for_an_optional_reason(hitl_cfg, hitl_client, held):
    page = assert_page(get(hitl_client, "reject", link_token(hitl_cfg, held, "reject")), 200,
                       "Reject this email?")
    assert re.findall(r"<form [^>]*>", page) == ['<form method="post" action="reject">']
    assert '<textarea id="reason" name="reason"' in page
    assert message_row(hitl_cfg, held)["status"] == "pending_approval"


def test_the_pages_need_no_api_key(hitl_cfg, hitl_client, held):
    result = hitl_client.simulate_get("/api/v1/approve",
                                 params={"token": link_token(hitl_cfg, held, "approve")},
                                 headers={"Authorization": "Bearer e2a_" + "0" * 64})
    assert result.status_code == 200


# -- acting ----------------------------------------------------------------


def test_posting_the_approve_link_sends_once_and_the_link_is_spent(hitl_cfg, hitl_client, tenant,
                                                                   held, hitl_reinjection):
    token = link_token(hitl_cfg, held, "approve")

    assert_page(post(hitl_client, "approve", token), 200, "Approved and sent")

    [out] = released(hitl_reinjection)
    assert out.rcpt_tos == [FRIEND, "cc@elsewhere.example", "audit@elsewhere.example"]
    row = message_row(hitl_cfg, held)
    assert (row["status"], row["reviewed_by_user_id"]) == ("sent", tenant.user["id"])
    assert row["body_text"] is None and row["attachments"] is None
    # Reused: the state makes the link single-use, on either method.
    assert_page(post(hitl_client, "approve", token), 409, "already approved and sent")
    assert_page(get(hitl_client, "approve", token), 409, "already approved and sent")
    assert_page(get(hitl_client, "reject", link_token(hitl_cfg, held, "reject")), 409,
                "Already decided")
    assert len(released(hitl_reinjection)) == 1


def test_posting_the_reject_link_discards_with_the_reason(hitl_cfg, hitl_client, tenant, held,
                                                          hitl_reinjection):
    token = link_token(hitl_cfg, held, "reject")

    assert_page(post(hitl_client, "reject", token, reason="  not now  "), 200, "Rejected")

    row = message_row(hitl_cfg, held)
    assert (row["status"], row["rejection_reason"], row["reviewed_by_user_id"]) == (
        "rejected", "not now", tenant.user["id"])
    assert row["raw_message"] is None
    assert released(hitl_reinjection) == []
    assert_page(post(hitl_client, "reject", token), 409, "already rejected")
    assert_page(post(hitl_client, "approve", link_token(hitl_cfg, held, "approve")), 409,
                "already rejected")
    assert released(hitl_reinjection) == []


def test_a_message_expired_meanwhile_says_so(hitl_cfg, hitl_client, held):
    token = link_token(hitl_cfg, held, "approve")
    with single_connection(hitl_cfg) as conn:
        conn.execute("UPDATE messages SET status = 'expired_rejected' WHERE id = %s", (held,))
    assert_page(get(hitl_client, "approve", token), 409, "Nobody decided in time")


def test_an_approval_the_mail_server_refuses_leaves_it_held(hitl_cfg, hitl_client, held,
                                                            hitl_reinjection):
    hitl_reinjection[0].data_reply = "451 4.3.0 try again later"
    token = link_token(hitl_cfg, held, "approve")
    assert_page(post(hitl_client, "approve", token), 503, "Not sent yet")
    assert message_row(hitl_cfg, held)["status"] == "pending_approval"
    hitl_reinjection[0].data_reply = ""
    assert_page(post(hitl_client, "approve", token), 200, "Approved and sent")


# -- tokens that must not act ----------------------------------------------


@pytest.fixture
def refused(hitl_cfg, hitl_client, hitl_reinjection):
    def check(held, action, token, status, heading):
        """Both methods answer the page; nothing happens to the message."""
        before = message_row(hitl_cfg, held)
        assert_page(get(hitl_client, action, token), status, heading)
        assert_page(post(hitl_client, action, token), status, heading)
        assert message_row(hitl_cfg, held) == before
        assert released(hitl_reinjection) == []
    return check


def test_a_link_for_the_other_action_is_refused(hitl_cfg, refused, held):
    refused(held, "reject", link_token(hitl_cfg, held, "approve"),
            400, "This link is for approving the email, not rejecting it")
    refused(held, "approve", link_token(hitl_cfg, held, "reject"),
            400, "This link is for rejecting the email, not approving it")


def test_an_expired_link_is_refused(hitl_cfg, refused, tenant, held):
    token = mint(link_key(hitl_cfg, tenant), held, "approve", exp=int(time.time()) - 1)
    refused(held, "approve", token, 410, "This link has expired")


def test_a_tampered_link_is_refused(hitl_cfg, hitl_client, refused, tenant, held):
    token = link_token(hitl_cfg, held, "approve")
    payload, mac = token.split(".")
    flipped = mac[:-2] + ("A" if mac[-2] != "A" else "B") + mac[-1]
    other = hold(hitl_client, tenant, tenant.agent)
    # The same signature on a payload naming another of the owner's messages.
    moved = tokens.b64url(f"{other}|approve|{int(time.time()) + 3600}".encode()) + "." + mac
    longer = tokens.b64url(base64.urlsafe_b64decode(payload + "==").replace(
        b"|approve|", b"|approve|9")) + "." + mac
    for bad in (f"{payload}.{flipped}", longer, token + "x", token[:-1], payload):
        refused(held, "approve", bad, 400, "This link is not valid")
    refused(other, "approve", moved, 400, "This link is not valid")


def test_a_link_signed_with_another_users_secret_is_refused(hitl_cfg, refused, held):
    stranger = make_tenant(hitl_cfg)
    token = mint(owner_secret(hitl_cfg, stranger).encode(), held, "approve")
    refused(held, "approve", token, 400, "This link is not valid")


def test_a_link_minted_with_the_owners_signing_secret_is_refused(hitl_cfg, refused, tenant,
                                                                 held):
    # Agents hold their owner's signing secrets (to check X-E2A-Auth-* and
    # webhooks): a link made with one would let an agent approve its own mail.
    with single_connection(hitl_cfg) as conn:
        secrets = signing_store.secrets_of(conn, tenant.user["id"])
    assert secrets
    for secret in secrets:
        refused(held, "approve", mint(secret.encode(), held, "approve"), 400,
                "This link is not valid")


def test_the_deployment_secret_is_no_master_key_for_links(hitl_cfg, hitl_client, refused):
    owner = make_tenant(hitl_cfg)  # no signing secret of its own
    enable_hitl(hitl_client, owner, owner.agent)
    message = hold(hitl_client, owner, owner.agent)
    token = mint(hitl_cfg.secrets.hmac_secret.encode(), message, "approve")
    refused(message, "approve", token, 400, "This link is not valid")


def test_a_link_for_one_owner_cannot_act_on_another_owners_message(hitl_cfg, refused, held):
    stranger = make_tenant(hitl_cfg)
    refused(held, "approve", mint(link_key(hitl_cfg, stranger), held, "approve"), 400,
            "This link is not valid")


def test_a_link_to_no_message_is_unknown(hitl_cfg, hitl_client, tenant):
    token = mint(link_key(hitl_cfg, tenant), "msg_" + "0" * 32, "approve")
    assert_page(get(hitl_client, "approve", token), 404, "No such email")
    assert_page(post(hitl_client, "approve", token), 404, "No such email")


@pytest.mark.parametrize("token", ["", "garbage", "a.b.c", "%%%", "x" * 600,
                                   tokens.b64url(b"notamessage|approve|9999999999") + ".AAAA"])
def test_malformed_tokens_are_bad_requests(hitl_client, token):
    assert_page(get(hitl_client, "approve", token), 400, "This link is not valid")
    assert_page(post(hitl_client, "reject", token), 400, "This link is not valid")


def test_a_post_without_the_form_is_refused(hitl_cfg, hitl_client, hitl_reinjection, held):
    token = link_token(hitl_cfg, held, "approve")
    as_json = hitl_client.simulate_post("/api/v1/approve", json={"token": token})
    assert_page(as_json, 400, "This link is not valid")
    in_query = hitl_client.simulate_post("/api/v1/approve", params={"token": token})
    assert_page(in_query, 400, "This link is not valid")
    assert message_row(hitl_cfg, held)["status"] == "pending_approval"
    assert released(hitl_reinjection) == []
