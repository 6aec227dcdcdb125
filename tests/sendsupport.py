"""Shared set-up for the sending API tests: named agents, received messages
to reply to, and what the database holds afterwards."""

from __future__ import annotations

import secrets
from typing import Any

from apisupport import Tenant, agent_path, insert_message

from e2a.core.accounts import registration as accounts
from e2a.core.db import single_connection

SEND = "/api/v1/send"


def named_agent(cfg: Any, tenant: Tenant, name: str = "Support Bot") -> dict[str, Any]:
    with single_connection(cfg) as conn:
        return accounts.register_agent(conn, cfg, tenant.user["id"],
                                       slug=f"named-{secrets.token_hex(4)}", name=name)


def reply_path(email: str, message_id: str) -> str:
    return f"{agent_path(email)}/messages/{message_id}/reply"


def forward_path(email: str, message_id: str) -> str:
    return f"{agent_path(email)}/messages/{message_id}/forward"


def selftest_path(email: str) -> str:
    return f"{agent_path(email)}/test"


def received(cfg: Any, agent: dict[str, Any], *, sender: str = "alice@example.org",
             subject: str = "Quarterly report", body: str = "Numbers are up.",
             headers: str = "", **overrides: Any) -> str:
    """A message the agent received, stored as the milter stores one; its
    Message-ID is <id@example.org>."""
    tag = secrets.token_hex(6)
    raw = (f"From: Alice Example <{sender}>\r\nTo: {agent['email']}\r\n"
           f"Subject: {subject}\r\nDate: Mon, 01 Jun 2026 11:59:00 +0000\r\n"
           f"Message-ID: <{tag}@example.org>\r\n{headers}"
           f"Content-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n").encode()
    fields: dict[str, Any] = {"raw_message": raw, "size_bytes": len(raw),
                              "email_message_id": f"<{tag}@example.org>"}
    fields.update(overrides)
    return insert_message(cfg, agent, subject=subject, sender=sender, **fields)


def outbound_rows(cfg: Any, agent_id: str) -> list[dict[str, Any]]:
    with single_connection(cfg) as conn:
        return conn.execute(
            "SELECT * FROM messages WHERE agent_id = %s AND direction = 'outbound' "
            "ORDER BY created_at", (agent_id,)).fetchall()


def events_for(cfg: Any, message_id: str) -> list[dict[str, Any]]:
    with single_connection(cfg) as conn:
        return conn.execute("SELECT * FROM events WHERE message_id = %s ORDER BY created_at",
                            (message_id,)).fetchall()


def sent_events_of_user(cfg: Any, user_id: str) -> int:
    with single_connection(cfg) as conn:
        return conn.execute("SELECT count(*) AS n FROM events WHERE user_id = %s "
                            "AND type = 'email.sent'", (user_id,)).fetchone()["n"]
