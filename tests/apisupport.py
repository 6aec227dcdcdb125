"""Shared set-up for the API tests: a real pool, tenants made through
e2a.core.accounts.registration, messages stored through the store like the milter does."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from falcon import testing

from e2a.api.app import create_app
from e2a.core.accounts import domains
from e2a.core.accounts import registration as accounts
from e2a.core.db import open_pool, single_connection
from e2a.core.ids import new_id
from e2a.core.store import domains as domain_store
from e2a.core.store import messages as message_store


@dataclass
class Tenant:
    user: dict[str, Any]
    key: str
    agent: dict[str, Any]

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    @property
    def messages_path(self) -> str:
        return messages_path(self.agent["email"])


def messages_path(email: str) -> str:
    return agent_path(email) + "/messages"


def make_tenant(cfg: Any) -> Tenant:
    """A user with an account-wide key and one agent on the shared domain."""
    tag = secrets.token_hex(4)
    with single_connection(cfg) as conn:
        accounts.seed_shared_domain(conn, cfg)
        user = accounts.create_user(conn, f"owner-{tag}@example.net")
        key = accounts.issue_key(conn, user["id"], name="test")
        agent = accounts.register_agent(conn, cfg, user["id"], slug=f"bot-{tag}")
    return Tenant(user, key.key, agent)


def add_agent(cfg: Any, tenant: Tenant) -> dict[str, Any]:
    with single_connection(cfg) as conn:
        return accounts.register_agent(conn, cfg, tenant.user["id"],
                                       slug=f"bot-{secrets.token_hex(4)}")


def agent_key(cfg: Any, tenant: Tenant, agent: dict[str, Any]) -> str:
    with single_connection(cfg) as conn:
        return accounts.issue_key(conn, tenant.user["id"], name="scoped",
                                  agent_id=agent["id"]).key


def insert_message(cfg: Any, agent: dict[str, Any], *, subject: str = "hello",
                   sender: str = "alice@example.org", **overrides: Any) -> str:
    message_id = new_id("msg")
    raw = f"From: {sender}\r\nSubject: {subject}\r\n\r\nbody\r\n".encode()
    row = {
        "id": message_id, "user_id": agent["user_id"], "agent_id": agent["id"],
        "recipient": agent["email"], "sender": sender, "envelope_sender": sender,
        "to_recipients": [agent["email"]], "cc": [], "reply_to": [], "subject": subject,
        "email_message_id": f"<{message_id}@example.org>", "in_reply_to": "",
        "references_ids": [], "conversation_id": None, "raw_message": raw,
        "size_bytes": len(raw), "auth_headers": {}, "spf": "pass", "dkim": "none",
        "dmarc": "none", "verified": False, "entity_type": "human", "queue_id": "",
        "dedupe_key": None,
    }
    row.update(overrides)
    with single_connection(cfg) as conn:
        stored = message_store.insert_inbound(conn, row)
    assert stored == message_id
    return message_id


@contextmanager
def api_client(cfg: Any) -> Iterator[testing.TestClient]:
    """A test client of the whole app over its own pool (closed afterwards)."""
    pool = open_pool(cfg, name="test-api", wait=True)
    try:
        yield testing.TestClient(create_app(cfg, pool))
    finally:
        pool.close()


def domain_path(name: str) -> str:
    return "/api/v1/domains/" + name


def agent_path(email: str) -> str:
    return "/api/v1/agents/" + email.replace("@", "%40")


def add_domain(cfg: Any, tenant: Tenant, *, verified: bool = True) -> dict[str, Any]:
    """A custom domain of the tenant (made as the API makes one), marked
    verified without DNS: for tests about what a verified domain allows."""
    with single_connection(cfg) as conn:
        row = domains.register(conn, cfg, tenant.user["id"],
                               f"d{secrets.token_hex(4)}.example.com")
        if verified:
            row = domain_store.record_check(conn, row["id"], True)
    return row


def assert_error(result: Any, status: int, code: str) -> dict[str, Any]:
    """The error object of a response that must be this status and code."""
    assert result.status_code == status, result.text
    error = result.json["error"]
    assert error["code"] == code, error
    return error
