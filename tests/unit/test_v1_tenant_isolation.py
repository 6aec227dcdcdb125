"""Tenant walls and key scopes across every /v1 operation, generated from
the /v1 route table (api/v1/routes.py): an operation added tomorrow is
tested tomorrow.

- Another tenant (account key or agent key) naming A's resources gets what
  it gets for resources that do not exist (404 for an account key), sees
  none of A's identifiers, and changes nothing of A's.
- Within one account, an agent key is refused (403 forbidden) on every
  account-only operation and on another agent's resources, and reaches its
  own agent's.

A path parameter is filled by the literal segment before it; a route with a
parameter this table does not know fails, so no new route slips past.
"""

from __future__ import annotations

import itertools
import secrets
from typing import Any
from urllib.parse import quote

import pytest
from apisupport import Tenant, add_agent, agent_key, insert_message, make_tenant
from submitsupport import sending_client
from test_api_tenant_isolation import snapshot

from e2a.api.v1.routes import ACCOUNT, AGENT, PUBLIC, ROUTES
from e2a.core.accounts import domains
from e2a.core.db import single_connection
from e2a.core.ids import new_id
from e2a.core.store import events as event_store
from e2a.core.store import suppressions as suppression_store
from e2a.core.webhooks import subscriptions as webhooks

PATH_VALUES = {("agents", "email"): "agent_email", ("messages", "id"): "message_id",
               ("conversations", "id"): "conversation_id", ("api-keys", "id"): "key_id",
               ("reviews", "id"): "message_id", ("webhooks", "id"): "webhook_id",
               ("events", "id"): "event_id", ("domains", "domain"): "domain",
               ("attachments", "index"): "attachment_index",
               ("suppressions", "address"): "suppressed"}
QUERY = {"confirm": "DELETE"}
# Values too short to say anything by appearing in an answer.
NOT_IDENTIFIERS = {"attachment_index"}
GHOST = {"agent_email": "nobody-0000@agents.test.example",
         "message_id": "msg_" + "0" * 32, "conversation_id": "conv_" + "0" * 32,
         "key_id": "key_" + "0" * 32, "webhook_id": "wh_" + "0" * 32,
         "event_id": "evt_" + "0" * 32, "domain": "ghost-0000.example",
         "attachment_index": "0",
         "suppressed": "nobody-0000@example.org"}

CASES = [pytest.param(route.template, op, id=f"{op.method} {route.template}")
         for route in ROUTES for op in route.ops if op.scope != PUBLIC]


def body_for(op: Any, cfg: Any) -> dict[str, Any] | None:
    """A body valid for the operation, so a refusal is about ownership."""
    return {"createAgent": {"email": f"iso-{secrets.token_hex(4)}@{cfg.mail.shared_domain}"},
            "updateAgent": {"name": "iso"},
            "updateMessage": {"add_labels": ["iso"]},
            "sendMessage": {"to": ["someone@example.org"], "subject": "iso", "text": "iso"},
            "replyToMessage": {"text": "iso"},
            "forwardMessage": {"to": ["someone@example.org"], "text": "iso"},
            "createWebhook": {"url": "https://hooks.example.com/iso",
                              "events": ["email.received"]},
            "updateWebhook": {"description": "iso"},
            "approveReview": {}, "rejectReview": {}, "testWebhook": {},
            "redeliverEvent": {},
            "registerDomain": {"domain": f"iso-{secrets.token_hex(4)}.example"},
            "createAgentSuppression": {"address": "iso@example.org"},
            "putAgentBrakes": {"overrides": {}},
            }.get(op.operation_id)


def fill(template: str, values: dict[str, str], own: dict[str, str] | None = None) -> str:
    path = template
    for segment, param in itertools.pairwise(template.split("/")):
        if not (param.startswith("{") and param.endswith("}")):
            continue
        key = (segment, param[1:-1])
        if key not in PATH_VALUES:
            pytest.fail(f"{template}: no rule for {param} after '{segment}'; add one to "
                        "PATH_VALUES")
        source = own if own is not None and PATH_VALUES[key] in own else values
        path = path.replace(param, quote(source[PATH_VALUES[key]], safe=""), 1)
    return path


def call(client: Any, op: Any, path: str, key: str, cfg: Any) -> Any:
    return client.simulate_request(op.method, path, params=QUERY, json=body_for(op, cfg),
                                   headers={"Authorization": f"Bearer {key}"})


def code(result: Any) -> str | None:
    try:
        return result.json["error"]["code"]
    except (ValueError, TypeError, KeyError):
        return None


@pytest.fixture(scope="module")
def client(cfg, postfix, tmp_path_factory):
    """Sends go to a fake of Postfix's submit service."""
    with sending_client(cfg, postfix, tmp_path_factory.mktemp("iso5")) as test_client:
        yield test_client


def resources_of(cfg: Any, tenant: Tenant, agent: dict[str, Any]) -> dict[str, str]:
    conversation = new_id("conv")
    message_id = insert_message(cfg, agent, subject="victim's", conversation_id=conversation)
    event_id = new_id("evt")
    with single_connection(cfg) as conn:
        key_id = conn.execute("SELECT id FROM api_keys WHERE user_id = %s AND agent_id IS NULL "
                              "ORDER BY created_at LIMIT 1", (tenant.user["id"],)).fetchone()["id"]
        hook, _ = webhooks.create(conn, cfg, tenant.user["id"], {
            "url": "https://hooks.example.com/victim", "events": ["email.received"]},
            generation="v1")
        event_store.insert_event(conn, event_id, tenant.user["id"], "email.received",
                                 {"message_id": message_id}, agent_id=agent["id"],
                                 message_id=message_id)
        suppressed = f"gone-{secrets.token_hex(4)}@example.org"
        suppression_store.add_account(conn, tenant.user["id"], suppressed, source="bounce")
        suppression_store.add_agent(conn, tenant.user["id"], agent["id"], suppressed,
                                    source="manual")
        domain = domains.register(conn, cfg, tenant.user["id"],
                                  f"victim-{secrets.token_hex(4)}.example")["domain"]
    return {"suppressed": suppressed, "domain": domain, "attachment_index": "0",
            "agent_email": agent["email"], "message_id": message_id,
            "conversation_id": conversation, "key_id": key_id, "webhook_id": hook["id"],
            "event_id": event_id}


def test_every_path_parameter_has_a_rule():
    for route in ROUTES:
        fill(route.template, GHOST)


def test_every_operation_has_a_known_scope():
    assert {op.scope for route in ROUTES for op in route.ops} <= {PUBLIC, ACCOUNT, AGENT}


@pytest.mark.parametrize("caller", ["account-key", "agent-key"])
@pytest.mark.parametrize("template,op", CASES)
def test_another_tenant_cannot_reach_or_see(cfg, client, template, op, caller):
    victim = make_tenant(cfg)
    values = resources_of(cfg, victim, victim.agent)
    identifiers = {victim.user["id"], victim.user["email"], victim.agent["id"],
                   *(v for k, v in values.items() if k not in NOT_IDENTIFIERS)}
    intruder = make_tenant(cfg)
    key = intruder.key if caller == "account-key" else agent_key(cfg, intruder,
                                                                 intruder.agent)
    variants = [(fill(template, values), fill(template, GHOST))]
    if "{email}" in template and "{id}" in template:
        own = {"agent_email": intruder.agent["email"]}
        variants.append((fill(template, values, own), fill(template, GHOST, own)))
    before = snapshot(cfg, victim.user["id"])
    for path, ghost_path in variants:
        result = call(client, op, path, key, cfg)
        sent = {v for v in identifiers if v in path or quote(v, safe="") in path}
        leaked = {v for v in identifiers - sent if v in result.text}
        assert not leaked, f"{op.method} {path} answered {result.status_code} with {leaked}"
        if path == template:  # nothing of A's in the path: the caller's own account
            assert result.status_code < 500, result.text
            continue
        assert not 200 <= result.status_code < 300, f"{op.method} {path}: {result.text}"
        ghost = call(client, op, ghost_path, key, cfg)
        assert (result.status_code, code(result)) == (ghost.status_code, code(ghost)), (
            f"{op.method} {path}: A's answers {result.text}, a missing one {ghost.text}")
        if caller == "account-key":
            assert result.status_code == 404, result.text
    assert snapshot(cfg, victim.user["id"]) == before, f"{op.method} {template} changed A"


@pytest.mark.parametrize("template,op", CASES)
def test_agent_key_scope(cfg, client, template, op):
    owner = make_tenant(cfg)
    mine = resources_of(cfg, owner, owner.agent)
    sibling = add_agent(cfg, owner)
    theirs = resources_of(cfg, owner, sibling)
    key = agent_key(cfg, owner, owner.agent)
    if "{email}" in template:
        other = call(client, op, fill(template, theirs), key, cfg)
        assert (other.status_code, code(other)) == (403, "forbidden"), other.text
    own = call(client, op, fill(template, mine), key, cfg)
    if op.scope == ACCOUNT:
        assert (own.status_code, code(own)) == (403, "forbidden"), own.text
    else:
        assert own.status_code not in (401, 403) and own.status_code < 500, own.text
