"""The published e2a Python SDK (2.x), unchanged, against the live sandbox:
gunicorn serving the API, Postfix and the milter delivering the mail.

Covers what the SDK offers and this server implements: discovery, agents,
domains (with real DNS through the sandbox's dnsmasq) and the inbox,
including the SDK's own check of the X-E2A-Auth-* signature with the user's
signing secret, and a cloud-mode agent's webhook POST read by the SDK's own
webhook parser.
"""

from __future__ import annotations

import base64
import json
import secrets
from collections.abc import Iterator

import pytest
from sandbox_harness import RunningSandbox, compose, smtp_send, wait_until
from sdk_session import SDK2_VERSION, Sdk, SdkError, ensure_installed
from webhooksupport import Receiver

from e2a.cli.sandbox.stack import MX_HOST, SHARED_DOMAIN

pytestmark = pytest.mark.system

USER_EMAIL = "interop@sandbox.test"


@pytest.fixture(scope="module")
def account(sandbox: RunningSandbox):
    """A user of its own: its signing secret must not change how the other
    system tests' mail is signed."""
    return sandbox.box.bootstrap(user_email=USER_EMAIL, slug="interop")


@pytest.fixture(scope="module")
def sdk(sandbox: RunningSandbox, account) -> Iterator[Sdk]:
    version = ensure_installed()
    assert version == SDK2_VERSION
    client = Sdk(sandbox.api_url, account.api_key, account.agent_email)
    try:
        yield client
    finally:
        client.close()


def api(sandbox: RunningSandbox, account, method: str, path: str, **kwargs):
    """Our own API with the interop user's key, for what the SDK cannot do."""
    return sandbox.api(method, path, headers={"Authorization": f"Bearer {account.api_key}"},
                       **kwargs)


def test_discovery(sandbox, sdk):
    info = sdk.info()
    assert info == {"shared_domain": SHARED_DOMAIN, "slug_registration_enabled": True,
                    "public_url": sandbox.api_url}


def test_agents(sdk, account):
    listed = sdk.call("list_agents")["agents"]
    assert account.agent_email in [a["email"] for a in listed]

    own = sdk.call("get_agent", account.agent_email)
    assert own["email"] == account.agent_email
    assert (own["domain"], own["domain_verified"], own["agent_mode"]) == (
        SHARED_DOMAIN, True, "local")

    slug = f"sdk-{secrets.token_hex(4)}"
    created = sdk.call("register_agent", slug, agent_mode="local", name="SDK bot")
    email = f"{slug}@{SHARED_DOMAIN}"
    assert created["email"] == email and created["id"]
    assert created["domain"] == SHARED_DOMAIN

    updated = sdk.call("update_agent", email, hitl_enabled=True, hitl_ttl_seconds=3600,
                       hitl_expiration_action="approve")
    assert (updated["hitl_enabled"], updated["hitl_ttl_seconds"],
            updated["hitl_expiration_action"]) == (True, 3600, "approve")
    # Partial: what is not sent stays.
    assert sdk.call("update_agent", email, hitl_ttl_seconds=60)["hitl_enabled"] is True
    with pytest.raises(SdkError) as refused:
        sdk.call("update_agent", email, agent_mode="cloud")  # no webhook_url
    assert refused.value.status_code == 400

    with pytest.raises(SdkError) as taken:
        sdk.call("register_agent", slug, agent_mode="local")
    assert taken.value.status_code == 409

    sdk.call("delete_agent", email)
    with pytest.raises(SdkError) as gone:
        sdk.call("get_agent", email)
    assert gone.value.status_code == 404
    assert email not in [a["email"] for a in sdk.call("list_agents")["agents"]]


def test_domains(sandbox, sdk):
    name = f"sdk-{secrets.token_hex(4)}.example"
    domain = sdk.call("register_domain", name)
    assert domain["domain"] == name and domain["verified"] is False
    records = domain["dns_records"]
    assert records["mx"]["value"] == MX_HOST
    assert records["dkim"]["host"].endswith(f"._domainkey.{name}")
    assert name in [d["domain"] for d in sdk.call("list_domains")["domains"]]

    with pytest.raises(SdkError) as unpublished:
        sdk.call("verify_domain", name)
    assert unpublished.value.status_code == 412

    sandbox.dns.add_txt(records["txt"]["host"], records["txt"]["value"])
    sandbox.dns.add_mx(name, records["mx"]["value"])
    sandbox.dns.reload()
    verified = sdk.call("verify_domain", name)
    assert verified["verified"] is True and verified["verified_at"]
    assert (verified["mx"], verified["dkim"]) == ("found", "missing")
    [listed] = [d for d in sdk.call("list_domains")["domains"] if d["domain"] == name]
    assert listed["verified"] is True

    # An agent on the now verified custom domain; the domain stays while it exists.
    agent = sdk.call("register_agent", email=f"desk@{name}", agent_mode="local")
    assert agent["email"] == f"desk@{name}" and agent["domain"] == name
    with pytest.raises(SdkError) as in_use:
        sdk.call("delete_domain", name)
    assert in_use.value.status_code == 400
    sdk.call("delete_agent", f"desk@{name}")
    sdk.call("delete_domain", name)
    assert name not in [d["domain"] for d in sdk.call("list_domains")["domains"]]


def deliver(sandbox: RunningSandbox, rcpt: str, subject: str, body: str) -> None:
    sender = "ada@sandbox.test"
    reply = smtp_send(sandbox.smtp_port, sender, rcpt, compose(sender, rcpt, subject, body))
    assert reply.code == 250, reply


def test_inbox(sandbox, sdk, account):
    created = api(sandbox, account, "POST", "/api/v1/users/me/signing-secrets",
                  json={"name": "interop"})
    assert created.status_code == 201, created.text
    secret = created.json()["secret"]

    tag = secrets.token_hex(4)
    subjects = [f"sdk inbox {tag} {i}" for i in range(3)]
    for i, subject in enumerate(subjects):
        deliver(sandbox, account.agent_email, subject, f"Body number {i}.\n")

    def unread_of_this_test():
        listed = sdk.call("get_messages", status="unread", page_size=100)["messages"]
        return [m for m in listed if tag in m["subject"]]

    unread = wait_until(lambda: len(unread_of_this_test()) == 3 and unread_of_this_test(),
                        timeout=15, what="three unread messages through the SDK")
    assert sorted(m["subject"] for m in unread) == subjects
    assert all(m["recipient"] == account.agent_email and m["status"] == "unread"
               and "ada@sandbox.test" in m["sender"] for m in unread)

    # The raw layer: filters, ascending order and next_token paging.
    pages, token = [], None
    while True:
        page = sdk.call("list_messages", account.agent_email, status="unread", page_size=1,
                        token=token, sort="asc", subject_contains=f"SDK INBOX {tag}",
                        target="api")
        pages += [m["subject"] for m in page["messages"]]
        token = page["next_token"]
        if not token:
            break
        assert len(pages) < 10
    assert pages == subjects

    first = next(m for m in unread if m["subject"] == subjects[0])
    email = sdk.call("get_message", first["message_id"])
    assert email["verified"] is True  # REST is trusted by the SDK; the signature next
    assert email["subject"] == subjects[0]
    assert email["text_body"].strip() == "Body number 0."
    assert email["recipient"] == account.agent_email
    assert email["auth"]["sender"] == "ada@sandbox.test"
    assert email["auth"]["message_id"] == first["message_id"]
    assert base64.b64decode(email["raw_message"]).count(subjects[0].encode()) >= 1

    check = sdk.verify(first["message_id"], secret)
    assert check["valid"] is True
    assert sdk.verify(first["message_id"], "whsec_" + "0" * 64)["valid"] is False

    # Reading marked it read, for the SDK's listing too.
    assert [m["subject"] for m in unread_of_this_test()] == sorted(subjects[1:], reverse=True)
    read = sdk.call("get_messages", status="read", page_size=100)["messages"]
    assert first["message_id"] in [m["message_id"] for m in read]

    detail = sdk.call("get_message", account.agent_email, first["message_id"], target="api")
    assert detail["status"] == "read" and detail["from"]
    assert set(detail["auth_headers"]) >= {"X-E2A-Auth-Signature", "X-E2A-Auth-Body-Hash"}

    with pytest.raises(SdkError) as missing:
        sdk.call("get_message", "msg_" + "0" * 32)
    assert missing.value.status_code == 404


def test_a_cloud_agents_webhook_passes_the_sdks_own_parser(sandbox, sdk, account):
    """What the worker POSTs to a cloud-mode agent is what the SDK's
    parse_webhook (parse and verify X-E2A-Auth-* in one call) accepts with
    the owner's signing secret, and refuses once tampered with."""
    created = api(sandbox, account, "POST", "/api/v1/users/me/signing-secrets",
                  json={"name": "interop-webhook"})
    assert created.status_code == 201, created.text
    secret = created.json()["secret"]
    receiver = Receiver().start()
    slug = f"sdk-cloud-{secrets.token_hex(4)}"
    agent = sdk.call("register_agent", slug, agent_mode="cloud",
                     webhook_url=receiver.url("/inbound"))["email"]
    try:
        subject = f"sdk webhook {secrets.token_hex(4)}"
        deliver(sandbox, agent, subject, "For the cloud agent.\n")
        (post,) = receiver.wait_for(1, timeout=20)

        email = sdk.parse_webhook(post.body, secret)
        assert email["verified"] is True
        assert (email["recipient"], email["subject"]) == (agent, subject)
        assert email["sender"] == "ada@sandbox.test"
        assert email["text_body"].strip() == "For the cloud agent."
        assert email["message_id"] == post.json()["message_id"]
        assert email["auth"]["signature"] == post.headers["X-E2A-Auth-Signature"]

        with pytest.raises(SdkError) as wrong_secret:
            sdk.parse_webhook(post.body, "whsec_" + "0" * 64)
        assert wrong_secret.value.type == "PermissionError"
        payload = post.json()
        raw = base64.b64decode(payload["raw_message"]).replace(subject.encode(), b"changed")
        tampered = json.dumps({**payload, "raw_message": base64.b64encode(raw).decode()})
        with pytest.raises(SdkError) as altered:
            sdk.parse_webhook(tampered.encode(), secret)
        assert altered.value.type == "PermissionError"
    finally:
        receiver.stop()
        sdk.call("delete_agent", agent)
