"""The per-key request limit: counted in Postgres, so two app instances (two
processes in production) on one database enforce one limit."""

from __future__ import annotations

import time
from contextlib import ExitStack

import pytest
from apisupport import api_client, make_tenant

from e2a.core import config

LIMIT = 4
PATH = "/api/v1/users/me/limits"


@pytest.fixture
def limited_cfg(cfg):
    return config.load(cfg.source, env={"E2A_HTTP_REQUESTS_PER_MINUTE": str(LIMIT)})


@pytest.fixture
def two_apps(limited_cfg):
    with ExitStack() as stack:
        yield [stack.enter_context(api_client(limited_cfg)) for _ in range(2)]


def inside_one_window():
    """Windows are whole minutes of the database's clock (this machine's):
    start well before one ends, so the test's requests share it."""
    left = 60 - time.time() % 60
    if left < 10:
        time.sleep(left + 0.2)


def test_limit_is_shared_by_two_app_instances(cfg, two_apps):
    tenant, bystander = make_tenant(cfg), make_tenant(cfg)
    inside_one_window()
    statuses = [two_apps[i % 2].simulate_get(PATH, headers=tenant.auth).status_code
                for i in range(LIMIT)]
    assert statuses == [200] * LIMIT
    over = two_apps[LIMIT % 2].simulate_get(PATH, headers=tenant.auth)
    assert over.status_code == 429
    retry_after = int(over.headers["retry-after"])
    assert 1 <= retry_after <= 60
    error = over.json["error"]
    assert error["code"] == "rate_limited"
    assert error["request_id"] == over.headers["x-request-id"]
    assert error["details"] == {"retry_after_seconds": retry_after}
    assert f"at most {LIMIT} per 60 s" in error["message"]
    # Refused requests count too: the other instance refuses as well.
    assert two_apps[(LIMIT + 1) % 2].simulate_get(PATH, headers=tenant.auth).status_code == 429
    # Another key, and routes without a key, are not held back.
    assert two_apps[0].simulate_get(PATH, headers=bystander.auth).status_code == 200
    assert two_apps[1].simulate_get("/api/v1/info").status_code == 200


def test_zero_turns_the_limit_off(cfg):
    unlimited = config.load(cfg.source, env={"E2A_HTTP_REQUESTS_PER_MINUTE": "0"})
    tenant = make_tenant(cfg)
    with api_client(unlimited) as client:
        statuses = {client.simulate_get(PATH, headers=tenant.auth).status_code
                    for _ in range(LIMIT * 3)}
    assert statuses == {200}


def test_v1_answers_carry_ratelimit_headers(cfg, limited_cfg):
    tenant = make_tenant(cfg)
    inside_one_window()
    with api_client(limited_cfg) as client:
        answers = [client.simulate_get("/v1/account", headers=tenant.auth)
                   for _ in range(LIMIT + 1)]
        legacy = client.simulate_get(PATH, headers=make_tenant(cfg).auth)
    assert [a.headers["RateLimit-Remaining"] for a in answers] == [
        str(n) for n in (*range(LIMIT - 1, -1, -1), 0)]
    assert {a.headers["RateLimit-Limit"] for a in answers} == {str(LIMIT)}
    assert all(1 <= int(a.headers["RateLimit-Reset"]) <= 60 for a in answers)
    refused = answers[-1]
    assert refused.status_code == 429
    assert refused.headers["Retry-After"] == refused.headers["RateLimit-Reset"]
    assert refused.json["error"]["details"]["retry_after_seconds"] == int(
        refused.headers["Retry-After"])
    assert "RateLimit-Limit" not in legacy.headers  # the legacy API is as it was
