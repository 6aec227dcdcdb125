"""Who a message is from, end to end through the sandbox's Postfix.

Every sender identity decides the hold (envelope sender, each From,
Sender:); a domain's DKIM key signs only its owner's mail; the reinjection
service takes only our filter and release; recipient addresses are
canonicalized the same way by the policy service, the milter and the
filter; conversation ids never cross owners and never leave the host.
"""

from __future__ import annotations

import secrets
import smtplib
import time
from collections.abc import Iterator
from typing import Any

import pytest
from filtersupport import signature_tags
from sandbox_harness import RunningSandbox, extra_smtpd, new_agent, smtp_send, wait_until

from e2a.core import accounts, domains
from e2a.core.db import single_connection
from e2a.core.store import agents as agent_store
from e2a.core.store import domains as domain_store

pytestmark = pytest.mark.system

ARRIVAL_TIMEOUT = 60.0
SETTLE_SECONDS = 2.0


@pytest.fixture(scope="module")
def stranger(sandbox: RunningSandbox) -> dict[str, Any]:
    """Another tenant: its own user, API key, agent and a verified domain of
    its own with a DKIM key of ours."""
    cfg = sandbox.box.config()
    with single_connection(cfg) as conn:
        user = accounts.create_user(conn, f"other-{secrets.token_hex(4)}@sandbox.test")
        key = accounts.issue_key(conn, user["id"]).key
        domain = domains.register(conn, cfg, user["id"], f"t{secrets.token_hex(4)}.example")
        domain_store.record_check(conn, domain["id"], True)
    agent = new_agent(sandbox, hitl=False, prefix="id", user_id=user["id"])
    return {"user": user, "key": key, "agent": agent, "domain": domain["domain"]}


def _raw(headers: dict[str, str], token: str) -> bytes:
    lines = [f"{name}: {value}" for name, value in headers.items()]
    lines += [f"Message-ID: <{token}@sandbox.test>", "MIME-Version: 1.0",
              "Content-Type: text/plain; charset=utf-8", "", f"Hello. {token}", ""]
    return "\r\n".join(lines).encode()


def _captured(sandbox: RunningSandbox, token: str) -> Any:
    return sandbox.capture.wait_for(lambda c: token.encode() in c.data, timeout=ARRIVAL_TIMEOUT)


def _outbound(sandbox: RunningSandbox, subject: str) -> dict[str, Any] | None:
    with single_connection(sandbox.box.config()) as conn:
        return conn.execute("SELECT * FROM messages WHERE direction = 'outbound' "
                            "AND subject = %s", (subject,)).fetchone()


def _inbound(sandbox: RunningSandbox, agent_id: str, subject: str) -> list[dict[str, Any]]:
    with single_connection(sandbox.box.config()) as conn:
        return conn.execute("SELECT * FROM messages WHERE direction = 'inbound' "
                            "AND agent_id = %s AND subject = %s", (agent_id, subject)).fetchall()


def _raw_smtp(port: int, mail_from: str, rcpt: str, data: bytes,
              xclient: tuple[str, ...] = ()) -> tuple[str, int, str]:
    """One transaction with the RCPT argument exactly as given (smtplib's
    own quoting would rewrite ``"local"@domain``), after the ``xclient``
    commands, each in a session of its own (XCLIENT starts one afresh)."""
    with smtplib.SMTP("127.0.0.1", port, timeout=60) as client:
        for command in xclient:
            client.ehlo("client.sandbox.test")
            code, text = client.docmd("XCLIENT", command)
            assert code == 220, text
        client.ehlo("client.sandbox.test")
        code, text = client.docmd("MAIL", f"FROM:<{mail_from}>")
        if code != 250:
            return "MAIL", code, text.decode()
        code, text = client.docmd("RCPT", f"TO:{rcpt}")
        if code not in (250, 251):
            return "RCPT", code, text.decode()
        try:
            code, text = client.data(data)
        except smtplib.SMTPDataError as exc:  # refused at DATA itself
            code, text = exc.smtp_code, exc.smtp_error
        return "DATA", code, text.decode(errors="replace")


# -- 1: every sender identity decides the hold ------------------------------

IDENTITY_CASES = ["second_from", "sender_header", "envelope_of_another_agent"]


@pytest.mark.parametrize("case", IDENTITY_CASES)
def test_any_hitl_identity_holds_the_message(sandbox, held_agent, free_agent, case):
    tag = secrets.token_hex(6)
    # The owner's notification names the subject: the body's token alone
    # tells the message itself.
    token, subject, rcpt = f"id-hold-{tag}", f"identity {tag}", f"rcpt-{tag}@elsewhere.test"
    headers = {"To": rcpt, "Subject": subject}
    if case == "second_from":
        headers["From"] = f"{free_agent['email']}, {held_agent['email']}"
    elif case == "sender_header":
        headers["From"] = free_agent["email"]
        headers["Sender"] = held_agent["email"]
    else:  # the envelope names a free agent, the author is the held one
        headers["From"] = held_agent["email"]
    reply = smtp_send(sandbox.smtp_port, free_agent["email"], rcpt, _raw(headers, token))
    assert reply.code == 250, reply
    row = wait_until(lambda: (r := _outbound(sandbox, subject)) and
                     (r["status"] != "sent" or r["provider_message_id"]) and r,
                     timeout=ARRIVAL_TIMEOUT, what="the filter's decision")
    assert row["status"] == "pending_approval", row["status"]
    time.sleep(SETTLE_SECONDS)
    assert not [c for c in sandbox.capture.messages() if token.encode() in c.data]


# -- 2: a DKIM key signs only its owner's mail ------------------------------

def test_a_host_sender_with_an_agent_domain_from_is_not_signed(sandbox):
    token = f"id-nokey-{secrets.token_hex(6)}"
    raw = _raw({"From": f"nobody-{token}@agents.sandbox.test",
                "To": f"{token}@elsewhere.test", "Subject": token}, token)
    assert smtp_send(sandbox.smtp_port, "alice@sandbox.test", f"{token}@elsewhere.test",
                     raw).code == 250
    captured = _captured(sandbox, token)
    assert b"DKIM-Signature:" not in captured.data.split(b"\r\n\r\n", 1)[0]


def test_an_agent_is_never_signed_for_another_tenants_domain(sandbox, free_agent, stranger):
    token = f"id-foreign-{secrets.token_hex(6)}"
    raw = _raw({"From": f"ceo@{stranger['domain']}", "To": f"{token}@elsewhere.test",
                "Subject": token}, token)
    assert smtp_send(sandbox.smtp_port, free_agent["email"], f"{token}@elsewhere.test",
                     raw).code == 250
    captured = _captured(sandbox, token)
    assert b"DKIM-Signature:" not in captured.data.split(b"\r\n\r\n", 1)[0]
    # The agent's own From still is signed, with its own domain.
    token = f"id-own-{secrets.token_hex(6)}"
    raw = _raw({"From": free_agent["email"], "To": f"{token}@elsewhere.test",
                "Subject": token}, token)
    assert smtp_send(sandbox.smtp_port, free_agent["email"], f"{token}@elsewhere.test",
                     raw).code == 250
    assert signature_tags(_captured(sandbox, token).data)["d"] == free_agent["domain"]


# -- 3: the reinjection service takes our filter and release only ------------

def test_the_reinjection_service_refuses_a_plain_local_client(sandbox, free_agent):
    token = f"id-reinject-{secrets.token_hex(6)}"
    raw = _raw({"From": free_agent["email"], "To": sandbox.agent_email,
                "Subject": token, "X-E2A-Conversation-Id": "conv_forged"}, token)
    stage, code, text = _raw_smtp(sandbox.postfix.reinject_port, free_agent["email"],
                                  f"<{sandbox.agent_email}>", raw)
    assert (stage, code // 100) == ("RCPT", 5), (stage, code, text)
    assert "5.7.1" in text
    for rcpt in (f"{token}@elsewhere.test", sandbox.agent_email):
        stage, code, text = _raw_smtp(sandbox.postfix.reinject_port, "alice@sandbox.test",
                                      f"<{rcpt}>", raw)
        assert (stage, code // 100) == ("RCPT", 5), (stage, code, text)
    # Our own path still works: an API send leaves (filter) and a held
    # message is released (release) through the same service.
    sent = sandbox.api("POST", "/api/v1/send", json={
        "from": free_agent["email"], "to": [f"{token}@elsewhere.test"], "subject": token,
        "body": f"Hello. {token}"})
    assert sent.status_code == 200, sent.text
    _captured(sandbox, token)


def test_release_still_reaches_the_reinjection_service(sandbox, held_agent):
    token = f"id-release-{secrets.token_hex(6)}"
    held = sandbox.api("POST", "/api/v1/send", json={
        "from": held_agent["email"], "to": [f"{token}@elsewhere.test"], "subject": token,
        "body": f"Hello. {token}"})
    assert held.status_code == 202, held.text
    message_id = held.json()["message_id"]
    wait_until(lambda: (r := _outbound(sandbox, token)) and r["raw_message"] and r,
               timeout=ARRIVAL_TIMEOUT, what="the held row")
    approved = sandbox.api("POST", f"/api/v1/messages/{message_id}/approve", json={})
    assert approved.status_code == 200, approved.text
    captured = _captured(sandbox, token)
    assert signature_tags(captured.data)["d"] == held_agent["domain"]


# -- 5: one canonical address everywhere ------------------------------------

RECIPIENT_FORMS = {
    "quoted": lambda local, domain: f'<"{local}"@{domain}>',
    "trailing_dot": lambda local, domain: f"<{local}@{domain}.>",
    "upper_case": lambda local, domain: f"<{local.upper()}@{domain.upper()}>",
}


@pytest.mark.parametrize("form", RECIPIENT_FORMS)
def test_an_odd_recipient_form_is_the_same_agent_and_a_human_sender(sandbox, free_agent,
                                                                    form):
    token = f"id-form-{secrets.token_hex(6)}"
    local, _, domain = sandbox.agent_email.partition("@")
    with single_connection(sandbox.box.config()) as conn:
        target = agent_store.agent_by_email(conn, sandbox.agent_email)
    assert target is not None
    raw = _raw({"From": "Stranger <stranger@elsewhere.test>", "To": sandbox.agent_email,
                "Subject": token, "X-E2A-Conversation-Id": "conv_injected"}, token)
    stage, code, text = _raw_smtp(sandbox.smtp_port, "stranger@elsewhere.test",
                                  RECIPIENT_FORMS[form](local, domain), raw)
    assert code == 250, (stage, code, text)
    rows = wait_until(lambda: _inbound(sandbox, target["id"], token),
                      timeout=ARRIVAL_TIMEOUT, what="the agent's copy")
    time.sleep(SETTLE_SECONDS)
    rows = _inbound(sandbox, target["id"], token)
    assert len(rows) == 1
    assert rows[0]["entity_type"] == "human"
    assert rows[0]["conversation_id"] != "conv_injected"
    # Consumed by the milter on the first pass: nothing left for the internet.
    assert not [c for c in sandbox.capture.messages() if token.encode() in c.data]


def test_an_unknown_agent_in_quoted_form_is_refused(sandbox):
    token = f"id-unknown-{secrets.token_hex(6)}"
    raw = _raw({"From": "stranger@elsewhere.test", "To": "x", "Subject": token}, token)
    stage, code, _ = _raw_smtp(sandbox.smtp_port, "stranger@elsewhere.test",
                               f'<"nobody-{token}"@agents.sandbox.test.>', raw)
    assert (stage, code) == ("RCPT", 550)


# -- 6: conversation ids stay with their owner -----------------------------

def test_an_api_caller_cannot_join_another_tenants_conversation(sandbox, stranger):
    token = f"id-conv-{secrets.token_hex(6)}"
    conversation = f"conv_{secrets.token_hex(16)}"
    mine = sandbox.api("POST", "/api/v1/send", json={
        "from": sandbox.agent_email, "to": [f"{token}@elsewhere.test"], "subject": token,
        "body": f"Hello. {token}", "conversation_id": conversation})
    assert mine.status_code == 200, mine.text
    theirs = sandbox.api("POST", "/api/v1/send", headers={
        "Authorization": f"Bearer {stranger['key']}"}, json={
        "from": stranger["agent"]["email"], "to": [sandbox.agent_email],
        "subject": token + " intruder", "body": "let me in",
        "conversation_id": conversation})
    assert 400 <= theirs.status_code < 500, theirs.text
    # Our own mail leaves without our internal conversation header.
    captured = _captured(sandbox, token)
    head = captured.data.split(b"\r\n\r\n", 1)[0].lower()
    assert b"x-e2a-conversation-id" not in head


def test_a_conversation_header_from_another_tenants_agent_is_not_trusted(sandbox, stranger):
    """Held, approved and released, the message comes back through our
    reinjection service: its conversation header still names no
    conversation of another owner."""
    token = f"id-convhdr-{secrets.token_hex(6)}"
    sender = new_agent(sandbox, hitl=True, prefix="id", user_id=stranger["user"]["id"])
    with single_connection(sandbox.box.config()) as conn:
        target = agent_store.agent_by_email(conn, sandbox.agent_email)
    assert target is not None
    raw = _raw({"From": sender["email"], "To": sandbox.agent_email,
                "Subject": token, "X-E2A-Conversation-Id": "conv_injected_by_agent"}, token)
    assert smtp_send(sandbox.smtp_port, sender["email"], sandbox.agent_email,
                     raw).code == 250
    row = wait_until(lambda: (r := _outbound(sandbox, token)) and
                     r["status"] == "pending_approval" and r["raw_message"] and r,
                     timeout=ARRIVAL_TIMEOUT, what="the held row")
    approved = sandbox.api("POST", f"/api/v1/messages/{row['id']}/approve", json={},
                           headers={"Authorization": f"Bearer {stranger['key']}"})
    assert approved.status_code == 200, approved.text
    rows = wait_until(lambda: _inbound(sandbox, target["id"], token),
                      timeout=ARRIVAL_TIMEOUT, what="the agent's copy")
    assert rows[0]["entity_type"] == "agent"
    assert rows[0]["conversation_id"] != "conv_injected_by_agent"


# -- 4: agent mail from a client that is not this host ------------------------

@pytest.fixture(scope="module")
def office_port(sandbox: RunningSandbox) -> Iterator[int]:
    """An smtpd as an operator's submission service or office relay would
    be: XCLIENT (from loopback) stands in for a client elsewhere, a host of
    mynetworks (192.0.2.0/24) or a SASL-authenticated one."""
    with extra_smtpd(sandbox,
                     # The roaming client's own range too: its login comes
                     # in a second XCLIENT, after its address.
                     "-o smtpd_authorized_xclient_hosts=127.0.0.0/8,198.51.100.0/24"
                     " -o mynetworks=127.0.0.0/8,192.0.2.0/24 -o smtpd_sasl_auth_enable=yes"
                     " -o smtpd_relay_restrictions=permit_mynetworks,"
                     "permit_sasl_authenticated,reject_unauth_destination") as port:
        yield port


# The login after the address: a new address starts SASL afresh.
REMOTE_CLIENTS = {
    "mynetworks": ("ADDR=192.0.2.50 NAME=office.sandbox.test",),
    "sasl": ("ADDR=198.51.100.7 NAME=roaming.example", "LOGIN=roaming-user"),
}


@pytest.mark.parametrize("client", REMOTE_CLIENTS)
def test_agent_mail_from_a_remote_client_is_refused(sandbox, free_agent, held_agent,
                                                    office_port, client):
    for sender in (free_agent, held_agent):
        token = f"id-remote-{secrets.token_hex(6)}"
        raw = _raw({"From": sender["email"], "To": f"{token}@elsewhere.test",
                    "Subject": token}, token)
        stage, code, text = _raw_smtp(office_port, sender["email"], f"<{token}@elsewhere.test>",
                                      raw, REMOTE_CLIENTS[client])
        assert (stage, code) == ("DATA", 550), (stage, code, text)
        assert "5.7.1" in text
        assert _outbound(sandbox, token) is None
    # The same client without an agent's name relays as before, unsigned.
    token = f"id-remote-human-{secrets.token_hex(6)}"
    raw = _raw({"From": "clerk@sandbox.test", "To": f"{token}@elsewhere.test",
                "Subject": token}, token)
    stage, code, text = _raw_smtp(office_port, "clerk@sandbox.test", f"<{token}@elsewhere.test>",
                                  raw, REMOTE_CLIENTS[client])
    assert code == 250, (stage, code, text)
    captured = _captured(sandbox, token)
    assert b"DKIM-Signature:" not in captured.data.split(b"\r\n\r\n", 1)[0]
    time.sleep(SETTLE_SECONDS)
    assert not [c for c in sandbox.capture.messages() if b"id-remote-" in c.data
                and b"id-remote-human" not in c.data]
