"""Today's published e2a SDK, exactly ``e2a==5.8.1``, unchanged, against the
live sandbox's /v1 API (gunicorn serving it, Postfix and the milter
delivering the mail): discovery, the account, agents, the inbox with its
authentication evidence, labels, trash and restore, conversations, and the
account's erasure. And one generation to the other: a message received once
is the same message, by the same id, in the legacy API and in /v1."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

import pytest
from sandbox_harness import RunningSandbox, compose, smtp_send, wait_until
from sdk5_session import Sdk5, Sdk5Error, session

from sandbox.stack import SHARED_DOMAIN

pytestmark = pytest.mark.system

SPF = {"pass", "fail", "none", "neutral", "softfail", "temperror", "permerror"}
DMARC = {"pass", "fail", "none", "temperror", "permerror"}


@pytest.fixture(scope="module")
def account(sandbox: RunningSandbox):
    """A user of its own, so nothing here touches the other tests' mail."""
    return sandbox.box.bootstrap(user_email="sdk5@sandbox.test", slug="sdk5")


@pytest.fixture(scope="module")
def sdk(sandbox: RunningSandbox, account) -> Iterator[Sdk5]:
    with session(sandbox.api_url, account.api_key) as client:
        yield client


@pytest.fixture(scope="module")
def agent(sdk) -> str:
    email = f"sdk5-{secrets.token_hex(3)}@{SHARED_DOMAIN}"
    made = sdk("agents.create", {"email": email, "name": "Five"})
    assert made["email"] == email and made["domain_verified"] is True
    return email


def deliver(sandbox: RunningSandbox, rcpt: str, subject: str) -> None:
    sender = "ada@sandbox.test"
    reply = smtp_send(sandbox.smtp_port, sender, rcpt,
                      compose(sender, rcpt, subject, f"hello from {subject}"))
    assert reply.code == 250, reply


def inbox(sdk, email: str, **filters) -> list[dict]:
    return sdk("messages.list", email, **filters)


def test_info(sdk, sandbox):
    info = sdk("info")
    assert info["shared_domain"] == SHARED_DOMAIN
    assert info["slug_registration_enabled"] is True


def test_account(sdk, account):
    view = sdk("account.get")
    assert view["user"]["email"] == account.user_email
    assert view["scope"] == "account"
    assert view["usage"]["agents"] >= 1


def test_agents(sdk, agent, account):
    listed = [a["email"] for a in sdk("agents.list")]
    assert agent in listed and account.agent_email in listed
    assert sdk("agents.get", agent.upper())["email"] == agent
    assert sdk("agents.update", agent, {"name": "Renamed"})["name"] == "Renamed"
    with pytest.raises(Sdk5Error) as taken:
        sdk("agents.create", {"email": agent})
    assert (taken.value.type, taken.value.code) == ("E2AConflictError", "agent_taken")
    with pytest.raises(Sdk5Error) as unknown:
        sdk("agents.get", f"nobody-{secrets.token_hex(3)}@{SHARED_DOMAIN}")
    assert unknown.value.type == "E2ANotFoundError" and unknown.value.request_id


def test_inbox_with_authentication_labels_and_trash(sdk, sandbox, agent):
    subject = f"five {secrets.token_hex(4)}"
    deliver(sandbox, agent, subject)
    listed = wait_until(lambda: inbox(sdk, agent), what="the mail in the /v1 inbox")
    summary = listed[0]
    assert summary["subject"] == subject and summary["read_status"] == "unread"
    message_id = summary["id"]

    message = sdk("messages.get", agent, message_id)
    assert message["header_from"] == "ada@sandbox.test"
    assert message["envelope_from"] == "ada@sandbox.test"
    assert message["delivered_to"] == agent
    auth = message["authentication"]
    assert auth["spf"]["status"] in SPF and auth["dmarc"]["status"] in DMARC
    assert isinstance(auth["dkim"], list)
    assert (message["verified_domain"] is not None) == (auth["dmarc"]["status"] == "pass")
    assert message["body"]["text"].startswith(f"hello from {subject}")
    assert message["raw_message"]
    assert inbox(sdk, agent) == []  # read now: the default listing is the unread mail

    since = (datetime.now(UTC) - timedelta(minutes=10)).isoformat()
    assert [m["id"] for m in inbox(sdk, agent, read_status="all", since=since)] == [message_id]
    assert sdk("messages.update_labels", agent, message_id,
               {"add_labels": ["five", "urgent"]})["labels"] == ["five", "urgent"]
    assert [m["id"] for m in inbox(sdk, agent, read_status="all",
                                   labels=["five", "urgent"])] == [message_id]

    assert sdk("messages.delete", agent, message_id) == {"deleted": True, "id": message_id}
    assert inbox(sdk, agent, read_status="all") == []
    assert [m["id"] for m in inbox(sdk, agent, deleted=True)] == [message_id]
    restored = sdk("messages.restore", agent, message_id)
    assert restored["id"] == message_id and restored.get("deleted_at") is None
    with pytest.raises(Sdk5Error) as live:
        sdk("messages.delete", agent, message_id, permanent=True)
    assert live.value.code == "not_in_trash"


def test_conversations(sdk, sandbox, agent, account):
    # Agent to agent through the legacy send: the reply path threads both sides.
    subject = f"thread {secrets.token_hex(4)}"
    sent = sandbox.api("POST", "/api/v1/send", headers={
        "Authorization": f"Bearer {account.api_key}"}, json={
        "from": account.agent_email, "to": [agent], "subject": subject, "body": "hi"})
    assert sent.status_code in (200, 202), sent.text
    conversations = wait_until(
        lambda: [c for c in sdk("conversations.list", account.agent_email)
                 if c["latest_subject"] == subject], what="the conversation")
    detail = sdk("conversations.get", account.agent_email, conversations[0]["id"])
    assert detail["message_count"] >= 1
    assert detail["messages"][0]["subject"] == subject
    with pytest.raises(Sdk5Error) as missing:
        sdk("conversations.get", account.agent_email, "conv_" + "0" * 32)
    assert missing.value.type == "E2ANotFoundError"


def test_one_message_in_both_generations(sdk, sandbox, agent, account):
    subject = f"both {secrets.token_hex(4)}"
    deliver(sandbox, agent, subject)
    current = wait_until(lambda: inbox(sdk, agent, subject_contains=subject),
                         what="the mail in /v1")
    legacy = sandbox.api("GET", f"/api/v1/agents/{quote(agent, safe='')}/messages",
                         headers={"Authorization": f"Bearer {account.api_key}"},
                         params={"subject_contains": subject})
    assert legacy.status_code == 200, legacy.text
    assert [m["message_id"] for m in legacy.json()["messages"]] == [current[0]["id"]]
    # One store: reading it through /v1 marks it read for the legacy client too.
    sdk("messages.get", agent, current[0]["id"])
    legacy = sandbox.api("GET", f"/api/v1/agents/{quote(agent, safe='')}/messages/"
                                f"{current[0]['id']}",
                         headers={"Authorization": f"Bearer {account.api_key}"})
    assert legacy.json()["status"] == "read"


def test_account_erasure(sandbox):
    doomed = sandbox.box.bootstrap(user_email=f"gone-{secrets.token_hex(3)}@sandbox.test",
                                   slug=f"gone-{secrets.token_hex(3)}")
    client = Sdk5(sandbox.api_url, doomed.api_key)
    try:
        receipt = client("account.delete")
        assert receipt["user_deleted"] is True and receipt["agents_deleted"] == 1
        with pytest.raises(Sdk5Error) as gone:
            client("account.get")
        assert gone.value.type == "E2AAuthError"
    finally:
        client.close()


def test_send_and_reply_through_the_sdk(sdk, sandbox, agent, account):
    """Agent to agent on this host: out through Postfix and the content
    filter, back in through the milter; then a reply the other way."""
    subject = f"sent by five {secrets.token_hex(4)}"
    sent = sdk("messages.send", agent, {"to": [account.agent_email], "subject": subject,
                                        "text": "hello from the 5.x SDK"})
    assert sent["status"] == "accepted" and sent["message_id"].startswith("msg_")
    arrived = wait_until(lambda: inbox(sdk, account.agent_email, subject_contains=subject),
                         timeout=30, what="the sent mail in the other agent's inbox")
    replied = sdk("messages.reply", account.agent_email, arrived[0]["id"],
                  {"text": "got it"})
    assert replied["status"] == "accepted"
    back = wait_until(lambda: inbox(sdk, agent, subject_contains=f"Re: {subject}"),
                      timeout=30, what="the reply back in the sender's inbox")
    assert back[0]["conversation_id"] == arrived[0]["conversation_id"]
    outbound = inbox(sdk, agent, direction="outbound", subject_contains=subject)
    assert [m["id"] for m in outbound] == [sent["message_id"]]


def test_a_trashed_agent_receives_no_mail_until_restored(sdk, sandbox):
    email = f"trash-{secrets.token_hex(3)}@{SHARED_DOMAIN}"
    sdk("agents.create", {"email": email})
    receipt = sdk("agents.delete", email)
    assert receipt == {"deleted": True, "email": email, "messages_deleted": 0}
    assert email in [a["email"] for a in sdk("agents.list", deleted=True)]
    sender = "ada@sandbox.test"
    refused = smtp_send(sandbox.smtp_port, sender, email, compose(sender, email, "x", "x"))
    assert (refused.stage, refused.code) == ("RCPT", 550), refused
    assert sdk("agents.restore", email)["email"] == email
    deliver(sandbox, email, "back again")
    assert wait_until(lambda: inbox(sdk, email), what="mail for the restored agent")


def test_agent_test_mail(sdk, agent):
    result = sdk("agents.test", agent)
    assert result["status"] == "accepted"
    assert wait_until(lambda: inbox(sdk, agent, subject_contains="Test email from e2a"),
                      timeout=30, what="the test mail back in the inbox")


def test_api_keys(sdk, sandbox):
    made = sdk("account.api_keys.create", {"name": "from the sdk"})
    assert made["key"].startswith("e2a_") and made["scope"] == "account"
    assert made["id"] in [k["id"] for k in sdk("account.api_keys.list")]
    other = Sdk5(sandbox.api_url, made["key"])
    try:
        assert other("account.get")["scope"] == "account"
        assert sdk("account.api_keys.delete", made["id"]) == {"deleted": True,
                                                              "id": made["id"]}
        with pytest.raises(Sdk5Error) as revoked:
            other("account.get")
        assert revoked.value.type == "E2AAuthError"
    finally:
        other.close()
