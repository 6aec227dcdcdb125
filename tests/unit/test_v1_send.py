"""Sending through /v1 (new message, reply incl. reply_all, forward) over
the legacy API's one send path: submitted to (a fake of) Postfix's submit
service; a HITL agent's mail is held (pending_review)."""

from __future__ import annotations

import pytest
from apisupport import insert_message, make_tenant
from submitsupport import sending_client
from v1support import agent_path, assert_envelope, messages_path

from e2a.core.ids import new_id
from e2a.core.outbound import drafts


@pytest.fixture(autouse=True)
def clean(postfix):
    postfix.reset()


@pytest.fixture(scope="module")
def client(cfg, postfix, tmp_path_factory):
    with sending_client(cfg, postfix, tmp_path_factory.mktemp("send5")) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def tenant(cfg):
    return make_tenant(cfg)


def test_send_is_accepted_and_submitted(client, tenant, postfix):
    # Conversation ids belong to the account that first used them: a fresh one.
    conversation = new_id("conv")
    result = client.simulate_post(messages_path(tenant.agent["email"]), headers=tenant.auth,
                                  json={"to": ["bob@example.org"], "cc": ["c@example.org"],
                                        "subject": "Hi", "text": "hello", "html": "<p>hello</p>",
                                        "conversation_id": conversation})
    assert result.status_code == 202, result.text
    assert result.json["status"] == "accepted" and result.json["method"] == "smtp"
    got = postfix.only()
    assert sorted(got.rcpt_tos) == ["bob@example.org", "c@example.org"]
    assert got.message["Subject"] == "Hi"
    assert got.message["X-E2A-Conversation-Id"] == conversation
    listed = client.simulate_get(messages_path(tenant.agent["email"]),
                                 params={"direction": "outbound"}, headers=tenant.auth)
    assert [m["id"] for m in listed.json["items"]] == [result.json["message_id"]]
    assert listed.json["items"][0]["header_from"] == tenant.agent["email"]
    assert listed.json["items"][0]["envelope_from"] is None


def test_send_refusals(client, tenant, postfix):
    path = messages_path(tenant.agent["email"])
    assert_envelope(client.simulate_post(path, headers=tenant.auth, json={
        "to": ["bob@example.org"], "text": "x", "from": "a@b.c"}), 422, "invalid_request")
    assert_envelope(client.simulate_post(path, headers=tenant.auth, json={
        "to": ["not an address"], "text": "x"}), 400, "invalid_recipient")
    assert_envelope(client.simulate_post(path, headers=tenant.auth, json={
        "to": [f"r{n}@example.org" for n in range(51)], "text": "x"}), 400,
        "too_many_recipients")
    assert_envelope(client.simulate_post(path, headers=tenant.auth, json={
        "to": ["bob@example.org"], "text": "x", "send_at": "2030-01-01T00:00:00Z"}),
        400, "invalid_request")
    assert_envelope(client.simulate_post(path, headers=tenant.auth, json={}), 400,
                    "invalid_request")
    assert postfix.received == []


def test_idempotent_send_replays(client, tenant, postfix):
    path = messages_path(tenant.agent["email"])
    headers = {**tenant.auth, "Idempotency-Key": "k" * 32}
    body = {"to": ["bob@example.org"], "subject": "once", "text": "x"}
    first = client.simulate_post(path, headers=headers, json=body)
    again = client.simulate_post(path, headers=headers, json=body)
    assert (first.status_code, again.status_code) == (202, 202)
    assert first.json == again.json
    assert len(postfix.received) == 1
    other = client.simulate_post(path, headers=headers, json={**body, "text": "y"})
    assert_envelope(other, 422, "idempotency_key_reuse")


def test_reply_and_reply_all(client, cfg, tenant, postfix):
    parent = insert_message(cfg, tenant.agent, subject="Quarterly",
                            to_recipients=[tenant.agent["email"], "bob@example.org"],
                            cc=["carol@example.org"])
    path = f"{messages_path(tenant.agent['email'])}/{parent}/reply"
    result = client.simulate_post(path, headers=tenant.auth, json={"text": "thanks"})
    assert result.status_code == 202, result.text
    got = postfix.only()
    assert got.rcpt_tos == ["alice@example.org"]
    assert got.message["Subject"] == "Re: Quarterly"
    assert got.message["In-Reply-To"] == f"<{parent}@example.org>"
    postfix.reset()
    client.simulate_post(path, headers=tenant.auth, json={"text": "all", "reply_all": True})
    assert sorted(postfix.only().rcpt_tos) == ["alice@example.org", "bob@example.org",
                                               "carol@example.org"]
    assert_envelope(client.simulate_post(path, headers=tenant.auth, json={"html": "x"}),
                    400, "invalid_request")  # text is required
    missing = f"{messages_path(tenant.agent['email'])}/msg_{'0' * 32}/reply"
    assert_envelope(client.simulate_post(missing, headers=tenant.auth, json={"text": "x"}),
                    404, "not_found")


def test_forward(client, cfg, tenant, postfix):
    parent = insert_message(cfg, tenant.agent, subject="Invoice")
    path = f"{messages_path(tenant.agent['email'])}/{parent}/forward"
    result = client.simulate_post(path, headers=tenant.auth,
                                  json={"to": ["desk@example.org"], "text": "FYI"})
    assert result.status_code == 202, result.text
    got = postfix.only()
    assert got.rcpt_tos == ["desk@example.org"]
    assert got.message["Subject"] == "Fwd: Invoice"
    assert "FYI" in got.message.get_body(("plain",)).get_content()


def test_a_hitl_agent_is_held_as_pending_review(hitl_client, hitl_owner):
    result = hitl_client.simulate_post(messages_path(hitl_owner.agent["email"]),
                                       headers=hitl_owner.auth,
                                       json={"to": ["bob@example.org"], "subject": "hold me",
                                             "text": "x"})
    assert result.status_code == 202, result.text
    assert result.json["status"] == "pending_review"
    assert result.json["approval_expires_at"]


def test_agent_test_mail_goes_to_itself(client, tenant, postfix):
    result = client.simulate_post(agent_path(tenant.agent["email"]) + "/test",
                                  headers=tenant.auth)
    assert result.status_code == 202, result.text
    assert result.json["status"] == "accepted"
    got = postfix.only()
    assert got.rcpt_tos == [tenant.agent["email"]]
    assert got.message["Subject"] == drafts.TEST_SUBJECT
