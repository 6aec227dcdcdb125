"""Managed unsubscribe (RFC 8058): a /v1 send with ``unsubscribe: {mode:
"managed"}`` carries List-Unsubscribe and List-Unsubscribe-Post under the
DKIM signature and a footer; ``/u/{token}`` shows a page on GET (changing
nothing) and on POST (one-click body or the page's form) suppresses the
recipient for the agent, once; the next send to it is refused."""

from __future__ import annotations

import email
import email.policy
import hashlib
import hmac
import re

import dkim
import pytest
from apisupport import make_tenant
from submitsupport import sending_client
from v1support import assert_envelope, messages_path

from e2a.core.accounts import dkimkeys
from e2a.core.accounts.dkimkeys import SigningKey
from e2a.core.crypto import serverkeys
from e2a.core.db import single_connection
from e2a.core.mta import dkimsign
from e2a.core.outbound import compose

ONE_CLICK = "List-Unsubscribe=One-Click"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


@pytest.fixture(autouse=True)
def clean(postfix):
    postfix.reset()


@pytest.fixture(scope="module")
def client(cfg, postfix, tmp_path_factory):
    with sending_client(cfg, postfix, tmp_path_factory.mktemp("unsub")) as test_client:
        yield test_client


@pytest.fixture
def tenant(cfg):
    return make_tenant(cfg)


def managed_send(client, tenant, to: str = "reader@example.org", **extra):
    return client.simulate_post(messages_path(tenant.agent["email"]), headers=tenant.auth,
                                json={"to": [to], "subject": "News", "text": "Hello.",
                                      "unsubscribe": {"mode": "managed"}, **extra})


def unsubscribe_path(message: email.message.EmailMessage) -> str:
    match = re.search(r"<https?://[^/]+(/u/[a-z2-7]{52})>", message["List-Unsubscribe"])
    assert match, message["List-Unsubscribe"]
    return match.group(1)


def test_compose_adds_the_fields_and_the_footer_and_dkim_signs_them():
    draft = compose.Draft(sender=compose.Mailbox("bot@signer.test"),
                          to=(compose.Mailbox("reader@example.org"),), subject="s",
                          text="Hi", html="<p>Hi</p>",
                          unsubscribe_url="https://e2a.example/u/tok")
    raw = compose.compose(draft, message_id="msg_1", domain="signer.test",
                          limits=compose.SendLimits(50, 10, 10**7, 2 * 10**7, 10**7)).raw
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert msg["List-Unsubscribe"] == "<https://e2a.example/u/tok>"
    assert msg["List-Unsubscribe-Post"] == ONE_CLICK
    assert "https://e2a.example/u/tok" in msg.get_body(("plain",)).get_content()
    assert 'href="https://e2a.example/u/tok"' in msg.get_body(("html",)).get_content()
    pair = dkimkeys.generate("sel")
    signed = dkimsign.sign(raw, SigningKey("signer.test", "sel", pair.private_pem))
    tags = dict(t.strip().split("=", 1) for t in
                email.message_from_bytes(signed)["DKIM-Signature"].replace("\r\n", "")
                .split(";") if "=" in t)
    signed_fields = re.sub(r"\s", "", tags["h"]).lower().split(":")
    assert "list-unsubscribe" in signed_fields and "list-unsubscribe-post" in signed_fields
    for bad in ("javascript:alert(1)", "https://x.example/u/a>b", "https://x.example/u/\r\nX"):
        with pytest.raises(compose.ComposeError):
            compose.compose(compose.Draft(sender=draft.sender, to=draft.to, text="x",
                                          unsubscribe_url=bad),
                            message_id="msg_2", domain="signer.test",
                            limits=compose.SendLimits(50, 10, 10**7, 2 * 10**7, 10**7))
    assert dkim  # the signer of record is dkimpy


def test_one_click_unsubscribes_once_and_the_next_send_is_refused(cfg, client, tenant,
                                                                  postfix):
    sent = managed_send(client, tenant)
    assert sent.status_code == 202, sent.text
    [got] = postfix.received
    msg = email.message_from_bytes(got.data, policy=email.policy.default)
    assert msg["List-Unsubscribe-Post"] == ONE_CLICK
    path = unsubscribe_path(msg)
    page = client.simulate_get(path)
    assert page.status_code == 200 and "Unsubscribe?" in page.text
    assert "script-src" not in page.headers["Content-Security-Policy"]
    assert page.headers["Cache-Control"] == "no-store"
    # The GET changed nothing: the next send still goes.
    assert managed_send(client, tenant).status_code == 202
    done = client.simulate_post(path, body=ONE_CLICK, headers=FORM)
    assert (done.status_code, done.text) == (200, "")
    again = client.simulate_post(path, body=ONE_CLICK, headers=FORM)
    assert again.status_code == 200
    with single_connection(cfg) as conn:
        events = conn.execute("SELECT data FROM events WHERE agent_id = %s AND type = %s",
                              (tenant.agent["id"], "agent.suppression_added")).fetchall()
    assert [e["data"]["source"] for e in events] == ["unsubscribe"]
    listed = client.simulate_get(messages_path(tenant.agent["email"]).replace(
        "/messages", "/suppressions"), headers=tenant.auth)
    assert [(i["address"], i["source"]) for i in listed.json["items"]] == [
        ("reader@example.org", "unsubscribe")]
    assert_envelope(managed_send(client, tenant), 422, "recipient_suppressed")


def test_the_page_form_unsubscribes_too(cfg, client, tenant, postfix):
    managed_send(client, tenant, to="formuser@example.org")
    path = unsubscribe_path(email.message_from_bytes(postfix.received[0].data,
                                                     policy=email.policy.default))
    done = client.simulate_post(path, body="confirm=yes", headers=FORM)
    assert done.status_code == 200 and "You are unsubscribed" in done.text
    assert "You are unsubscribed" in client.simulate_get(path).text


def test_refusals(cfg, client, tenant, postfix):
    assert_envelope(managed_send(client, tenant, cc=["second@example.org"]), 400,
                    "invalid_request")
    bad = client.simulate_post(messages_path(tenant.agent["email"]), headers=tenant.auth,
                               json={"to": ["a@example.org"], "text": "x",
                                     "unsubscribe": {"mode": "self"}})
    assert_envelope(bad, 422, "invalid_request")
    assert postfix.received == []
    assert client.simulate_get("/u/" + "A" * 43).status_code == 404
    assert client.simulate_post("/u/not-a-token", body=ONE_CLICK, headers=FORM
                                ).status_code == 404
    managed_send(client, tenant)
    path = unsubscribe_path(email.message_from_bytes(postfix.received[0].data,
                                                     policy=email.policy.default))
    assert client.simulate_post(path, body="whatever=1", headers=FORM).status_code == 400
    assert client.simulate_post(path, body="x" * 2000, headers=FORM).status_code == 400


def test_only_a_keyed_digest_of_the_token_is_stored(cfg, client, tenant, postfix):
    managed_send(client, tenant)
    token = unsubscribe_path(email.message_from_bytes(postfix.received[0].data,
                                                      policy=email.policy.default))[3:]
    with single_connection(cfg) as conn:
        rows = conn.execute("SELECT token_digest FROM unsubscribe_tokens WHERE agent_id = %s",
                            (tenant.agent["id"],)).fetchall()
    key = serverkeys.deployment(cfg, serverkeys.UNSUBSCRIBE)
    assert [bytes(r["token_digest"]) for r in rows] == [
        hmac.new(key, token.encode(), hashlib.sha256).digest()]
    assert key != serverkeys.deployment(cfg, serverkeys.VERP)
    assert token.encode() not in bytes(rows[0]["token_digest"])


def test_one_client_address_is_limited(cfg, client, monkeypatch):
    from e2a.api.resources import unsubscribe as page
    from e2a.core import ratelimit

    monkeypatch.setattr(page, "PER_CLIENT", ratelimit.Limit("unsub-test-" + "x" * 4, 2, 60))
    path = "/u/" + "B" * 43
    codes = [client.simulate_get(path, remote_addr="192.0.2.77").status_code
             for _ in range(3)]
    assert codes == [404, 404, 429]
    assert client.simulate_get(path, remote_addr="192.0.2.78").status_code == 404


@pytest.fixture(scope="module")
def zones(tmp_path_factory):
    from mailworld import zones_served

    with zones_served(tmp_path_factory.mktemp("zones")) as server:
        yield server


def test_the_mailto_address_unsubscribes_through_the_milter(cfg, client, tenant, postfix,
                                                            zones):
    import Milter
    from milterdriver import feed, installed

    managed_send(client, tenant, to="mailer@example.org")
    msg = email.message_from_bytes(postfix.received[0].data, policy=email.policy.default)
    [mailto] = re.findall(r"<mailto:([^>]+)>", msg["List-Unsubscribe"])
    assert mailto.startswith("unsub-") and mailto.endswith("@" + cfg.hitl.reply_domain)
    assert unsubscribe_path(msg)[3:] in mailto  # one token, two ways
    raw = (f"From: mailer@example.org\r\nTo: {mailto}\r\nSubject: unsubscribe\r\n\r\n"
           "please\r\n").encode()
    with installed(cfg):
        # The address is the credential: its case does not matter to mail.
        out = feed(raw, "mailer@example.org", [mailto.upper()], client_ip="192.0.2.25",
                   helo="mx.example.org")
        assert out.code == Milter.DISCARD
        ghost = "unsub-" + "a" * 52 + "@" + cfg.hitl.reply_domain
        assert feed(raw, "x@example.org", [ghost]).code == Milter.DISCARD
    assert_envelope(managed_send(client, tenant, to="mailer@example.org"), 422,
                    "recipient_suppressed")
