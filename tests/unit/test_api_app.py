"""The Falcon app on a real database: health, info, authentication, error shape."""

from __future__ import annotations

import logging
import re

import pytest
from apisupport import api_client, make_tenant
from falcon import testing

from e2a.api.app import create_app
from e2a.core.db import open_pool, single_connection

REQUEST_ID = re.compile(r"^req_[0-9a-f]{24}$")


@pytest.fixture(scope="module")
def tenant(cfg):
    return make_tenant(cfg)


@pytest.fixture(scope="module")
def client(cfg):
    with api_client(cfg) as test_client:
        yield test_client


@pytest.fixture
def down_client(cfg):
    """The app over a closed pool: every database call fails like an outage."""
    pool = open_pool(cfg, name="test-api-down", wait=False)
    pool.close()
    return testing.TestClient(create_app(cfg, pool))


def assert_error(result, status, code):
    assert result.status_code == status
    assert result.headers["content-type"].startswith("application/json")
    body = result.json
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "request_id", "details"}
    assert body["error"]["code"] == code
    assert body["error"]["message"]
    assert isinstance(body["error"]["details"], dict)
    assert body["error"]["request_id"] == result.headers["x-request-id"]
    assert REQUEST_ID.match(body["error"]["request_id"])
    return body["error"]


def test_health_ok(client):
    result = client.simulate_get("/api/health")
    assert result.status_code == 200
    assert result.json == {"status": "ok"}
    assert REQUEST_ID.match(result.headers["x-request-id"])


def test_health_unavailable_when_database_is_down(down_client):
    result = down_client.simulate_get("/api/health")
    assert result.status_code == 503
    assert result.json == {"status": "unavailable"}


def test_info(cfg, client):
    result = client.simulate_get("/api/v1/info")
    assert result.status_code == 200
    assert result.json == {"shared_domain": "agents.test.example",
                           "slug_registration_enabled": True,
                           "public_url": cfg.http.public_url}


@pytest.mark.parametrize("header", [
    None,
    "",
    "Bearer",
    "Bearer e2a_" + "0" * 64,  # well formed, not issued
    "Bearer e2a_short",
    "Basic dXNlcjpwYXNz",
])
def test_missing_or_bad_key_is_401(client, tenant, header):
    headers = {"Authorization": header} if header is not None else {}
    result = client.simulate_get(tenant.messages_path, headers=headers)
    assert_error(result, 401, "unauthorized")
    assert result.headers["www-authenticate"] == "Bearer"


def test_key_of_other_scheme_case_and_last_use_recorded(cfg, client, tenant):
    result = client.simulate_get(tenant.messages_path,
                                 headers={"Authorization": f"bearer {tenant.key}"})
    assert result.status_code == 200
    with single_connection(cfg) as conn:
        row = conn.execute("SELECT last_used_at FROM api_keys WHERE user_id = %s",
                           (tenant.user["id"],)).fetchone()
    assert row["last_used_at"] is not None


def test_unknown_route_is_json_404(client):
    result = client.simulate_get("/api/v1/nothing-here")
    error = assert_error(result, 404, "not_found")
    assert "/api/v1/nothing-here" in error["message"]


def test_wrong_method_is_json_405(client):
    result = client.simulate_post("/api/health")
    assert_error(result, 405, "method_not_allowed")
    assert "GET" in result.headers["allow"]


def test_caller_request_id_is_kept_and_junk_replaced(client):
    result = client.simulate_get("/api/v1/info", headers={"X-Request-Id": "lb-1234.abc"})
    assert result.headers["x-request-id"] == "lb-1234.abc"
    result = client.simulate_get("/api/v1/info", headers={"X-Request-Id": "bad id\r\nx"})
    assert REQUEST_ID.match(result.headers["x-request-id"])


class _Echo:
    public = True

    def on_post(self, req, resp):
        resp.media = req.get_media()


class _Broken:
    public = True

    def on_get(self, req, resp):
        raise RuntimeError("boom")


@pytest.fixture(scope="module")
def probe_client(client):
    """The app with routes that exercise error paths no real route has yet."""
    client.app.add_route("/test/echo", _Echo())
    client.app.add_route("/test/broken", _Broken())
    return client


def test_bad_json_is_json_400(probe_client):
    result = probe_client.simulate_post("/test/echo", body="{not json",
                                        headers={"Content-Type": "application/json"})
    assert_error(result, 400, "invalid_json")
    ok = probe_client.simulate_post("/test/echo", json={"a": 1})
    assert ok.json == {"a": 1}


def test_unexpected_exception_is_json_500_and_logged(probe_client, caplog):
    with caplog.at_level(logging.ERROR, logger="e2a.api"):
        result = probe_client.simulate_get("/test/broken", params={"token": "secret-ish"})
    error = assert_error(result, 500, "internal_error")
    assert "boom" not in error["message"]
    [record] = [r for r in caplog.records if r.name == "e2a.api"]
    assert record.exc_info and record.exc_info[0] is RuntimeError
    assert record.request_id == error["request_id"]
    assert "secret-ish" not in record.getMessage()


def test_database_down_on_an_authenticated_route_is_503(down_client, tenant):
    result = down_client.simulate_get(tenant.messages_path, headers=tenant.auth)
    assert_error(result, 503, "unavailable")
    assert result.headers["retry-after"]


def test_falcon_http_errors_keep_our_shape(probe_client):
    # Falcon's own parameter errors go through the same renderer.
    app = probe_client.app

    class _Param:
        public = True

        def on_get(self, req, resp):
            req.get_param_as_int("n", required=True)

    app.add_route("/test/param", _Param())
    result = probe_client.simulate_get("/test/param")
    assert_error(result, 400, "invalid_request")
