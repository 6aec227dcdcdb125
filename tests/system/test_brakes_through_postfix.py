"""Suppressions, managed unsubscribe and the loop brakes through the real
sandbox: Postfix, the milter, the content filter, the API under gunicorn,
the capture server standing in for the internet, and the published SDK 5.8.1.

- A real hard bounce (the capture server refuses bounce-me@) suppresses the
  address for the account; the next send is refused on both paths: 422 at
  the API, 550 5.7.1 from the content filter for an SMTP submission.
- The one-click POST found in the List-Unsubscribe field of the mail as it
  reached the internet (DKIM-signed with it) suppresses the recipient for
  the agent, and the next send is refused.
- Two agents answering each other on one conversation stop at the cap: the
  turn past it is held for a person.
- An agent that answers everything, against an autoresponder: the
  autoresponder's reply arrives labelled auto-generated, the agent's answer
  to it is held, and the loop ends.
- The SDK lists, creates and deletes suppressions.
"""

from __future__ import annotations

import email
import email.policy
import re
import secrets
import time
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import dkim
import pytest
import requests
from filtersupport import signature_tags
from sandbox_harness import RunningSandbox, new_agent, sandbox_resolver, smtp_send, wait_until
from sdk5_session import Sdk5, Sdk5Error, session

from e2a.core.db import single_connection
from e2a.core.outbound import suppressions
from e2a.core.store import users as user_store

pytestmark = pytest.mark.system


@pytest.fixture(scope="module")
def account(sandbox: RunningSandbox):
    """A user of its own: its suppressions and brakes touch no other test."""
    tag = secrets.token_hex(3)
    return sandbox.box.bootstrap(user_email=f"brakes-{tag}@sandbox.test", slug=f"brk-{tag}")


def v1(sandbox: RunningSandbox, account, method: str, path: str, **kwargs: Any):
    headers = {"Authorization": f"Bearer {account.api_key}", **kwargs.pop("headers", {})}
    return requests.request(method, sandbox.api_url + path, headers=headers, timeout=30,
                            **kwargs)


def messages_path(address: str) -> str:
    return f"/v1/agents/{quote(address, safe='')}/messages"


def send(sandbox, account, sender: str, to: str, subject: str, **extra: Any):
    return v1(sandbox, account, "POST", messages_path(sender),
              json={"to": [to], "subject": subject, "text": "Hello from an agent.", **extra})


def row_by_subject(sandbox: RunningSandbox, subject: str) -> dict[str, Any] | None:
    with single_connection(sandbox.box.config()) as conn:
        return conn.execute("SELECT * FROM messages WHERE subject = %s AND direction = "
                            "'outbound'", (subject,)).fetchone()


def inbound(sandbox, account, address: str) -> list[dict[str, Any]]:
    listed = v1(sandbox, account, "GET", messages_path(address),
                params={"direction": "inbound"})
    assert listed.status_code == 200, listed.text
    return listed.json()["items"]


def test_a_bounced_recipient_is_refused_at_the_api_and_at_the_content_filter(sandbox,
                                                                           account):
    first = send(sandbox, account, account.agent_email, "bounce-me@elsewhere.test",
                 f"first {uuid.uuid4().hex}")
    assert first.status_code == 202, first.text

    def suppressed() -> list[dict[str, Any]]:
        listed = v1(sandbox, account, "GET", "/v1/account/suppressions")
        assert listed.status_code == 200, listed.text
        return [s for s in listed.json()["items"] if s["address"] == "bounce-me@elsewhere.test"]

    [entry] = wait_until(suppressed, timeout=40, what="the hard bounce suppressing its address")
    assert (entry["source"], entry["source_message_id"]) == ("bounce",
                                                             first.json()["message_id"])
    refused = send(sandbox, account, account.agent_email, "Bounce-Me@elsewhere.test",
                   f"again {uuid.uuid4().hex}")
    assert refused.status_code == 422, refused.text
    assert refused.json()["error"]["code"] == "recipient_suppressed"

    subject = f"by smtp {uuid.uuid4().hex}"
    data = (f"From: Bot <{account.agent_email}>\r\nTo: bounce-me@elsewhere.test\r\n"
            f"Subject: {subject}\r\nMIME-Version: 1.0\r\n"
            "Content-Type: text/plain; charset=utf-8\r\n\r\nSent without the API.\r\n").encode()
    reply = smtp_send(sandbox.box.ports.submit, account.agent_email,
                      "bounce-me@elsewhere.test", data)
    assert reply.code == 250, reply  # the content filter runs after the queue
    stored = wait_until(lambda: (r := row_by_subject(sandbox, subject))
                        and r["delivery_status"] == "failed" and r, timeout=30,
                        what="the filter refusing the SMTP submission")
    assert "suppressed" in stored["delivery_error"]
    sandbox.postfix.wait_for_log(r"said: 550 5\.7\.1 recipient suppressed", timeout=15)
    time.sleep(1)
    assert not [c for c in sandbox.capture.messages() if subject.encode() in c.data]


def test_one_click_unsubscribe_from_the_delivered_header_suppresses(sandbox, account):
    reader = f"reader-{secrets.token_hex(3)}@elsewhere.test"
    subject = f"news {uuid.uuid4().hex}"
    sent = send(sandbox, account, account.agent_email, reader, subject,
                unsubscribe={"mode": "managed"})
    assert sent.status_code == 202, sent.text
    captured = sandbox.capture.wait_for(lambda c: subject.encode() in c.data, timeout=30)
    msg = email.message_from_bytes(captured.data, policy=email.policy.default)
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    [url] = re.findall(r"<(https?://[^>]+/u/[a-z2-7]+)>", msg["List-Unsubscribe"])
    assert url in msg.get_body(("plain",)).get_content()  # the footer
    signed = re.sub(r"\s", "", signature_tags(captured.data)["h"]).lower().split(":")
    assert {"list-unsubscribe", "list-unsubscribe-post"} <= set(signed)
    with sandbox_resolver(sandbox):
        assert dkim.verify(captured.data)
    page = requests.get(url, timeout=15)
    assert page.status_code == 200 and "Unsubscribe?" in page.text
    # What a mail client does for RFC 8058.
    done = requests.post(url, data="List-Unsubscribe=One-Click", timeout=15, headers={
        "Content-Type": "application/x-www-form-urlencoded"})
    assert (done.status_code, done.text) == (200, "")
    listed = v1(sandbox, account, "GET",
                f"/v1/agents/{quote(account.agent_email, safe='')}/suppressions")
    assert [(s["address"], s["source"]) for s in listed.json()["items"]
            if s["address"] == reader] == [(reader, "unsubscribe")]
    again = send(sandbox, account, account.agent_email, reader, f"again {subject}")
    assert again.status_code == 422, again.text
    assert again.json()["error"]["code"] == "recipient_suppressed"


def test_mail_to_the_mailto_unsubscribe_address_suppresses(sandbox, account):
    reader = f"mailer-{secrets.token_hex(3)}@sandbox.test"
    subject = f"digest {uuid.uuid4().hex}"
    assert send(sandbox, account, account.agent_email, reader, subject,
                unsubscribe={"mode": "managed"}).status_code == 202
    captured = sandbox.capture.wait_for(lambda c: subject.encode() in c.data, timeout=30)
    header = email.message_from_bytes(captured.data, policy=email.policy.default)[
        "List-Unsubscribe"]
    [mailto] = re.findall(r"<mailto:([^>]+)>", header)
    # What a mail client does with the mailto: form: a mail, to our MX.
    data = (f"From: <{reader}>\r\nTo: <{mailto}>\r\nSubject: unsubscribe\r\n"
            f"Message-ID: <{uuid.uuid4().hex}@sandbox.test>\r\n\r\nunsubscribe\r\n").encode()
    assert smtp_send(sandbox.smtp_port, reader, mailto, data).code == 250

    def suppressed() -> bool:
        listed = v1(sandbox, account, "GET",
                    f"/v1/agents/{quote(account.agent_email, safe='')}/suppressions")
        return reader in [s["address"] for s in listed.json()["items"]]

    wait_until(suppressed, timeout=20, what="the mailto: unsubscribe suppressing")
    assert send(sandbox, account, account.agent_email, reader,
                f"again {subject}").status_code == 422
    # Nobody's mailbox: the mail to the address never left for the internet.
    assert not [c for c in sandbox.capture.messages() if mailto in c.rcpt_tos]


def set_brakes(sandbox, account, address: str, **overrides: Any) -> None:
    result = v1(sandbox, account, "PUT", f"/v1/agents/{quote(address, safe='')}/brakes",
                json={"overrides": overrides})
    assert result.status_code == 200, result.text


def answer_latest(sandbox, account, address: str, seen: set[str]) -> dict[str, Any] | None:
    """What a naive agent does: answer every new message in its inbox."""
    fresh = [m for m in inbound(sandbox, account, address) if m["id"] not in seen]
    if not fresh:
        return None
    latest = fresh[0]
    seen.add(latest["id"])
    answered = v1(sandbox, account, "POST", f"{messages_path(address)}/{latest['id']}/reply",
                  json={"text": "Thanks! Tell me more."})
    assert answered.status_code == 202, answered.text
    return {"message": latest, "answer": answered.json()}


def fresh_agent(sandbox: RunningSandbox, account, prefix: str) -> str:
    """An agent of the account's own, whose inbox no other test writes to."""
    with single_connection(sandbox.box.config()) as conn:
        user = user_store.user_by_email(conn, account.user_email)
    return new_agent(sandbox, hitl=False, prefix=prefix, user_id=user["id"])["email"]


def test_two_agents_answering_each_other_stop_at_the_cap(sandbox, account):
    first, other = fresh_agent(sandbox, account, "ping"), fresh_agent(sandbox, account, "pong")
    cap = 3
    for address in (first, other):
        set_brakes(sandbox, account, address, thread_turns_per_hour=cap)
    conversation = "conv_" + secrets.token_hex(16)
    opened = send(sandbox, account, first, other, f"ping {uuid.uuid4().hex}",
                  conversation_id=conversation)
    assert opened.json()["status"] == "accepted", opened.text
    seen: dict[str, set[str]] = {first: set(), other: set()}
    statuses = ["accepted"]
    turn = other
    while statuses[-1] == "accepted" and len(statuses) < cap + 3:
        done = wait_until(lambda a=turn: answer_latest(sandbox, account, a, seen[a]),
                          timeout=30, what=f"{turn} receiving the last turn")
        statuses.append(done["answer"]["status"])
        turn = first if turn == other else other
    assert statuses == ["accepted"] * cap + ["pending_review"], statuses


def autoresponder(sandbox: RunningSandbox, address: str, agent: str, stop: list[bool]
                  ) -> Iterator[int]:
    """The internet's out-of-office at ``address``: one auto-reply to every
    message that reaches it, sent to our MX; yields how many it answered."""
    answered: set[str] = set()
    while not stop:
        for c in sandbox.capture.messages():
            if address not in c.rcpt_tos or c.path.name in answered:
                continue
            answered.add(c.path.name)
            original = email.message_from_bytes(c.data, policy=email.policy.default)
            data = (f"From: Away <{address}>\r\nTo: {agent}\r\n"
                    f"Subject: Automatic reply: {original['Subject']}\r\n"
                    "Auto-Submitted: auto-replied\r\n"
                    f"In-Reply-To: {original['Message-ID']}\r\n"
                    f"Message-ID: <{uuid.uuid4().hex}@sandbox.test>\r\n\r\n"
                    "I am out of the office.\r\n").encode()
            assert smtp_send(sandbox.smtp_port, address, agent, data).code == 250
        yield len(answered)


def test_an_auto_reply_loop_between_an_agent_and_an_autoresponder_ends(sandbox, account):
    away = f"away-{secrets.token_hex(3)}@sandbox.test"
    agent = fresh_agent(sandbox, account, "naive")
    opened = send(sandbox, account, agent, away, f"hello {uuid.uuid4().hex}")
    assert opened.status_code == 202, opened.text
    stop: list[bool] = []
    responder = autoresponder(sandbox, away, agent, stop)
    seen: set[str] = {m["id"] for m in inbound(sandbox, account, agent)}
    answers = []
    deadline = time.monotonic() + 45
    while time.monotonic() < deadline:
        next(responder)
        done = answer_latest(sandbox, account, agent, seen)
        if done:
            answers.append(done)
            if done["answer"]["status"] != "accepted":
                break
        time.sleep(0.3)
    # A little longer: nothing more may reach the autoresponder.
    for _ in range(10):
        next(responder)
        time.sleep(0.3)
    stop.append(True)
    assert [a["answer"]["status"] for a in answers] == ["pending_review"], answers
    assert "auto-generated" in answers[0]["message"]["labels"]
    reached = [c for c in sandbox.capture.messages() if away in c.rcpt_tos]
    assert len(reached) == 1  # only the opening message ever left


@pytest.fixture(scope="module")
def sdk(sandbox: RunningSandbox, account) -> Iterator[Sdk5]:
    with session(sandbox.api_url, account.api_key) as client:
        yield client


def test_the_sdk_lists_creates_and_deletes_suppressions(sdk, account):
    address = f"sdk-{secrets.token_hex(3)}@elsewhere.test"
    created = sdk("agents.create_suppression", account.agent_email,
                  {"address": address, "reason": "asked by phone"})
    assert (created["address"], created["source"], created["reason"]) == (
        address, "manual", "asked by phone")
    listed = sdk("agents.list_suppressions", account.agent_email)
    assert address in [s["address"] for s in listed]
    with pytest.raises(Sdk5Error) as refused:
        sdk("messages.send", account.agent_email,
            {"to": [address], "subject": "no", "text": "no"})
    assert (refused.value.type, refused.value.code) == ("E2AValidationError",
                                                        "recipient_suppressed")
    deleted = sdk("agents.delete_suppression", account.agent_email, address)
    assert deleted == {"deleted": True, "address": address}
    assert address not in [s["address"] for s in
                           sdk("agents.list_suppressions", account.agent_email)]


def test_the_sdk_lists_and_deletes_account_suppressions(sandbox, sdk, account):
    address = f"gone-{secrets.token_hex(3)}@elsewhere.test"
    with single_connection(sandbox.box.config()) as conn:
        user = user_store.user_by_email(conn, account.user_email)
        suppressions.add_for_account(conn, user["id"], address, source="bounce",
                                     reason="550 5.1.1 gone", message_id="msg_" + "2" * 32)
    [entry] = [s for s in sdk("account.suppressions.list") if s["address"] == address]
    assert (entry["source"], entry["reason"], entry["source_message_id"]) == (
        "bounce", "550 5.1.1 gone", "msg_" + "2" * 32)
    assert sdk("account.suppressions.delete", address) == {"deleted": True, "address": address}
    assert address not in [s["address"] for s in sdk("account.suppressions.list")]


def test_the_sdk_sends_with_managed_unsubscribe(sandbox, sdk, account):
    subject = f"sdk managed {uuid.uuid4().hex}"
    sent = sdk("messages.send", account.agent_email,
               {"to": [f"sdk-reader-{secrets.token_hex(3)}@elsewhere.test"],
                "subject": subject, "text": "Hello.", "unsubscribe": {"mode": "managed"}})
    assert sent["status"] == "accepted", sent
    captured = sandbox.capture.wait_for(lambda c: subject.encode() in c.data, timeout=30)
    assert "/u/" in email.message_from_bytes(captured.data)["List-Unsubscribe"]
    with pytest.raises(Sdk5Error) as refused:
        sdk("messages.send", account.agent_email,
            {"to": ["a@elsewhere.test", "b@elsewhere.test"], "subject": "two",
             "text": "x", "unsubscribe": {"mode": "managed"}})
    assert refused.value.status == 400
