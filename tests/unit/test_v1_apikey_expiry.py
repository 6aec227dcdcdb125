"""API keys with an expiry (/v1 CreateAPIKeyRequest.expires_at): shown in
the views, refused when not ahead, and refused at authentication, by both
API generations and the WebSocket's key check, once past."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from apisupport import api_client, make_tenant
from v1support import assert_envelope

from e2a.core.db import single_connection
from e2a.core.store import users as user_store

KEYS = "/v1/account/api-keys"


@pytest.fixture(scope="module")
def client(cfg):
    with api_client(cfg) as test_client:
        yield test_client


@pytest.fixture
def tenant(cfg):
    return make_tenant(cfg)


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_a_key_with_an_expiry_shows_it_and_works_until_then(cfg, client, tenant):
    when = (datetime.now(UTC) + timedelta(hours=1)).replace(microsecond=0)
    made = client.simulate_post(KEYS, headers=tenant.auth,
                                json={"name": "short", "expires_at": when.isoformat()})
    assert made.status_code == 201, made.text
    assert made.json["expires_at"] == when.strftime("%Y-%m-%dT%H:%M:%SZ")
    listed = {k["id"]: k for k in client.simulate_get(KEYS, headers=tenant.auth).json["items"]}
    assert listed[made.json["id"]]["expires_at"] == made.json["expires_at"]
    assert "expires_at" not in listed[next(i for i in listed if i != made.json["id"])]
    assert client.simulate_get("/v1/account", headers=bearer(made.json["key"])).status_code == 200


@pytest.mark.parametrize("value", ["2001-01-01T00:00:00Z", "tomorrow", "",
                                   "9999-99-99T00:00:00Z"])
def test_an_expiry_not_ahead_is_refused(client, tenant, value):
    result = client.simulate_post(KEYS, headers=tenant.auth, json={"expires_at": value})
    error = assert_envelope(result, 400, "invalid_expires_at")
    assert error["details"]["fields"][0]["location"] == "body.expires_at"


def test_an_expired_key_is_refused_everywhere(cfg, client, tenant):
    soon = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    made = client.simulate_post(KEYS, headers=tenant.auth, json={"expires_at": soon}).json
    with single_connection(cfg) as conn:
        conn.execute("UPDATE api_keys SET expires_at = now() - interval '1 second' "
                     "WHERE id = %s", (made["id"],))
        assert user_store.api_key_is_live(conn, made["id"]) is False
    assert_envelope(client.simulate_get("/v1/account", headers=bearer(made["key"])),
                    401, "unauthorized")
    legacy = client.simulate_get("/api/v1/users/me/limits", headers=bearer(made["key"]))
    assert legacy.status_code == 401
    # The account's key that never expires is untouched.
    assert client.simulate_get("/v1/account", headers=tenant.auth).status_code == 200
