"""Tenant walls across every endpoint of the app.

The cases come from the app's own route table, not from a list kept by hand:
a route added tomorrow is tested tomorrow. User A (the victim) owns one of
everything; a fresh user B calls each route and method with A's resources in
the path, with an account-wide key and with an agent-scoped one. B must get
exactly what it gets for a resource that does not exist (a 404 for an
account key: never a 403 that admits existence), no response may carry any of
A's identifiers that B did not send, and nothing of A's may change.

A path parameter is filled by the literal segment before it (``agents`` then
``{email}``: A's agent). A route with a parameter this table does not know
fails, so no new route slips past: add its row to PATH_VALUES and, if it needs
a new kind of resource, give the victim one.
"""

from __future__ import annotations

import json
import secrets
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from apisupport import Tenant, agent_key, api_client, insert_message, make_tenant

from e2a.api.app import create_app
from e2a.api.openapi import builder as openapi
from e2a.core import config
from e2a.core.accounts import domains, signing_secrets
from e2a.core.db import single_connection
from e2a.core.ids import new_id
from e2a.core.store import events as event_store
from e2a.core.timefmt import rfc3339

# (segment before the parameter, parameter) -> which of A's resources fills it.
PATH_VALUES = {
    ("agents", "email"): "agent_email",
    ("domains", "domain"): "domain",
    ("messages", "id"): "message_id",
    ("conversations", "id"): "conversation_id",
    ("signing-secrets", "id"): "secret_id",
    ("events", "id"): "event_id",
    ("webhooks", "id"): "webhook_id",
    ("keys", "id"): "key_id",
    # /u/{token} (managed unsubscribe) is public: the token is the credential
    # and names no tenant's resource; A's message id in its place must be
    # answered as an unknown token, like any other.
    ("u", "token"): "message_id",
}
# Routes an agent-scoped key must be refused outright (403 forbidden).
ACCOUNT_ONLY = "/api/v1/users/me"
# Every endpoint ignores what it does not know, so one body serves all: each
# field is valid where it is read, so a refusal is about ownership, not input.
BODY = {"name": "iso", "add_labels": ["iso-test"], "remove_labels": ["iso-old"],
        "hitl_enabled": True, "is_primary": True, "body": "hello", "subject": "iso",
        "to": ["someone@example.org"], "reason": "iso", "description": "iso",
        "since": rfc3339(datetime.now(UTC) - timedelta(hours=1))}
QUERY = {"confirm": "DELETE"}
# Routes whose wall an in-process request cannot reach, and where it is
# tested. Here they must still answer A's resource as a missing one, leak
# nothing and change nothing.
TESTED_ELSEWHERE = {
    "/api/v1/agents/{email}/ws": "a WebSocket needs a real upgrade (426 without one): "
                                 "tests/unit/test_api_websocket.py closes 1008 for another "
                                 "tenant",
}


def _collection_app() -> Any:
    """The app as create_app builds it, for its route table only (no database)."""
    path = Path(tempfile.mkdtemp(prefix="e2a-iso-")) / "e2a.toml"
    path.write_text(f'[secrets]\nhmac_secret = "{secrets.token_hex(32)}"\n'
                    '[mail]\nshared_domain = "agents.test.example"\n')
    return create_app(config.load(path, env={}), None)


ROUTES = openapi.routes(_collection_app())
CASES = [pytest.param(r.template, m, id=f"{m} {r.template}") for r in ROUTES for m in r.methods]


def path_key(template: str, param: str) -> tuple[str, str]:
    before = template.split("{" + param + "}")[0].rstrip("/").rsplit("/", 1)[-1]
    return before, param


@dataclass
class Victim:
    tenant: Tenant
    agent_email: str
    domain: str
    message_id: str
    conversation_id: str
    secret_id: str
    event_id: str
    webhook_id: str
    key_id: str
    secret_prefix: str

    @property
    def user_id(self) -> str:
        return self.tenant.user["id"]

    def identifiers(self) -> set[str]:
        return {self.user_id, self.tenant.user["email"], self.tenant.agent["id"],
                self.agent_email, self.domain, self.message_id, self.conversation_id,
                self.secret_id, self.event_id, self.webhook_id, self.key_id,
                self.secret_prefix}


GHOST = {"agent_email": "nobody-0000@agents.test.example", "domain": "nobody-0000.example",
         "message_id": "msg_" + "0" * 32, "conversation_id": "conv_" + "0" * 32,
         "secret_id": "sec_" + "0" * 32, "event_id": "evt_" + "0" * 32,
         "webhook_id": "wh_" + "0" * 32, "key_id": "key_" + "0" * 32}


@pytest.fixture(scope="module")
def victim(cfg) -> Victim:
    tenant = make_tenant(cfg)
    user_id = tenant.user["id"]
    conversation = new_id("conv")
    message_id = insert_message(cfg, tenant.agent, subject="victim's",
                                conversation_id=conversation)
    with single_connection(cfg) as conn:
        domain = domains.register(conn, cfg, user_id, f"victim-{secrets.token_hex(4)}.test")
        secret = signing_secrets.create(conn, user_id, "victim")
        event_id = new_id("evt")
        event_store.insert_event(conn, event_id, user_id, "email.received",
                                 {"message_id": message_id}, agent_id=tenant.agent["id"],
                                 message_id=message_id, conversation_id=conversation)
        webhook_id = new_id("wh")
        conn.execute("INSERT INTO webhooks (id, user_id, url, secret) VALUES (%s, %s, %s, %s)",
                     (webhook_id, user_id, "https://hooks.example.org/victim",
                      "whsec_" + secrets.token_hex(32)))
        key_id = conn.execute("SELECT id FROM api_keys WHERE user_id = %s",
                              (user_id,)).fetchone()["id"]
    return Victim(tenant, tenant.agent["email"], domain["domain"], message_id, conversation,
                  secret.row["id"], event_id, webhook_id, key_id,
                  secret.row["secret_prefix"])


@pytest.fixture(scope="module")
def client(cfg):
    with api_client(cfg) as test_client:
        yield test_client


SNAPSHOT_TABLES = ("users", "agents", "domains", "messages", "api_keys", "signing_secrets",
                   "events", "webhooks")


def snapshot(cfg, user_id: str) -> dict[str, list[Any]]:
    """Every row A owns, as JSON: any change by B's calls shows."""
    with single_connection(cfg) as conn:
        return {table: [r["row"] for r in conn.execute(
            f"SELECT to_jsonb(t) AS row FROM {table} t "
            f"WHERE {'id' if table == 'users' else 'user_id'} = %s ORDER BY id",
            (user_id,)).fetchall()]
            for table in SNAPSHOT_TABLES}


def fill(template: str, values: dict[str, str], own: dict[str, str] | None = None) -> str:
    path = template
    for param in openapi.Route(template, None, ()).params:
        key = path_key(template, param)
        if key not in PATH_VALUES:
            pytest.fail(f"{template}: no rule for path parameter {{{param}}} after "
                        f"'{key[0]}'; add one to PATH_VALUES")
        source = own if own is not None and PATH_VALUES[key] in own else values
        path = path.replace("{" + param + "}", quote(source[PATH_VALUES[key]], safe=""))
    return path


def call(client, method: str, path: str, key: str):
    return client.simulate_request(method, path, params=QUERY, json=BODY,
                                   headers={"Authorization": f"Bearer {key}"})


def error_code(result) -> str | None:
    try:
        return result.json["error"]["code"]
    except (ValueError, TypeError, KeyError):
        return None


def test_every_path_parameter_has_a_rule():
    unknown = [f"{r.template} {{{p}}}" for r in ROUTES for p in r.params
               if path_key(r.template, p) not in PATH_VALUES]
    assert unknown == []


@pytest.mark.parametrize("caller", ["account-key", "agent-key"])
@pytest.mark.parametrize("template,method", CASES)
def test_another_tenant_cannot_reach_or_see(cfg, client, victim, template, method, caller):
    intruder = make_tenant(cfg)
    key = intruder.key if caller == "account-key" else agent_key(cfg, intruder,
                                                                 intruder.agent)
    values = {name: getattr(victim, name) for name in GHOST}
    own = {"agent_email": intruder.agent["email"]}
    variants = [(fill(template, values), fill(template, GHOST))]
    if "{email}" in template and len(openapi.Route(template, None, ()).params) > 1:
        # B's own agent, A's message / conversation: the agent must not open A's rows.
        variants.append((fill(template, values, own), fill(template, GHOST, own)))
    before = snapshot(cfg, victim.user_id)

    for path, ghost_path in variants:
        result = call(client, method, path, key)
        sent = {v for v in victim.identifiers() if quote(v, safe="") in path or v in path}
        leaked = {v for v in victim.identifiers() - sent if v in result.text}
        assert not leaked, f"{method} {path} answered {result.status_code} with A's {leaked}"
        if caller == "agent-key" and template.startswith(ACCOUNT_ONLY):
            assert (result.status_code, error_code(result)) == (403, "forbidden"), result.text
        elif path != template:  # A's resource in the path
            assert not 200 <= result.status_code < 300, f"{method} {path}: {result.text}"
            ghost = call(client, method, ghost_path, key)
            assert (result.status_code, error_code(result)) == (
                ghost.status_code, error_code(ghost)), (
                f"{method} {path}: A's resource answers {result.status_code} "
                f"{result.text}, a missing one {ghost.status_code} {ghost.text}")
            if caller == "account-key" and template not in TESTED_ELSEWHERE:
                assert result.status_code == 404, result.text
        else:
            assert result.status_code < 500, result.text

    assert snapshot(cfg, victim.user_id) == before, f"{method} {template} changed A's data"


def test_the_victim_still_sees_its_own(cfg, client, victim):
    """The walls above are not an empty building: A's key reaches A's data."""
    result = client.simulate_get(
        f"/api/v1/agents/{quote(victim.agent_email, safe='')}/messages/{victim.message_id}",
        headers=victim.tenant.auth)
    assert result.status_code == 200
    assert victim.message_id in result.text
    secrets_listed = client.simulate_get("/api/v1/users/me/signing-secrets",
                                         headers=victim.tenant.auth)
    assert victim.secret_id in json.dumps(secrets_listed.json)
