"""The account endpoints on a real database: export, deletion, limits."""

from __future__ import annotations

import base64
import json
import re

import pytest
from apisupport import add_agent, agent_key, api_client, insert_message, make_tenant

from e2a.api import export
from e2a.core.accounts import apikeys, domains, signing_secrets
from e2a.core.accounts import registration as accounts
from e2a.core.db import single_connection

EXPORT = "/api/v1/users/me/export"
ME = "/api/v1/users/me"
LIMITS = "/api/v1/users/me/limits"

USER_EXPORT_FIELDS = {"schema_version", "generated_at", "user", "agents", "domains",
                      "api_keys", "messages", "usage_events", "oauth_connections"}
AGENT_IDENTITY_FIELDS = {"agent_mode", "created_at", "domain", "domain_verified", "email",
                         "hitl_enabled", "hitl_expiration_action", "hitl_ttl_seconds", "id",
                         "inbound_7d", "last_delivery_at", "name", "outbound_7d",
                         "pending_count", "public", "user_id", "webhook_healthy", "webhook_url"}
DOMAIN_FIELDS = {"agent_count", "created_at", "dkim_public_key", "dkim_selector", "domain",
                 "is_primary", "last_checked_at", "user_id", "verification_token", "verified",
                 "verified_at"}
API_KEY_FIELDS = {"created_at", "id", "key_prefix", "last_used_at", "name", "revoked_at"}
MESSAGE_FIELDS = {"agent_id", "approval_expires_at", "attachments", "auth_headers", "bcc",
                  "body_html", "body_text", "cc", "conversation_id", "created_at",
                  "delivery_status", "direction", "edited", "email_message_id", "expires_at",
                  "id", "inbox_status", "labels", "method", "provider_message_id",
                  "raw_message", "recipient", "rejection_reason", "reply_to", "reviewed_at",
                  "reviewed_by_name", "reviewed_by_user_id", "sender", "size_bytes", "status",
                  "subject", "to_recipients", "type", "webhook_attempts", "webhook_error",
                  "webhook_status"}
DELETE_RESULT_FIELDS = {"agents_deleted", "api_keys_deleted", "domains_deleted",
                        "messages_deleted", "oauth_access_tokens_deleted",
                        "oauth_auth_codes_deleted", "oauth_refresh_tokens_deleted",
                        "sessions_deleted", "usage_events_deleted", "usage_summaries_deleted",
                        "user_deleted"}
# Keys allowed to contain these words: they name metadata, not secret values.
SECRETISH_KEY = re.compile(r"hash|private|password|secret|token", re.IGNORECASE)
ALLOWED_KEYS = {"signing_secrets", "secret_prefix", "verification_token"}


@pytest.fixture(scope="module")
def client(cfg):
    with api_client(cfg) as test_client:
        yield test_client


def owned_everything(cfg):
    """A tenant with a second agent, an agent key, a custom domain (with its
    DKIM private key), two signing secrets and mail, some of it binary."""
    tenant = make_tenant(cfg)
    second = add_agent(cfg, tenant)
    scoped = agent_key(cfg, tenant, second)
    with single_connection(cfg) as conn:
        domain = domains.register(conn, cfg, tenant.user["id"], f"{tenant.user['id'][4:14]}.test")
        secrets = [signing_secrets.create(conn, tenant.user["id"], name).secret
                   for name in ("old", "new")]
    raw = b"From: a@example.org\r\nSubject: bin\r\n\r\n\x00\xff\xfe binary\r\n"
    ids = [insert_message(cfg, tenant.agent, subject="first"),
           insert_message(cfg, second, subject="second"),
           insert_message(cfg, tenant.agent, subject="bin", raw_message=raw,
                          size_bytes=len(raw))]
    return {"tenant": tenant, "second": second, "scoped_key": scoped, "domain": domain,
            "secrets": secrets, "ids": ids, "raw": raw}


def walk_keys(value, path=""):
    if isinstance(value, dict):
        for key, item in value.items():
            yield f"{path}.{key}", key
            yield from walk_keys(item, f"{path}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from walk_keys(item, f"{path}[{i}]")


def test_export_holds_everything_owned_and_no_secret(cfg, client):
    data = owned_everything(cfg)
    tenant = data["tenant"]
    other = make_tenant(cfg)
    other_message = insert_message(cfg, other.agent, subject="not yours")

    result = client.simulate_get(EXPORT, headers=tenant.auth)
    assert result.status_code == 200, result.text
    assert result.headers["content-type"].startswith("application/json")
    assert "attachment" in result.headers["content-disposition"]
    body = result.json
    assert set(body) >= USER_EXPORT_FIELDS
    assert body["schema_version"] == "1"
    assert body["usage_events"] == [] and body["oauth_connections"] == []
    assert body["user"] == {"id": tenant.user["id"], "email": tenant.user["email"],
                            "name": "", "created_at": body["user"]["created_at"]}

    assert {a["email"] for a in body["agents"]} == {tenant.agent["email"],
                                                    data["second"]["email"]}
    assert all(set(a) == AGENT_IDENTITY_FIELDS for a in body["agents"])
    first = next(a for a in body["agents"] if a["id"] == tenant.agent["id"])
    assert first["inbound_7d"] == 2 and first["webhook_healthy"] is True

    [domain] = body["domains"]
    assert set(domain) == DOMAIN_FIELDS
    assert domain["domain"] == data["domain"]["domain"]
    assert domain["dkim_public_key"] == data["domain"]["dkim_public_key"]

    assert len(body["api_keys"]) == 2
    assert all(set(k) >= API_KEY_FIELDS for k in body["api_keys"])
    assert {k["key_prefix"] for k in body["api_keys"]} == {
        apikeys.prefix(tenant.key), apikeys.prefix(data["scoped_key"])}

    assert [s["secret_prefix"] for s in body["signing_secrets"]] == [
        data["secrets"][1][:12], data["secrets"][0][:12]]

    by_id = {m["id"]: m for m in body["messages"]}
    assert set(by_id) == set(data["ids"])
    assert all(set(m) == MESSAGE_FIELDS for m in body["messages"])
    assert base64.b64decode(by_id[data["ids"][2]]["raw_message"]) == data["raw"]
    assert by_id[data["ids"][1]]["agent_id"] == data["second"]["id"]

    # Nothing secret, by value or by name, anywhere in the document.
    text = result.text
    with single_connection(cfg) as conn:
        stored = conn.execute(
            "SELECT dkim_private_key_enc FROM domains WHERE id = %s",
            (data["domain"]["id"],)).fetchone()["dkim_private_key_enc"]
    forbidden = [tenant.key, data["scoped_key"], *data["secrets"],
                 apikeys.digest(tenant.key).hex(),
                 base64.b64encode(apikeys.digest(tenant.key)).decode(),
                 bytes(stored).hex(), base64.b64encode(bytes(stored)).decode()[:40],
                 cfg.secrets.hmac_secret]
    for value in forbidden:
        assert value not in text
    assert not re.search(r"whsec_[0-9a-f]{64}|e2a_[0-9a-f]{64}", text)
    assert not [path for path, key in walk_keys(body)
                if SECRETISH_KEY.search(key) and key not in ALLOWED_KEYS]
    # Nor another tenant's data.
    assert other_message not in text and other.user["id"] not in text


def test_export_streams_messages_in_small_batches(cfg, client, monkeypatch):
    tenant = make_tenant(cfg)
    ids = [insert_message(cfg, tenant.agent, subject=f"m{i}") for i in range(7)]
    # Every batch holds one row then: the size cap still lets the first through.
    monkeypatch.setattr(export, "BATCH_BYTES", 1)
    monkeypatch.setattr(export, "BATCH_ROWS", 3)
    result = client.simulate_get(EXPORT, headers=tenant.auth)
    assert result.status_code == 200
    assert [m["id"] for m in result.json["messages"]] == ids  # oldest first, each once
    monkeypatch.setattr(export, "BATCH_BYTES", 10**9)
    result = client.simulate_get(EXPORT, headers=tenant.auth)
    assert [m["id"] for m in result.json["messages"]] == ids


def test_export_of_an_empty_account_is_valid_json(cfg, client):
    with single_connection(cfg) as conn:
        user = accounts.create_user(conn, "empty-export@example.net")
        key = accounts.issue_key(conn, user["id"]).key
    result = client.simulate_get(EXPORT, headers={"Authorization": f"Bearer {key}"})
    assert result.status_code == 200
    body = json.loads(result.text)
    assert body["agents"] == [] and body["messages"] == [] and body["domains"] == []


def owned_rows(cfg, user_id):
    with single_connection(cfg) as conn:
        return {table: conn.execute(f"SELECT count(*) AS n FROM {table} WHERE {col} = %s",
                                    (user_id,)).fetchone()["n"]
                for table, col in (("users", "id"), ("agents", "user_id"),
                                   ("domains", "user_id"), ("messages", "user_id"),
                                   ("api_keys", "user_id"), ("signing_secrets", "user_id"),
                                   ("usage_monthly", "user_id"), ("events", "user_id"))}


@pytest.mark.parametrize("params", [{}, {"confirm": "delete"}, {"confirm": "yes"}])
def test_delete_needs_confirm(cfg, client, params):
    tenant = make_tenant(cfg)
    result = client.simulate_delete(ME, headers=tenant.auth, params=params)
    assert result.status_code == 400
    assert result.json["error"]["details"] == {"param": "confirm"}
    assert owned_rows(cfg, tenant.user["id"])["users"] == 1


def test_delete_erases_everything_in_one_go_and_kills_the_key(cfg, client):
    data = owned_everything(cfg)
    tenant = data["tenant"]
    bystander = make_tenant(cfg)
    insert_message(cfg, bystander.agent)
    before_bystander = owned_rows(cfg, bystander.user["id"])

    result = client.simulate_delete(ME, headers=tenant.auth, params={"confirm": "DELETE"})
    assert result.status_code == 200, result.text
    counts = result.json
    assert set(counts) >= DELETE_RESULT_FIELDS
    assert counts["user_deleted"] is True
    assert (counts["agents_deleted"], counts["api_keys_deleted"], counts["domains_deleted"],
            counts["messages_deleted"], counts["signing_secrets_deleted"]) == (2, 2, 1, 3, 2)
    assert counts["usage_summaries_deleted"] == 1
    assert counts["sessions_deleted"] == 0 and counts["oauth_access_tokens_deleted"] == 0

    assert set(owned_rows(cfg, tenant.user["id"]).values()) == {0}
    assert owned_rows(cfg, bystander.user["id"]) == before_bystander
    with single_connection(cfg) as conn:
        shared = conn.execute("SELECT 1 FROM domains WHERE domain = %s",
                              (cfg.mail.shared_domain,)).fetchone()
    assert shared is not None
    for key in (tenant.key, data["scoped_key"]):
        gone = client.simulate_get(LIMITS, headers={"Authorization": f"Bearer {key}"})
        assert gone.status_code == 401
    assert client.simulate_get(LIMITS, headers=bystander.auth).status_code == 200


def test_delete_is_all_or_nothing(cfg, client, monkeypatch):
    data = owned_everything(cfg)
    tenant = data["tenant"]
    before = owned_rows(cfg, tenant.user["id"])
    from e2a.core.store import userdata
    # A statement that fails after the first deletes ran: nothing may stay deleted.
    monkeypatch.setattr(userdata, "ERASE_ORDER",
                        (*userdata.ERASE_ORDER[:3], ("broken", "DELETE FROM no_such_table")))
    result = client.simulate_delete(ME, headers=tenant.auth, params={"confirm": "DELETE"})
    assert result.status_code == 500
    assert owned_rows(cfg, tenant.user["id"]) == before


@pytest.mark.parametrize("method,path", [("GET", EXPORT), ("GET", LIMITS), ("DELETE", ME)])
def test_agent_keys_may_not_use_account_endpoints(cfg, client, method, path):
    tenant = make_tenant(cfg)
    key = agent_key(cfg, tenant, tenant.agent)
    result = client.simulate_request(method, path, headers={"Authorization": f"Bearer {key}"},
                                     params={"confirm": "DELETE"})
    assert result.status_code == 403
    assert result.json["error"]["code"] == "forbidden"
    assert owned_rows(cfg, tenant.user["id"])["users"] == 1


def test_limits_come_from_the_user_row_and_usage_is_counted(cfg, client):
    data = owned_everything(cfg)
    tenant = data["tenant"]
    with single_connection(cfg) as conn:
        conn.execute("UPDATE users SET plan_code = 'team', max_agents = 7 WHERE id = %s",
                     (tenant.user["id"],))
        sizes = conn.execute("SELECT sum(size_bytes) AS s FROM messages WHERE user_id = %s",
                             (tenant.user["id"],)).fetchone()["s"]
        # Last month's mail is stored but not this month's.
        conn.execute("UPDATE messages SET created_at = now() - interval '40 days' "
                     "WHERE id = %s", (data["ids"][0],))
    result = client.simulate_get(LIMITS, headers=tenant.auth)
    assert result.status_code == 200
    assert result.json == {
        "plan_code": "team", "upgrade_url": "",
        "limits": {"max_agents": 7, "max_domains": 20, "max_messages_month": 100000,
                   "max_storage_bytes": 10737418240},
        "usage": {"agents": 2, "domains": 1, "messages_month": 2, "storage_bytes": sizes},
    }
