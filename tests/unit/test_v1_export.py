"""GET /v1/account/export on a real database: e2a's UserExport, schema "4",
over the legacy export's reading and streaming: every record in its /v1
shape, nothing secret, nothing of another tenant, account keys only."""

from __future__ import annotations

import base64
import re

import pytest
from apisupport import api_client, insert_message, make_tenant
from test_api_account import ALLOWED_KEYS, SECRETISH_KEY, owned_everything, walk_keys
from v1support import assert_envelope

from e2a.api import export
from e2a.core.accounts import apikeys

EXPORT = "/v1/account/export"
TOP = {"schema_version", "generated_at", "user", "agents", "domains", "api_keys", "messages",
       "protection_events", "suppressions", "usage_events", "oauth_connections"}
# UserExport's required fields per record (the SDK's generated models).
AGENT_REQUIRED = {"created_at", "domain", "domain_verified", "email", "inbound_7d",
                  "inbound_policy", "inbound_policy_action", "inbound_scan",
                  "inbound_scan_block_threshold", "inbound_scan_review_threshold",
                  "inbound_scan_sensitivity", "name", "on_expiry", "outbound_7d",
                  "outbound_policy", "outbound_policy_action", "outbound_scan",
                  "outbound_scan_block_threshold", "outbound_scan_review_threshold",
                  "outbound_scan_sensitivity", "pending_count", "public", "registered_domain",
                  "suppress_notifications", "ttl_seconds", "user_id"}
DOMAIN_REQUIRED = {"agent_count", "created_at", "domain", "primary", "sending_status",
                   "verification_token", "verified"}
KEY_REQUIRED = {"created_at", "id", "key_prefix", "name"}
MESSAGE_REQUIRED = {"agent_email", "authentication", "created_at", "delivered_to", "direction",
                    "envelope_from", "expires_at", "header_from", "id", "subject",
                    "verified_domain"}


@pytest.fixture(scope="module")
def client(cfg):
    with api_client(cfg) as test_client:
        yield test_client


def test_export_is_a_user_export_of_schema_4(cfg, client):
    data = owned_everything(cfg)
    tenant = data["tenant"]
    other = make_tenant(cfg)
    other_message = insert_message(cfg, other.agent, subject="not yours")

    result = client.simulate_get(EXPORT, headers=tenant.auth)
    assert result.status_code == 200, result.text
    assert result.headers["content-type"].startswith("application/json")
    assert re.match(r'attachment; filename="?e2a-export-', result.headers["content-disposition"])
    assert result.headers["X-Request-Id"]
    body = result.json
    assert set(body) == TOP
    assert body["schema_version"] == "4"
    assert body["user"]["id"] == tenant.user["id"]

    assert {a["email"] for a in body["agents"]} == {tenant.agent["email"],
                                                    data["second"]["email"]}
    for agent in body["agents"]:
        assert set(agent) >= AGENT_REQUIRED and "id" not in agent
        assert isinstance(agent["inbound_7d"], int) and agent["public"] is False
    [domain] = body["domains"]
    assert set(domain) >= DOMAIN_REQUIRED
    assert (domain["domain"], domain["primary"], domain["sending_status"]) == (
        data["domain"]["domain"], False, "pending")
    assert all(set(k) >= KEY_REQUIRED for k in body["api_keys"])
    assert {k["key_prefix"] for k in body["api_keys"]} == {
        apikeys.prefix(tenant.key), apikeys.prefix(data["scoped_key"])}

    by_id = {m["id"]: m for m in body["messages"]}
    assert set(by_id) == set(data["ids"])
    for message in body["messages"]:
        assert set(message) >= MESSAGE_REQUIRED and "thread_id" not in message
    assert by_id[data["ids"][1]]["agent_email"] == data["second"]["email"]
    assert base64.b64decode(by_id[data["ids"][2]]["raw_message"]) == data["raw"]

    text = result.text
    for value in (tenant.key, data["scoped_key"], *data["secrets"], cfg.secrets.hmac_secret,
                  other_message, other.user["id"]):
        assert value not in text
    assert not [path for path, key in walk_keys(body)
                if SECRETISH_KEY.search(key) and key not in ALLOWED_KEYS]


def test_export_streams_in_batches_like_the_legacy_one(cfg, client, monkeypatch):
    data = owned_everything(cfg)
    monkeypatch.setattr(export, "BATCH_BYTES", 1)
    monkeypatch.setattr(export, "BATCH_ROWS", 1)
    body = client.simulate_get(EXPORT, headers=data["tenant"].auth).json
    assert sorted(m["id"] for m in body["messages"]) == sorted(data["ids"])


def test_agent_keys_may_not_export(cfg, client):
    data = owned_everything(cfg)
    result = client.simulate_get(EXPORT, headers={
        "Authorization": f"Bearer {data['scoped_key']}"})
    assert_envelope(result, 403, "forbidden")
