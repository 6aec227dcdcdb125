"""GET /api/v1/agents/{email}/messages/{id}: the full message, byte-exact,
with its attestation; reading marks it read, and nothing else does."""

from __future__ import annotations

import base64
import hashlib
import re
import threading

import pytest
from apisupport import add_agent, api_client, insert_message, make_tenant
from inboxsupport import make_outbound, message_path, set_labels, stored

from e2a.core.db import open_pool
from e2a.core.inbound import attest
from e2a.core.inbound import inbox as inbound
from e2a.core.mailauth.verdict import Verdict

DETAIL_FIELDS = {"message_id", "conversation_id", "created_at", "from", "to", "cc",
                 "reply_to", "recipient", "subject", "status", "labels", "auth_headers",
                 "raw_message"}
RFC3339_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


@pytest.fixture(scope="module")
def client(cfg):
    with api_client(cfg) as test_client:
        yield test_client


def deliver(cfg, agent, raw: bytes) -> str:
    """Store mail the way the milter does (attestation included)."""
    pool = open_pool(cfg, name="test-deliver", wait=True)
    try:
        result = inbound.store(
            pool, raw, inbound.Envelope(mail_from="alice@example.com",
                                        recipients=[agent["email"]]),
            Verdict(spf="pass", dkim="none", dmarc="pass", aligned=True),
            cfg.secrets.hmac_secret)
    finally:
        pool.close()
    [message_id] = result.message_ids
    return message_id


def test_detail_is_the_stored_message_byte_for_byte(cfg, client):
    tenant = make_tenant(cfg)
    email = tenant.agent["email"]
    # Bytes a parser would be tempted to normalise: 8-bit, a folded header,
    # a bare LF, trailing blanks and no final newline.
    raw = (f"From: Alice <alice@example.com>\r\nTo: {email}, Bob <BOB@example.org>\r\n"
           "Cc: carol@example.net\r\nReply-To: replies@example.com\r\n"
           "Subject: =?utf-8?q?caf=C3=A9?= and\r\n more\r\nMessage-ID: <m1@example.com>\r\n"
           "Content-Type: text/plain; charset=utf-8\r\n\r\n"
           "h\xe9llo \r\nline\nend  ").encode("latin-1")
    message_id = deliver(cfg, tenant.agent, raw)

    result = client.simulate_get(message_path(email, message_id), headers=tenant.auth)
    assert result.status_code == 200, result.text
    detail = result.json
    assert set(detail) == DETAIL_FIELDS
    assert None not in detail.values()
    body = base64.b64decode(detail["raw_message"], validate=True)
    assert body == bytes(stored(cfg, message_id)["raw_message"])
    assert body == raw
    headers = detail["auth_headers"]
    assert hashlib.sha256(body).hexdigest() == headers["X-E2A-Auth-Body-Hash"]
    assert headers["X-E2A-Auth-Message-Id"] == message_id
    assert attest.verify(headers, cfg.secrets.hmac_secret)
    assert detail["message_id"] == message_id
    assert detail["from"] == "alice@example.com"
    assert detail["to"] == [email, "BOB@example.org"]
    assert detail["cc"] == ["carol@example.net"]
    assert detail["reply_to"] == ["replies@example.com"]
    assert detail["recipient"] == email
    assert detail["subject"] == "café and more"
    assert detail["conversation_id"] == ""
    assert detail["labels"] == []
    assert RFC3339_Z.match(detail["created_at"])


def test_get_marks_read_once_and_the_listing_agrees(cfg, client):
    tenant = make_tenant(cfg)
    email = tenant.agent["email"]
    target = insert_message(cfg, tenant.agent, subject="to be read")
    other = insert_message(cfg, tenant.agent, subject="left alone")

    def listed(status):
        result = client.simulate_get(tenant.messages_path, headers=tenant.auth,
                                     params={"status": status})
        return sorted(m["message_id"] for m in result.json["messages"])

    assert listed("unread") == sorted([target, other])
    assert listed("read") == []
    first = client.simulate_get(message_path(email, target), headers=tenant.auth)
    assert first.json["status"] == "read"
    assert stored(cfg, target)["inbox_status"] == "read"
    assert stored(cfg, other)["inbox_status"] == "unread"
    second = client.simulate_get(message_path(email, target), headers=tenant.auth)
    assert second.status_code == 200
    assert second.json["status"] == "read"
    assert listed("unread") == [other]
    assert listed("read") == [target]
    summary = client.simulate_get(tenant.messages_path, headers=tenant.auth,
                                  params={"status": "read"}).json["messages"][0]
    assert summary["status"] == "read"


def test_listing_does_not_mark_read(cfg, client):
    tenant = make_tenant(cfg)
    message_id = insert_message(cfg, tenant.agent)
    client.simulate_get(tenant.messages_path, headers=tenant.auth)
    assert stored(cfg, message_id)["inbox_status"] == "unread"


def test_outbound_message_is_not_given_an_inbox_status(cfg, client):
    tenant = make_tenant(cfg)
    message_id = insert_message(cfg, tenant.agent, subject="we sent this")
    make_outbound(cfg, message_id)
    result = client.simulate_get(message_path(tenant.agent["email"], message_id),
                                 headers=tenant.auth)
    assert result.status_code == 200
    assert result.json["status"] == ""
    row = stored(cfg, message_id)
    assert row["inbox_status"] is None
    assert row["status"] == "sent"


def test_labels_and_conversation_show(cfg, client):
    tenant = make_tenant(cfg)
    message_id = insert_message(cfg, tenant.agent, conversation_id="conv_detail")
    set_labels(cfg, message_id, ["a", "b"])
    detail = client.simulate_get(message_path(tenant.agent["email"], message_id),
                                 headers=tenant.auth).json
    assert detail["labels"] == ["a", "b"]
    assert detail["conversation_id"] == "conv_detail"


def test_concurrent_first_reads_all_answer_read(cfg, client):
    tenant = make_tenant(cfg)
    message_id = insert_message(cfg, tenant.agent)
    path = message_path(tenant.agent["email"], message_id)
    barrier = threading.Barrier(6)
    answers = []

    def read():
        barrier.wait()
        answers.append(client.simulate_get(path, headers=tenant.auth).json["status"])

    threads = [threading.Thread(target=read) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert answers == ["read"] * 6
    assert stored(cfg, message_id)["inbox_status"] == "read"


@pytest.mark.parametrize("message_id", ["msg_" + "0" * 32, "nonsense", "msg_%25"])
def test_missing_message_is_404(cfg, client, message_id):
    tenant = make_tenant(cfg)
    result = client.simulate_get(message_path(tenant.agent["email"], message_id),
                                 headers=tenant.auth)
    assert result.status_code == 404
    assert result.json["error"]["code"] == "not_found"


def test_message_of_a_sibling_agent_is_404_and_stays_unread(cfg, client):
    tenant = make_tenant(cfg)
    sibling = add_agent(cfg, tenant)
    theirs = insert_message(cfg, sibling)
    result = client.simulate_get(message_path(tenant.agent["email"], theirs),
                                 headers=tenant.auth)
    assert result.status_code == 404
    assert stored(cfg, theirs)["inbox_status"] == "unread"
