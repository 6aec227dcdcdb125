"""Outbound protection screening (core/outbound/screening.py) through the
content filter on a real database: mail an agent submits by plain SMTP is
screened like an API send: held with its hold_reason, refused with 5.7.1,
or passed on."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

import pytest
from filtersupport import send

from e2a.core.accounts import registration as accounts
from e2a.core.db import single_connection
from e2a.core.outbound import screening
from e2a.core.protection import config as protection
from e2a.core.protection import gates
from e2a.core.store import agents as agent_store
from e2a.core.store import protection as protection_store

CORPUS = Path(__file__).resolve().parents[1] / "fixtures" / "protection" / "outbound"


def configure(cfg, agent: dict[str, Any], **direction: Any) -> dict[str, Any]:
    with single_connection(cfg) as conn:
        current = protection.of_agent(agent)
        outbound = protection.Direction(direction.get("gate", gates.Gate()),
                                        direction.get("sensitivity", "off"))
        config = protection.Protection(
            current.inbound, outbound, current.ttl_seconds, current.on_expiry,
            first_contact=direction.get("first_contact", protection.FirstContact()))
        agent_store.update_agent(conn, agent["id"], protection.columns(config))
        return agent_store.agent_by_id(conn, agent["id"])


@pytest.fixture
def agent(cfg) -> dict[str, Any]:
    with single_connection(cfg) as conn:
        accounts.seed_shared_domain(conn, cfg)
        user = accounts.create_user(conn, f"screen-{secrets.token_hex(4)}@example.net")
        return accounts.register_agent(conn, cfg, user["id"],
                                       slug=f"screen-{secrets.token_hex(4)}")


def mail(agent: dict[str, Any], subject: str, body: str,
         to: str = "bob@partner.example") -> bytes:
    return (f"From: {agent['email']}\r\nTo: {to}\r\nSubject: {subject}\r\n"
            f"Message-ID: <{secrets.token_hex(8)}@x.example>\r\n"
            "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
            f"{body}\r\n").encode()


def pem_body() -> str:
    raw = (CORPUS / "secret_pem_rsa.eml").read_text()
    return raw.split("\n\n", 1)[1].replace("\n", "\r\n")


def rows(cfg, subject: str) -> list[dict[str, Any]]:
    with single_connection(cfg) as conn:
        return conn.execute("SELECT * FROM messages WHERE subject = %s", (subject,)).fetchall()


def test_a_private_key_from_a_hitl_off_agent_is_held_with_its_reason(
        cfg, agent, running, reinjection):
    handler, _ = reinjection
    agent = configure(cfg, agent, sensitivity="medium")
    subject = f"key {secrets.token_hex(4)}"
    with running.client() as smtp:
        code, reply = send(smtp, agent["email"], ["bob@partner.example"],
                           mail(agent, subject, pem_body()))
    assert code == 250, reply
    assert "held" in reply
    [held] = rows(cfg, subject)
    assert held["status"] == "pending_approval"
    assert held["hold_reason"]["type"] == "scan"
    assert held["hold_reason"]["code"] == "outbound_scan"
    assert held["hold_reason"]["category"] == "secret"
    assert "BEGIN" not in held["hold_reason"]["summary"]  # never the secret itself
    assert held["protection"][0]["source"] == "scan"
    assert handler.messages == []


def test_clean_mail_with_the_scan_on_leaves(cfg, agent, running, reinjection):
    handler, _ = reinjection
    agent = configure(cfg, agent, sensitivity="high")
    subject = f"clean {secrets.token_hex(4)}"
    with running.client() as smtp:
        assert send(smtp, agent["email"], ["bob@partner.example"],
                    mail(agent, subject, "See you at ten on Monday."))[0] == 250
    [sent] = rows(cfg, subject)
    assert sent["status"] == "sent" and sent["hold_reason"] is None
    assert len(handler.messages) == 1


def test_the_recipient_gate_blocks_with_5_7_1_and_an_event(cfg, agent, running, reinjection):
    handler, _ = reinjection
    agent = configure(cfg, agent, gate=gates.Gate("allowlist", "block", ("partner.example",)))
    subject = f"gated {secrets.token_hex(4)}"
    with running.client() as smtp:
        code, reply = send(smtp, agent["email"], ["eve@elsewhere.example"],
                           mail(agent, subject, "hello", to="eve@elsewhere.example"))
        assert code == 550, reply
        assert reply.startswith("5.7.1")
        assert "eve@elsewhere.example" in reply
        # A listed recipient passes.
        assert send(smtp, agent["email"], ["bob@partner.example"],
                    mail(agent, subject + " ok", "hello"))[0] == 250
    assert rows(cfg, subject) == []
    with single_connection(cfg) as conn:
        [event] = conn.execute("SELECT * FROM events WHERE agent_id = %s AND type = "
                               "'email.blocked'", (agent["id"],)).fetchall()
    assert event["data"]["message_id"].startswith("msgblk_")
    assert event["data"]["reason_source"] == "recipient_gate"
    assert event["message_id"] is None
    assert len(handler.messages) == 1


def test_the_recipient_gate_review_holds_with_a_gate_reason(cfg, agent, running, reinjection):
    agent = configure(cfg, agent, gate=gates.Gate("domain", "review", ()))
    subject = f"outside {secrets.token_hex(4)}"
    with running.client() as smtp:
        assert send(smtp, agent["email"], ["eve@elsewhere.example"],
                    mail(agent, subject, "hello", to="eve@elsewhere.example"))[0] == 250
    [held] = rows(cfg, subject)
    assert held["status"] == "pending_approval"
    assert (held["hold_reason"]["type"], held["hold_reason"]["code"]) == ("gate",
                                                                          "recipient_gate")


def test_first_contact_holds_only_new_recipients(cfg, agent, running, reinjection):
    handler, _ = reinjection
    agent = configure(cfg, agent, first_contact=protection.FirstContact(True, None))
    with single_connection(cfg) as conn:
        protection_store.trust(conn, agent["id"], ["bob@partner.example"], None)
    subject = f"first {secrets.token_hex(4)}"
    with running.client() as smtp:
        assert send(smtp, agent["email"], ["bob@partner.example"],
                    mail(agent, subject + " known", "hello"))[0] == 250
        assert send(smtp, agent["email"], ["new@partner.example"],
                    mail(agent, subject + " new", "hello", to="new@partner.example"))[0] == 250
    assert rows(cfg, subject + " known")[0]["status"] == "sent"
    [held] = rows(cfg, subject + " new")
    assert held["status"] == "pending_approval"
    assert held["hold_reason"]["code"] == screening.FIRST_CONTACT
    assert len(handler.messages) == 1


def test_screening_is_off_by_default():
    agent = {"id": "ag_x", "domain": "x.example", "hitl_enabled": False, "protection": {}}
    assert screening.screen(agent, ["a@b.example"], b"Subject: x\r\n\r\n" +
                            pem_body().encode()) == screening.CLEAR


def test_approving_a_first_contact_hold_trusts_its_recipients(cfg, agent):
    agent = configure(cfg, agent, first_contact=protection.FirstContact(True, 30))
    row = {"agent_id": agent["id"], "hold_reason": {"code": screening.FIRST_CONTACT},
           "agent_protection": agent["protection"], "to_recipients": ["New@Partner.example"],
           "cc": [], "bcc": ["hidden@partner.example"]}
    with single_connection(cfg) as conn:
        known = screening.known_recipients(conn, agent)
        assert known(["new@partner.example"]) == set()
        screening.on_approved(conn, {**row, "hold_reason": {"code": "outbound_scan"}})
        assert known(["new@partner.example"]) == set()  # a scan hold trusts nobody
        screening.on_approved(conn, row)
        assert known(["new@partner.example", "hidden@partner.example", "x@y.example"]) == {
            "new@partner.example", "hidden@partner.example"}
        until = conn.execute("SELECT trusted_until FROM protection_contacts WHERE agent_id = %s"
                             " AND address = 'new@partner.example'",
                             (agent["id"],)).fetchone()["trusted_until"]
        assert until is not None  # trust_days: it expires
        conn.execute("UPDATE protection_contacts SET trusted_until = now() - interval '1 s'"
                     " WHERE agent_id = %s", (agent["id"],))
        assert known(["new@partner.example"]) == set()


def test_suppressed_notifications_leave_a_hold_unannounced(cfg, agent):
    from e2a.core.store import notifications as notification_store

    with single_connection(cfg) as conn:
        config = protection.Protection(suppress_notifications=True)
        agent_store.update_agent(conn, agent["id"], protection.columns(config))
        conn.execute(
            """INSERT INTO messages (id, user_id, agent_id, direction, status, subject,
                                     approval_expires_at)
               VALUES (%s, %s, %s, 'outbound', 'pending_approval', 'quiet',
                       now() + interval '1 hour')""",
            (f"msg_quiet{secrets.token_hex(6)}", agent["user_id"], agent["id"]))
        assert notification_store.unnotified_of(conn, agent["user_id"], 10) == []


def test_each_decision_is_counted():
    from prometheus_client import REGISTRY

    labels = {"direction": "outbound", "action": "hold", "source": "outbound_scan"}
    before = REGISTRY.get_sample_value("e2a_protection_decisions_total", labels) or 0.0
    agent = {"id": "ag_x", "domain": "x.example", "hitl_enabled": False,
             "protection": {"outbound": {"scan": {"sensitivity": "medium"}}}}
    screened = screening.screen(agent, ["a@b.example"],
                                b"Subject: x\r\n\r\n" + pem_body().encode())
    assert screened.held and screened.hold_reason["code"] == "outbound_scan"
    assert REGISTRY.get_sample_value("e2a_protection_decisions_total", labels) == before + 1
