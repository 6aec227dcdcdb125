"""The /v1 rules every operation shares: the error envelope (router 404/405
included) with X-Request-Id, 429 with Retry-After, strict bodies, and the
refusal of NUL and invalid UTF-8 before authentication. The legacy surface
keeps its own answers."""

from __future__ import annotations

import pytest
from apisupport import api_client, insert_message, make_tenant
from servicesupport import write_config
from v1support import agent_path, assert_envelope, messages_path

from e2a.core import config


@pytest.fixture(scope="module")
def client(cfg):
    with api_client(cfg) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def tenant(cfg):
    return make_tenant(cfg)


def test_router_404_and_405_are_enveloped(client):
    assert_envelope(client.simulate_get("/v1/nothing-here"), 404, "not_found")
    assert_envelope(client.simulate_put("/v1/info"), 405, "method_not_allowed")


def test_the_legacy_surface_keeps_its_own_answers(client):
    result = client.simulate_get("/api/v1/nothing-here")
    assert result.status_code == 404
    assert result.json["error"]["details"] == {}  # the legacy shape, unchanged
    bad = client.simulate_get("/api/v1/agents", params={"token": "a\x00b"})
    assert bad.json["error"]["code"] == "invalid_request"


def test_every_response_has_a_request_id(client, tenant):
    for result in (client.simulate_get("/v1/info"),
                   client.simulate_get("/v1/account", headers=tenant.auth),
                   client.simulate_get("/v1/account")):
        assert result.headers["X-Request-Id"]


def test_missing_and_bad_keys_are_401(client):
    assert_envelope(client.simulate_get("/v1/account"), 401, "unauthorized")
    assert_envelope(client.simulate_get("/v1/account",
                                        headers={"Authorization": "Bearer nope"}),
                    401, "unauthorized")


def test_an_unknown_body_field_is_422_naming_it(client, tenant):
    result = client.simulate_patch(agent_path(tenant.agent["email"]),
                                   json={"name": "x", "agent_mode": "cloud"},
                                   headers=tenant.auth)
    error = assert_envelope(result, 422, "invalid_request")
    assert error["details"]["fields"] == [{"location": "body.agent_mode",
                                           "message": "unknown field"}]


def test_a_wrong_type_is_400_naming_it(client, tenant):
    result = client.simulate_post("/v1/agents", json={"email": 5}, headers=tenant.auth)
    error = assert_envelope(result, 400, "invalid_request")
    assert error["details"]["fields"][0]["location"] == "body.email"


def test_malformed_json_is_invalid_request(client, tenant):
    result = client.simulate_post("/v1/agents", body="{nope", headers={
        **tenant.auth, "Content-Type": "application/json"})
    assert_envelope(result, 400, "invalid_request")


@pytest.mark.parametrize("path,query,body", [
    ("/v1/agents/a%00b", None, None),
    ("/v1/agents/a%FFb", None, None),
    ("/v1/agents", "cursor=a%00b", None),
    ("/v1/agents", "cursor=%C3%28", None),
    ("/v1/agents", None, b'{"email": "a\\u0000b@example.org"}'),
    ("/v1/agents", None, b'{"email": "a\xffb@example.org"}'),
], ids=["nul-path", "utf8-path", "nul-query", "utf8-query", "nul-body", "utf8-body"])
def test_nul_and_invalid_utf8_are_400_before_auth(client, path, query, body):
    # No key at all: the 400 comes before the 401.
    method = "POST" if body else "GET"
    result = client.simulate_request(method, path, query_string=query, body=body,
                                     headers={"Content-Type": "application/json"})
    error = assert_envelope(result, 400, "invalid_request")
    assert error["details"]["fields"][0]["location"]


def test_limit_bounds(client, tenant):
    path = messages_path(tenant.agent["email"])
    for bad in ("0", "101", "ten"):
        result = client.simulate_get(path, params={"limit": bad}, headers=tenant.auth)
        error = assert_envelope(result, 400, "invalid_request")
        assert error["details"]["fields"][0]["location"] == "query.limit"


def test_a_bad_filter_expression_is_400_invalid_filter(client, tenant):
    # (the language itself: test_v1_filter_expressions.py)
    result = client.simulate_get(messages_path(tenant.agent["email"]),
                                 params={"filter": "label:x OR"}, headers=tenant.auth)
    assert_envelope(result, 400, "invalid_filter")


def test_the_idempotency_header_is_tolerated(client, cfg, tenant):
    message_id = insert_message(cfg, tenant.agent)
    result = client.simulate_patch(f"{messages_path(tenant.agent['email'])}/{message_id}",
                                   json={"add_labels": ["x"]},
                                   headers={**tenant.auth, "Idempotency-Key": "a" * 32})
    assert result.status_code == 200, result.text


def test_429_carries_retry_after(cfg, tmp_path):
    tight = config.load(write_config(cfg, tmp_path / "e2a.toml",
                                     "[http]\nrequests_per_minute = 1\n"), env={})
    owner = make_tenant(tight)
    with api_client(tight) as tight_client:
        assert tight_client.simulate_get("/v1/account", headers=owner.auth).status_code == 200
        result = tight_client.simulate_get("/v1/account", headers=owner.auth)
    error = assert_envelope(result, 429, "rate_limited")
    assert int(result.headers["Retry-After"]) >= 1
    assert error["details"]["retry_after_seconds"] >= 1
