"""/api/v1/users/me/signing-secrets on a real database: shown once, listed
without the secret, newest signs, at most five, the last one stays."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor

import pytest
from apisupport import agent_key, api_client, make_tenant

from e2a.core.accounts import signing_secrets
from e2a.core.db import single_connection
from e2a.core.store import signing as signing_store

PATH = "/api/v1/users/me/signing-secrets"
SECRET = re.compile(r"^whsec_[0-9a-f]{64}$")
FIELDS = {"created_at", "id", "last_signed_at", "name", "secret", "secret_prefix"}


@pytest.fixture(scope="module")
def client(cfg):
    with api_client(cfg) as test_client:
        yield test_client


def create(client, tenant, name="x"):
    return client.simulate_post(PATH, headers=tenant.auth, json={"name": name})


def listed(client, tenant):
    result = client.simulate_get(PATH, headers=tenant.auth)
    assert result.status_code == 200
    return result.json["secrets"]


def test_lifecycle(cfg, client):
    tenant = make_tenant(cfg)
    assert listed(client, tenant) == []

    first = create(client, tenant, "prod")
    assert first.status_code == 201, first.text
    assert set(first.json) == FIELDS
    assert SECRET.match(first.json["secret"])
    assert first.json["secret_prefix"] == first.json["secret"][:12]
    assert first.json["name"] == "prod" and first.json["id"].startswith("sec_")
    second = create(client, tenant, "rollover").json

    secrets = listed(client, tenant)
    assert [s["id"] for s in secrets] == [second["id"], first.json["id"]]  # newest first
    assert all(set(s) == FIELDS and s["secret"] == "" for s in secrets)
    assert secrets[1]["secret_prefix"] == first.json["secret_prefix"]
    with single_connection(cfg) as conn:  # what the milter signs with
        assert signing_store.newest_secret(conn, tenant.user["id"]) == second["secret"]

    gone = client.simulate_delete(f"{PATH}/{second['id']}", headers=tenant.auth)
    assert gone.status_code == 204
    assert [s["id"] for s in listed(client, tenant)] == [first.json["id"]]
    with single_connection(cfg) as conn:
        assert signing_store.newest_secret(conn, tenant.user["id"]) == first.json["secret"]

    last = client.simulate_delete(f"{PATH}/{first.json['id']}", headers=tenant.auth)
    assert last.status_code == 400
    assert last.json["error"]["code"] == "last_secret"
    assert "last" in last.json["error"]["message"]
    assert len(listed(client, tenant)) == 1


def test_body_is_optional_and_checked(cfg, client):
    tenant = make_tenant(cfg)
    assert client.simulate_post(PATH, headers=tenant.auth).status_code == 201
    assert client.simulate_post(PATH, headers=tenant.auth,
                                json={"name": 5}).status_code == 400
    assert client.simulate_post(PATH, headers=tenant.auth,
                                json={"name": "x" * 101}).status_code == 400
    bad = client.simulate_post(PATH, headers={**tenant.auth,
                                              "Content-Type": "application/json"},
                               body="{not json")
    assert bad.status_code == 400 and bad.json["error"]["code"] == "invalid_json"
    assert client.simulate_post(PATH, headers=tenant.auth, json=[1]).status_code == 400
    assert len(listed(client, tenant)) == 1


def test_at_most_five(cfg, client):
    tenant = make_tenant(cfg)
    for i in range(signing_secrets.MAX_SECRETS):
        assert create(client, tenant, f"s{i}").status_code == 201
    sixth = create(client, tenant, "s5")
    assert sixth.status_code == 400
    assert sixth.json["error"]["code"] == "limit_reached"
    assert len(listed(client, tenant)) == signing_secrets.MAX_SECRETS


def test_the_cap_holds_under_concurrent_creates(cfg, client):
    tenant = make_tenant(cfg)
    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(lambda i: create(client, tenant, f"c{i}").status_code,
                                 range(8)))
    assert sorted(statuses) == [201] * 5 + [400] * 3
    assert len(listed(client, tenant)) == 5


def test_another_users_secret_is_not_found(cfg, client):
    owner, stranger = make_tenant(cfg), make_tenant(cfg)
    mine = [create(client, owner, n).json["id"] for n in ("a", "b")]
    create(client, stranger, "theirs")
    for target in (mine[0], "sec_" + "0" * 32):
        result = client.simulate_delete(f"{PATH}/{target}", headers=stranger.auth)
        assert result.status_code == 404
        assert result.json["error"]["code"] == "not_found"
    assert [s["id"] for s in listed(client, owner)] == mine[::-1]
    assert all(s["id"] not in mine for s in listed(client, stranger))


@pytest.mark.parametrize("method,suffix", [("GET", ""), ("POST", ""), ("DELETE", "/sec_x")])
def test_agent_keys_are_refused(cfg, client, method, suffix):
    tenant = make_tenant(cfg)
    create(client, tenant, "a")
    key = agent_key(cfg, tenant, tenant.agent)
    result = client.simulate_request(method, PATH + suffix,
                                     headers={"Authorization": f"Bearer {key}"}, json={})
    assert result.status_code == 403
    assert result.json["error"]["code"] == "forbidden"
    assert len(listed(client, tenant)) == 1
