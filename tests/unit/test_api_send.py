"""Sending through the API on a real database, with a real SMTP server
standing in for Postfix's submit service: send, reply, reply-all, forward and
the test mail; what Postfix got (envelope, headers, parts) and what was
recorded; tenant walls."""

from __future__ import annotations

import base64
import re
import secrets

import pytest
from apisupport import (
    add_agent,
    add_domain,
    agent_key,
    api_client,
    assert_error,
    make_tenant,
)
from sendsupport import (
    SEND,
    events_for,
    forward_path,
    named_agent,
    outbound_rows,
    received,
    reply_path,
    selftest_path,
)
from submitsupport import QUEUE_ID, sending_config

from e2a.core import accounts, verp
from e2a.core.db import single_connection
from e2a.core.store import domains as domain_store

CONV = re.compile(r"conv_[0-9a-f]{32}")
PDF = b"%PDF-1.7\n\x00\x01\x02\xff binary bytes"


@pytest.fixture(autouse=True)
def clean(postfix):
    postfix.reset()


@pytest.fixture(scope="module")
def send_cfg(cfg, postfix, tmp_path_factory):
    return sending_config(cfg, tmp_path_factory.mktemp("send") / "e2a.toml", postfix.address)


@pytest.fixture(scope="module")
def client(send_cfg):
    with api_client(send_cfg) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def tenant(cfg):
    return make_tenant(cfg)


@pytest.fixture(scope="module")
def agent(cfg, tenant):
    return named_agent(cfg, tenant)


def post(client, tenant, path, body, headers=None):
    return client.simulate_post(path, json=body, headers={**tenant.auth, **(headers or {})})


def assert_sent(result):
    assert result.status_code == 200, result.text
    assert set(result.json) == {"message_id", "status", "method", "approval_expires_at"}
    assert result.json["status"] == "sent"
    assert result.json["method"] == "smtp"
    assert result.json["approval_expires_at"] == ""
    assert re.fullmatch(r"msg_[0-9a-f]{32}", result.json["message_id"])
    return result.json["message_id"]


# -- send ----------------------------------------------------------------------------


def test_send_reaches_postfix_as_composed_and_is_recorded(cfg, client, tenant, agent, postfix):
    body = {
        "from": agent["email"], "to": ["alice@example.org"], "cc": ["Carol <carol@example.org>"],
        "bcc": ["hidden@example.org"], "subject": "Quarterly r\u00e9port",
        "body": "Numbers are up.", "html_body": "<p>Numbers are <b>up</b>.</p>",
        "attachments": [{"filename": "report.pdf", "content_type": "application/pdf",
                         "data": base64.b64encode(PDF).decode()}],
    }
    message_id = assert_sent(post(client, tenant, SEND, body))
    got = postfix.only()
    # The envelope: the VERP return path names the message; Bcc is a recipient.
    assert got.mail_from == verp.return_path(message_id, cfg.mail.shared_domain, verp.key(cfg))
    assert verp.parse(got.mail_from, verp.key(cfg)) == message_id
    assert got.rcpt_tos == ["alice@example.org", "carol@example.org", "hidden@example.org"]
    msg = got.message
    assert msg["From"] == f"Support Bot <{agent['email']}>"
    assert msg["To"] == "alice@example.org"
    assert msg["Cc"] == "Carol <carol@example.org>"
    assert "Bcc" not in msg and b"hidden@example.org" not in got.data
    assert msg["Subject"] == "Quarterly r\u00e9port"
    assert msg["Message-ID"] == f"<{message_id}@{cfg.mail.shared_domain}>"
    assert msg["Date"]
    assert "In-Reply-To" not in msg and "References" not in msg
    conversation = msg["X-E2A-Conversation-Id"]
    assert CONV.fullmatch(conversation)
    # Alternatives, then the attachment, byte for byte.
    assert msg.get_content_type() == "multipart/mixed"
    assert msg.get_body(("plain",)).get_content().strip() == "Numbers are up."
    assert msg.get_body(("html",)).get_content().strip() == "<p>Numbers are <b>up</b>.</p>"
    [attached] = list(msg.iter_attachments())
    assert (attached.get_filename(), attached.get_content_type()) == ("report.pdf",
                                                                      "application/pdf")
    assert attached.get_payload(decode=True) == PDF
    # Recorded: the row (exactly the submitted bytes) and its event.
    [row] = [r for r in outbound_rows(cfg, agent["id"]) if r["id"] == message_id]
    assert bytes(row["raw_message"]) == got.data
    assert {k: row[k] for k in ("type", "status", "delivery_status", "method", "sender",
                                "recipient", "to_recipients", "cc", "bcc", "subject",
                                "email_message_id", "conversation_id", "envelope_sender",
                                "queue_id", "entity_type", "inbox_status", "user_id")} == {
        "type": "send", "status": "sent", "delivery_status": "queued", "method": "smtp",
        "sender": agent["email"], "recipient": "alice@example.org",
        "to_recipients": ["alice@example.org"], "cc": ["carol@example.org"],
        "bcc": ["hidden@example.org"], "subject": "Quarterly r\u00e9port",
        "email_message_id": msg["Message-ID"], "conversation_id": conversation,
        "envelope_sender": got.mail_from, "queue_id": QUEUE_ID, "entity_type": "agent",
        "inbox_status": None, "user_id": tenant.user["id"]}
    assert row["size_bytes"] == len(got.data)
    [event] = events_for(cfg, message_id)
    assert (event["type"], event["agent_id"], event["conversation_id"], event["dispatched_at"]) \
        == ("email.sent", agent["id"], conversation, None)
    assert event["data"] == {"message_id": message_id, "agent_id": agent["id"],
                             "from": agent["email"], "to": ["alice@example.org"],
                             "cc": ["carol@example.org"], "subject": "Quarterly r\u00e9port",
                             "conversation_id": conversation, "type": "send"}


def test_send_keeps_the_callers_conversation_and_shows_in_the_outbox(client, tenant, agent,
                                                                     postfix):
    message_id = assert_sent(post(client, tenant, SEND, {
        "from": agent["email"], "to": "alice@example.org", "subject": "s", "body": "b",
        "conversation_id": "thread-42", "unknown_field": "ignored"}))
    assert postfix.only().message["X-E2A-Conversation-Id"] == "thread-42"
    listed = client.simulate_get(f"/api/v1/agents/{agent['email']}/messages",
                                 params={"direction": "outbound"}, headers=tenant.auth)
    [summary] = [m for m in listed.json["messages"] if m["message_id"] == message_id]
    assert summary["direction"] == "outbound"
    assert summary["conversation_id"] == "thread-42"
    assert summary["hitl_status"] == "sent"


def test_another_accounts_conversation_cannot_be_joined(cfg, client, tenant, agent, postfix):
    """A conversation id names one owner's thread: another account passing
    it is refused (403), and nothing is sent or recorded."""
    conversation = f"conv_{secrets.token_hex(16)}"
    assert_sent(post(client, tenant, SEND, {
        "from": agent["email"], "to": "alice@example.org", "subject": "mine", "body": "b",
        "conversation_id": conversation}))
    postfix.reset()
    intruder = make_tenant(cfg)
    theirs = named_agent(cfg, intruder)
    assert_error(post(client, intruder, SEND, {
        "from": theirs["email"], "to": agent["email"], "subject": "let me in", "body": "b",
        "conversation_id": conversation}), 403, "conversation_forbidden")
    assert postfix.received == []
    # Its owner still writes into it.
    assert_sent(post(client, tenant, SEND, {
        "from": agent["email"], "to": "alice@example.org", "subject": "again", "body": "b",
        "conversation_id": conversation}))


def test_an_agent_without_a_name_sends_from_its_address(client, tenant, postfix):
    assert_sent(post(client, tenant, SEND, {"from": tenant.agent["email"].upper(),
                                            "to": ["a@example.org"], "subject": "x",
                                            "body": "y"}))
    assert postfix.only().message["From"] == tenant.agent["email"]


# -- reply -----------------------------------------------------------------------


def test_reply_threads_and_inherits_the_conversation(cfg, client, tenant, agent, postfix):
    parent = received(cfg, agent, subject="Quarterly report",
                      conversation_id="conv_inbound_thread",
                      references_ids=["<root@example.org>", "<middle@example.org>"])
    message_id = assert_sent(post(client, tenant, reply_path(agent["email"], parent),
                                  {"body": "Thanks!", "html_body": "<p>Thanks!</p>"}))
    got = postfix.only()
    msg = got.message
    assert got.rcpt_tos == ["alice@example.org"]
    assert msg["To"] == "alice@example.org"
    assert "Cc" not in msg
    assert msg["Subject"] == "Re: Quarterly report"
    [row] = [r for r in outbound_rows(cfg, agent["id"]) if r["id"] == message_id]
    inbound_id = row["in_reply_to"]
    assert msg["In-Reply-To"] == inbound_id
    assert msg["References"].split() == ["<root@example.org>", "<middle@example.org>",
                                         inbound_id]
    assert msg["X-E2A-Conversation-Id"] == "conv_inbound_thread"
    assert (row["type"], row["conversation_id"], row["references_ids"]) == (
        "reply", "conv_inbound_thread", msg["References"].split())
    assert msg.get_content_type() == "multipart/alternative"


def test_reply_subject_is_not_doubled_and_goes_to_reply_to(cfg, client, tenant, agent,
                                                           postfix):
    parent = received(cfg, agent, subject="RE: already a reply",
                      reply_to=["desk@example.org"])
    assert_sent(post(client, tenant, reply_path(agent["email"], parent), {"body": "ok"}))
    msg = postfix.only().message
    assert msg["Subject"] == "RE: already a reply"
    assert msg["To"] == "desk@example.org"
    # A new thread gets a conversation id of its own.
    assert CONV.fullmatch(msg["X-E2A-Conversation-Id"])


def test_reply_all_copies_the_others_but_not_the_agent(cfg, client, tenant, agent, postfix):
    parent = received(cfg, agent, to_recipients=[agent["email"], "bob@example.org"],
                      cc=["carol@example.org", "ALICE@example.org"])
    assert_sent(post(client, tenant, reply_path(agent["email"], parent), {
        "body": "all", "reply_all": True, "cc": ["dave@example.org", "bob@example.org"],
        "bcc": ["audit@example.org"], "conversation_id": "conv_mine"}))
    got = postfix.only()
    msg = got.message
    assert msg["To"] == "alice@example.org"
    assert [a.addr_spec for a in msg["Cc"].addresses] == [
        "bob@example.org", "carol@example.org", "dave@example.org"]
    assert got.rcpt_tos == ["alice@example.org", "bob@example.org", "carol@example.org",
                            "dave@example.org", "audit@example.org"]
    assert agent["email"] not in got.rcpt_tos
    assert msg["X-E2A-Conversation-Id"] == "conv_mine"


def test_reply_needs_a_body_and_a_received_message(cfg, client, tenant, agent, postfix):
    parent = received(cfg, agent)
    assert_error(post(client, tenant, reply_path(agent["email"], parent), {}), 400,
                 "invalid_request")
    sent_id = assert_sent(post(client, tenant, SEND, {"from": agent["email"],
                                                      "to": ["a@example.org"], "body": "x"}))
    # One cannot reply to a message the agent sent, only to one it received.
    assert_error(post(client, tenant, reply_path(agent["email"], sent_id), {"body": "x"}), 404,
                 "not_found")
    assert_error(post(client, tenant, reply_path(agent["email"], "msg_" + "0" * 32),
                      {"body": "x"}), 404, "not_found")
    assert len(postfix.received) == 1


# -- forward ---------------------------------------------------------------------


def test_forward_quotes_the_original_in_a_new_thread(cfg, client, tenant, agent, postfix):
    parent = received(cfg, agent, subject="Invoice 7", body="Please pay by Friday.",
                      conversation_id="conv_original")
    message_id = assert_sent(post(client, tenant, forward_path(agent["email"], parent), {
        "to": ["accounts@example.org"], "body": "FYI, see below.",
        "attachments": [{"filename": "note.txt", "content_type": "text/plain",
                         "data": base64.b64encode(b"extra").decode()}]}))
    got = postfix.only()
    msg = got.message
    assert got.rcpt_tos == ["accounts@example.org"]
    assert msg["Subject"] == "Fwd: Invoice 7"
    assert "In-Reply-To" not in msg and "References" not in msg
    conversation = msg["X-E2A-Conversation-Id"]
    assert CONV.fullmatch(conversation) and conversation != "conv_original"
    text = msg.get_body(("plain",)).get_content().replace("\r\n", "\n")
    assert text.startswith("FYI, see below.\n\n---------- Forwarded message ---------\n"
                           "From: Alice Example <alice@example.org>\n"
                           "Date: Mon, 01 Jun 2026 11:59:00 +0000\n"
                           "Subject: Invoice 7\n"
                           f"To: {agent['email']}\n\nPlease pay by Friday.")
    [attached] = list(msg.iter_attachments())
    assert attached.get_payload(decode=True) == b"extra"
    [row] = [r for r in outbound_rows(cfg, agent["id"]) if r["id"] == message_id]
    assert (row["type"], row["in_reply_to"], row["references_ids"]) == ("forward", "", [])


def test_forward_into_a_given_conversation_with_html(cfg, client, tenant, agent, postfix):
    parent = received(cfg, agent, body="<b>not html here</b>")
    assert_sent(post(client, tenant, forward_path(agent["email"], parent), {
        "to": ["x@example.org"], "html_body": "<p>Look</p>", "conversation_id": "conv_keep"}))
    msg = postfix.only().message
    assert msg["X-E2A-Conversation-Id"] == "conv_keep"
    html = msg.get_body(("html",)).get_content()
    assert html.startswith("<p>Look</p>")
    assert "&lt;b&gt;not html here&lt;/b&gt;" in html
    assert "---------- Forwarded message ---------" in msg.get_body(("plain",)).get_content()


def test_forward_needs_recipients(cfg, client, tenant, agent, postfix):
    parent = received(cfg, agent)
    error = assert_error(post(client, tenant, forward_path(agent["email"], parent),
                              {"body": "x"}), 400, "invalid_request")
    assert error["details"] == {"param": "to"}
    assert postfix.received == []


# -- test mail -------------------------------------------------------------------


def test_test_mail_goes_to_the_agent_itself(cfg, client, tenant, agent, postfix):
    result = client.simulate_post(selftest_path(agent["email"]), headers=tenant.auth)
    message_id = assert_sent(result)
    got = postfix.only()
    assert got.rcpt_tos == [agent["email"]]
    assert got.mail_from == verp.return_path(message_id, cfg.mail.shared_domain, verp.key(cfg))
    assert got.message["To"] == agent["email"]
    assert got.message["From"] == f"Support Bot <{agent['email']}>"
    [row] = [r for r in outbound_rows(cfg, agent["id"]) if r["id"] == message_id]
    assert row["type"] == "test"


# -- tenant walls and verified domains ------------------------------------------------


def test_another_tenants_agent_and_messages_are_not_found(cfg, client, tenant, agent, postfix):
    other = make_tenant(cfg)
    theirs = received(cfg, other.agent)
    for result in (
        post(client, tenant, SEND, {"from": other.agent["email"], "to": ["a@example.org"],
                                    "body": "x"}),
        post(client, tenant, reply_path(other.agent["email"], theirs), {"body": "x"}),
        post(client, tenant, forward_path(other.agent["email"], theirs),
             {"to": ["a@example.org"]}),
        # Our own agent's path with their message id.
        post(client, tenant, reply_path(agent["email"], theirs), {"body": "x"}),
        post(client, tenant, forward_path(agent["email"], theirs), {"to": ["a@example.org"]}),
        client.simulate_post(selftest_path(other.agent["email"]), headers=tenant.auth),
        post(client, tenant, SEND, {"from": "nobody@agents.test.example",
                                    "to": ["a@example.org"], "body": "x"}),
    ):
        assert_error(result, 404, "not_found")
    assert postfix.received == []
    assert outbound_rows(cfg, other.agent["id"]) == []


def test_an_agent_key_sends_only_as_its_agent(cfg, client, tenant, postfix):
    mine = add_agent(cfg, tenant)
    sibling = add_agent(cfg, tenant)
    scoped = {"Authorization": f"Bearer {agent_key(cfg, tenant, mine)}"}
    parent = received(cfg, sibling)
    for path, body in ((SEND, {"from": sibling["email"], "to": ["a@example.org"], "body": "x"}),
                       (reply_path(sibling["email"], parent), {"body": "x"})):
        assert_error(client.simulate_post(path, json=body, headers=scoped), 404, "not_found")
    assert postfix.received == []
    result = client.simulate_post(SEND, json={"from": mine["email"], "to": ["a@example.org"],
                                              "body": "x"}, headers=scoped)
    assert_sent(result)


def test_an_unverified_domain_may_not_send(cfg, client, tenant, postfix):
    domain = add_domain(cfg, tenant)
    with single_connection(cfg) as conn:
        agent = accounts.register_agent(conn, cfg, tenant.user["id"],
                                        email=f"bot@{domain['domain']}")
        domain_store.record_check(conn, domain["id"], False)
    parent = received(cfg, agent)
    for result in (
        post(client, tenant, SEND, {"from": agent["email"], "to": ["a@example.org"],
                                    "body": "x"}),
        post(client, tenant, reply_path(agent["email"], parent), {"body": "x"}),
        post(client, tenant, forward_path(agent["email"], parent), {"to": ["a@example.org"]}),
        client.simulate_post(selftest_path(agent["email"]), headers=tenant.auth),
    ):
        assert_error(result, 403, "domain_not_verified")
    assert postfix.received == []
    assert outbound_rows(cfg, agent["id"]) == []


def test_a_custom_domain_sends_with_its_own_message_ids_and_return_path(cfg, client, tenant,
                                                                        postfix):
    domain = add_domain(cfg, tenant)
    with single_connection(cfg) as conn:
        agent = accounts.register_agent(conn, cfg, tenant.user["id"],
                                        email=f"sales@{domain['domain']}", name="Sales")
    message_id = assert_sent(post(client, tenant, SEND, {"from": agent["email"],
                                                         "to": ["a@example.org"], "body": "x"}))
    got = postfix.only()
    assert got.mail_from == verp.return_path(message_id, domain['domain'], verp.key(cfg))
    assert got.message["Message-ID"] == f"<{message_id}@{domain['domain']}>"
    assert got.message["From"] == f"Sales <sales@{domain['domain']}>"


def test_sending_needs_an_api_key(client):
    assert_error(client.simulate_post(SEND, json={}), 401, "unauthorized")
