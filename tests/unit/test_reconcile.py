"""Rows the API left ``submitting`` (it died between its commit and Postfix's
answer): marked ``unconfirmed`` for an operator, never sent again, and
still confirmed if the content filter meets the message later."""

from __future__ import annotations

import secrets
from typing import Any

import pytest

from e2a.core.accounts import registration as accounts
from e2a.core.db import single_connection
from e2a.core.ids import new_id
from e2a.core.mta import verp
from e2a.core.outbound import reconcile
from e2a.core.outbound import send as sending
from e2a.core.store import messages as message_store


@pytest.fixture(scope="module")
def agent(cfg) -> dict[str, Any]:
    with single_connection(cfg) as conn:
        accounts.seed_shared_domain(conn, cfg)
        user = accounts.create_user(conn, f"stuck-{secrets.token_hex(4)}@example.net")
        return accounts.register_agent(conn, cfg, user["id"],
                                       slug=f"stuck-{secrets.token_hex(4)}")


def submitting(cfg, agent: dict[str, Any], age_seconds: int) -> str:
    message_id = new_id("msg")
    with single_connection(cfg) as conn:
        message_store.insert_outbound(conn, {
            "id": message_id, "user_id": agent["user_id"], "agent_id": agent["id"],
            "type": "send", "recipient": "friend@elsewhere.test", "sender": agent["email"],
            "envelope_sender": verp.return_path(message_id, agent["domain"], verp.key(cfg)),
            "to_recipients": ["friend@elsewhere.test"], "cc": [], "bcc": [], "reply_to": [],
            "subject": "stuck", "email_message_id": "", "in_reply_to": "",
            "references_ids": [], "conversation_id": None, "raw_message": b"x",
            "size_bytes": 1, "status": "sent", "delivery_status": "submitting",
            "queue_id": "", "dedupe_key": None, "method": "smtp"})
        conn.execute("UPDATE messages SET created_at = now() - make_interval(secs => %s) "
                     "WHERE id = %s", (age_seconds, message_id))
    return message_id


def row(cfg, message_id: str) -> dict[str, Any]:
    with single_connection(cfg) as conn:
        return conn.execute("SELECT * FROM messages WHERE id = %s", (message_id,)).fetchone()


def events(cfg, message_id: str) -> list[str]:
    with single_connection(cfg) as conn:
        return [e["type"] for e in conn.execute(
            "SELECT type FROM events WHERE message_id = %s", (message_id,)).fetchall()]


def test_a_stuck_submission_is_marked_for_an_operator_and_never_resent(cfg, agent, caplog):
    stuck = submitting(cfg, agent, int(reconcile.STUCK_SECONDS) + 60)
    fresh = submitting(cfg, agent, 5)
    with single_connection(cfg) as conn:
        while reconcile.mark_stuck(conn):
            pass
    assert row(cfg, fresh)["delivery_status"] == "submitting"  # may still be submitting
    marked = row(cfg, stuck)
    assert (marked["delivery_status"], marked["delivery_error"]) == (
        "unconfirmed", reconcile.DETAIL)
    assert events(cfg, stuck) == []  # nothing says sent or failed: nobody knows yet
    assert any(getattr(r, "message_id", "") == stuck for r in caplog.records)


def test_the_filter_meeting_it_later_still_confirms_it(cfg, agent):
    stuck = submitting(cfg, agent, int(reconcile.STUCK_SECONDS) + 60)
    with single_connection(cfg) as conn:
        while reconcile.mark_stuck(conn):
            pass
        # Postfix had it queued all along: the filter meets it (identify -> confirm).
        sending.confirm(conn, stuck, "QLATE")
    assert row(cfg, stuck)["delivery_status"] == "queued"
    assert events(cfg, stuck) == ["email.sent"]
