"""The content filter's one call into the brakes (core/outbound/brakes.at_filter),
for mail an agent submits by SMTP or sendmail: a suppressed recipient is
refused for good (550 5.7.1, the row failed), the hourly budget throttles
(451 4.7.1, Postfix retries), a paused agent is refused, and mail the API
counted already is not counted twice."""

from __future__ import annotations

import secrets
from typing import Any

import pytest
from filtersupport import send
from test_filter_outbound import api_row, message

from e2a.core.accounts import registration as accounts
from e2a.core.db import open_pool, single_connection
from e2a.core.ids import new_id
from e2a.core.inbound import inbox
from e2a.core.mailauth.verdict import Verdict
from e2a.core.mta import verp
from e2a.core.store import brakes as brake_store
from e2a.core.store import messages as message_store
from e2a.core.store import suppressions as suppression_store


@pytest.fixture
def agent(cfg) -> dict[str, Any]:
    with single_connection(cfg) as conn:
        accounts.seed_shared_domain(conn, cfg)
        user = accounts.create_user(conn, f"brake-{secrets.token_hex(4)}@example.net")
        return accounts.register_agent(conn, cfg, user["id"],
                                       slug=f"braked-{secrets.token_hex(4)}")


def rows_of(cfg, agent: dict[str, Any]) -> list[dict[str, Any]]:
    with single_connection(cfg) as conn:
        return conn.execute("SELECT * FROM messages WHERE agent_id = %s ORDER BY created_at",
                            (agent["id"],)).fetchall()


def brake_events(cfg, agent: dict[str, Any]) -> list[dict[str, Any]]:
    with single_connection(cfg) as conn:
        return [r["data"] for r in conn.execute(
            "SELECT data FROM events WHERE agent_id = %s AND type = 'agent.brake_applied' "
            "ORDER BY created_at", (agent["id"],)).fetchall()]


def test_a_suppressed_recipient_is_refused_for_good(cfg, agent, running, reinjection):
    handler, _ = reinjection
    with single_connection(cfg) as conn:
        suppression_store.add_account(conn, agent["user_id"], "gone@elsewhere.example",
                                      source="bounce")
    with running.client() as smtp:
        code, reply = send(smtp, agent["email"], ["friend@elsewhere.example",
                                                  "Gone@Elsewhere.Example"],
                           message(agent["email"], "to a bounced address"))
    assert code == 550 and reply.startswith("5.7.1"), reply
    assert "gone@elsewhere.example" in reply
    assert handler.messages == []
    [row] = rows_of(cfg, agent)
    assert row["delivery_status"] == "failed"


def test_the_hourly_budget_throttles_and_the_attempts_past_the_hard_limit_pause(
        cfg, agent, running, reinjection):
    handler, _ = reinjection
    with single_connection(cfg) as conn:
        brake_store.save(conn, agent["id"], {"sends_per_hour": 1, "pause_sends_per_hour": 3},
                         False, None)
    codes = []
    with running.client() as smtp:
        for n in range(5):
            code, reply = send(smtp, agent["email"], ["friend@elsewhere.example"],
                               message(agent["email"], f"burst {n}"))
            codes.append((code, reply[:5]))
    assert codes == [(250, "2.0.0"), (451, "4.7.1"), (451, "4.7.1"), (550, "5.7.1"),
                     (550, "5.7.1")]
    assert len(handler.messages) == 1
    with single_connection(cfg) as conn:
        assert brake_store.settings(conn, agent["id"])["paused_at"] is not None
    decisions = [(e["decision"], e["brake"]) for e in brake_events(cfg, agent)]
    # One event per run: the first throttle, the pause as it began.
    assert decisions == [("throttle", "hourly"), ("paused", "paused")]


def test_mail_the_api_counted_is_not_counted_again(cfg, agent, running, reinjection):
    handler, _ = reinjection
    with single_connection(cfg) as conn:
        brake_store.save(conn, agent["id"], {"sends_per_hour": 1}, False, None)
    for n in range(3):
        message_id = new_id("msg")
        raw = message(agent["email"], f"api {n}")
        with single_connection(cfg) as conn:
            message_store.insert_outbound(conn, api_row(cfg, agent, message_id, raw))
        with running.client() as smtp:
            code, reply = send(smtp, verp.return_path(message_id, agent["domain"],
                                                      verp.key(cfg)),
                               ["friend@elsewhere.example"], raw)
        assert code == 250, reply
    assert len(handler.messages) == 3
    assert brake_events(cfg, agent) == []


def test_an_answer_to_auto_generated_mail_is_held_with_the_brakes_reason(
        cfg, agent, running, reinjection):
    handler, _ = reinjection
    auto_id = f"{secrets.token_hex(6)}@example.org"
    raw = (f"From: Out Of Office <ooo@example.org>\r\nTo: {agent['email']}\r\n"
           "Subject: Automatic reply\r\nAuto-Submitted: auto-replied\r\n"
           f"Message-ID: <{auto_id}>\r\n\r\nI am away.\r\n").encode()
    pool = open_pool(cfg, name="test-inbox", wait=True, autocommit=True)
    try:
        inbox.store(pool, raw, inbox.Envelope("ooo@example.org", [agent["email"]]),
                    Verdict(), cfg.secrets.hmac_secret)
    finally:
        pool.close()
    with running.client() as smtp:
        code, reply = send(smtp, agent["email"], ["ooo@example.org"],
                           message(agent["email"], "Re: Automatic reply", to="ooo@example.org",
                                   extra=f"In-Reply-To: <{auto_id}>\r\n"))
    assert code == 250, reply
    assert not handler.messages
    [held] = [r for r in rows_of(cfg, agent) if r["direction"] == "outbound"]
    assert held["status"] == "pending_approval"
    assert {k: held["hold_reason"].get(k) for k in ("type", "code", "category")} == {
        "type": "send", "code": "outbound_send", "category": "auto_reply"}, held["hold_reason"]
    assert "auto-generated" in held["hold_reason"]["summary"]
