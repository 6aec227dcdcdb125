"""`e2a keys create|list|revoke`, run as the real command, and what the API
makes of the keys it prints."""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess

import pytest
from apisupport import agent_path, api_client, make_tenant
from servicesupport import E2A, write_config

KEY = re.compile(r"e2a_[0-9a-f]{64}")


@pytest.fixture(scope="module")
def e2a(cfg, tmp_path_factory):
    path = write_config(cfg, tmp_path_factory.mktemp("keys") / "e2a.toml")
    env = {k: v for k, v in os.environ.items() if not k.startswith("E2A_")}
    env["E2A_CONFIG"] = str(path)

    def run(*args, ok=True):
        done = subprocess.run([str(E2A), "keys", *args], env=env, capture_output=True,
                              text=True, timeout=60)
        if ok:
            assert done.returncode == 0, done.stderr
        return done

    return run


@pytest.fixture(scope="module")
def client(cfg):
    with api_client(cfg) as test_client:
        yield test_client


def bearer(key):
    return {"Authorization": f"Bearer {key}"}


def test_create_list_revoke(e2a, cfg, client):
    tenant = make_tenant(cfg)
    owner = tenant.user["email"]

    created = e2a("create", "--owner", owner, "--name", "ci")
    account_key = KEY.search(created.stdout).group(0)
    key_id = re.search(r"key (key_[0-9a-f]{32}) \(account\)", created.stdout).group(1)
    assert "shown once" in created.stdout
    assert client.simulate_get("/api/v1/agents", headers=bearer(account_key)).status_code == 200

    scoped = json.loads(e2a("create", "--owner", owner, "--agent",
                            tenant.agent["email"].upper(), "--json").stdout)
    assert scoped["scope"] == tenant.agent["email"]
    assert KEY.fullmatch(scoped["api_key"])
    own = client.simulate_get(agent_path(tenant.agent["email"]), headers=bearer(scoped["api_key"]))
    assert own.status_code == 200
    assert client.simulate_post("/api/v1/agents", headers=bearer(scoped["api_key"]),
                                json={"slug": "x", "agent_mode": "local"}).status_code == 403

    table = e2a("list", "--owner", owner).stdout
    assert table.splitlines()[0].split() == ["ID", "PREFIX", "NAME", "SCOPE", "CREATED", "LAST",
                                             "USED", "REVOKED"]
    line = next(row for row in table.splitlines() if row.startswith(key_id))
    assert account_key[:12] in line and " ci " in line and "account" in line
    assert account_key not in table and scoped["api_key"] not in table
    rows = {r["id"]: r for r in json.loads(e2a("list", "--owner", owner, "--json").stdout)}
    assert set(rows[key_id]) == {"id", "prefix", "name", "scope", "created", "last_used",
                                 "revoked"}
    assert rows[key_id]["last_used"] != ""  # the API call above was recorded
    assert rows[key_id]["revoked"] == ""
    assert rows[scoped["id"]]["scope"] == tenant.agent["email"]
    assert tenant.key[:12] in {r["prefix"] for r in rows.values()}  # the fixture's own key

    revoked = e2a("revoke", key_id)
    assert f"revoked {key_id}" in revoked.stdout
    refused = client.simulate_get("/api/v1/agents", headers=bearer(account_key))
    assert refused.status_code == 401
    assert refused.json["error"]["code"] == "unauthorized"
    after = {r["id"]: r for r in json.loads(e2a("list", "--owner", owner, "--json").stdout)}
    assert after[key_id]["revoked"] != ""
    assert "revoked already" in e2a("revoke", key_id).stdout
    # The other keys still work.
    assert client.simulate_get("/api/v1/agents", headers=tenant.auth).status_code == 200


def test_refusals(e2a, cfg):
    tenant, other = make_tenant(cfg), make_tenant(cfg)
    unknown_owner = e2a("create", "--owner", f"nobody-{secrets.token_hex(3)}@example.net",
                        ok=False)
    assert unknown_owner.returncode == 1 and "no user" in unknown_owner.stderr
    foreign_agent = e2a("create", "--owner", tenant.user["email"], "--agent",
                        other.agent["email"], ok=False)
    assert foreign_agent.returncode == 1 and "has no agent" in foreign_agent.stderr
    assert not KEY.search(foreign_agent.stdout + foreign_agent.stderr)
    unknown_key = e2a("revoke", "key_" + "0" * 32, ok=False)
    assert unknown_key.returncode == 1 and "no API key" in unknown_key.stderr
    empty = make_tenant(cfg)
    listed = json.loads(e2a("list", "--owner", empty.user["email"], "--json").stdout)
    assert len(listed) == 1  # make_tenant's key, nothing of the other tenants
