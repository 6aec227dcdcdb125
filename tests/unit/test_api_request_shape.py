"""What any route does with a malformed or oversized request: a 400 or 413
in the JSON error envelope (a page for the magic links), never a 500, and
an oversized body refused before it is read. Every route of the app is
walked (api/openapi.routes), so a new route is covered without a new test."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from apisupport import api_client, make_tenant
from falcon import testing

from e2a.api import jsonbody
from e2a.api.middleware import MAX_FORM_BYTES
from e2a.api.openapi import builder as openapi

# Values that fill a route's path parameters: real enough to reach the
# resource (a 404 for an unknown id is fine, a 500 is not).
BODY_METHODS = ("POST", "PUT", "PATCH")
PAGES = ("/api/v1/approve", "/api/v1/reject")


@pytest.fixture(scope="module")
def client(cfg):
    with api_client(cfg) as test_client:
        yield test_client


@pytest.fixture
def tenant(cfg):
    return make_tenant(cfg)


def _routes(client) -> list[openapi.Route]:
    return openapi.routes(client.app)


def _fill(template: str, tenant, value: str | None = None) -> str:
    values = {"email": tenant.agent["email"].replace("@", "%40"), "id": "msg_" + "0" * 32,
              "domain": "nothing.example.com", "token": "a" * 52}
    path = template
    for name in openapi.Route(template, None, ()).params:
        path = path.replace("{" + name + "}", value if value is not None else values[name])
    return path


def _operations(client, methods: tuple[str, ...] | None = None):
    for route in _routes(client):
        for method in route.methods:
            if methods is None or method in methods:
                yield route, method


def _json_operations(client):
    """The operations that read a JSON body (their doc declares one)."""
    for route, method in _operations(client, BODY_METHODS):
        op = getattr(route.resource, "doc", {}).get(method.lower(), {})
        if "application/json" in op.get("requestBody", {}).get("content", {}):
            yield route, method


def _query_params(route: openapi.Route, method: str) -> list[str]:
    op = getattr(route.resource, "doc", {}).get(method.lower(), {})
    return [p["name"] for p in op.get("parameters", []) if p.get("in") == "query"]


def _not_a_crash(result, where: str) -> None:
    assert result.status_code < 500 or result.status_code == 503, (where, result.text)


def _envelope(result, status: int, where: str) -> dict[str, Any]:
    assert result.status_code == status, (where, result.status_code, result.text)
    error = result.json["error"]
    assert error["message"] and error["request_id"], where
    return error


def _deep(depth: int) -> str:
    return '{"a":' * depth + "1" + "}" * depth


# -- item: 400, never 500 ------------------------------------------------------


def test_nul_in_a_path_parameter_is_400_on_every_route(client, tenant):
    for route, method in _operations(client):
        if not route.params:
            continue
        path = _fill(route.template, tenant, "a%00b")
        result = client.simulate_request(method, path, headers=tenant.auth, json={})
        error = _envelope(result, 400, f"{method} {route.template}")
        assert "NUL" in error["message"]


def test_nul_in_the_query_is_400_on_every_route(client, tenant):
    for route, method in _operations(client):
        path = _fill(route.template, tenant)
        names = _query_params(route, method) or ["anything"]
        for name in names:
            result = client.simulate_request(method, path, query_string=f"{name}=x%00y",
                                             headers=tenant.auth, json={})
            error = _envelope(result, 400, f"{method} {route.template} ?{name}")
            assert error["details"].get("param") == name


def test_empty_and_junk_query_values_are_never_a_500(client, tenant):
    junk = ("", " ", "zz", "-1", "0", "99999999999999999999", "0001-01-01T00:00:00+01:00",
            "9999-12-31T23:59:59-01:00", "2026-13-45T99:00:00Z", "%FF%FE", "\u2603")
    for route, method in _operations(client, ("GET",)):
        path = _fill(route.template, tenant)
        for name in _query_params(route, method):
            for value in junk:
                result = client.simulate_get(path, params={name: value}, headers=tenant.auth)
                _not_a_crash(result, f"GET {route.template} ?{name}={value!r}")


def test_empty_until_is_not_a_500(client, tenant):
    result = client.simulate_get(tenant.messages_path, query_string="until=&since=",
                                 headers=tenant.auth)
    assert result.status_code in (200, 400), result.text


@pytest.mark.parametrize("depth", [jsonbody.MAX_DEPTH + 1, 100_000])
def test_json_nested_too_deep_is_400_on_every_route(client, tenant, depth):
    body = _deep(depth)
    for route, method in _json_operations(client):
        result = client.simulate_request(
            method, _fill(route.template, tenant), body=body, headers={
                **tenant.auth, "Content-Type": "application/json"})
        error = _envelope(result, 400, f"{method} {route.template}")
        assert str(jsonbody.MAX_DEPTH) in error["message"]


def test_json_at_the_depth_limit_is_read(client, tenant):
    # The limit counts containers: an object MAX_DEPTH deep is still fine
    # (refused by the route for its content, not for its shape).
    result = client.simulate_put(_fill("/api/v1/agents/{email}", tenant),
                                 body=_deep(jsonbody.MAX_DEPTH),
                                 headers={**tenant.auth, "Content-Type": "application/json"})
    assert "deeper" not in result.text, result.text
    assert result.status_code < 500, result.text


@pytest.mark.parametrize("body", ["[1, 2]", '"text"', "42", "null", "true"])
def test_a_body_that_is_not_an_object_is_400_on_every_route(client, tenant, body):
    for route, method in _json_operations(client):
        result = client.simulate_request(
            method, _fill(route.template, tenant), body=body,
            headers={**tenant.auth, "Content-Type": "application/json"})
        where = f"{method} {route.template} {body}"
        # 404: the route's object (an unknown id here) is looked up first.
        assert result.status_code in (400, 404), (where, result.text)
        if result.status_code == 400:
            assert result.json["error"]["code"] in ("invalid_request", "invalid_json"), where


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_non_standard_json_constants_are_400_on_every_route(client, tenant, constant):
    for route, method in _json_operations(client):
        result = client.simulate_request(
            method, _fill(route.template, tenant), body=f'{{"since": {constant}}}',
            headers={**tenant.auth, "Content-Type": "application/json"})
        assert _envelope(result, 400, f"{method} {route.template}")["code"] == "invalid_json"


def test_nul_inside_a_json_string_is_400_on_every_route(client, tenant):
    body = json.dumps({"name": "a\u0000b", "slug": "x\u0000", "url": "https://e\u0000x.com",
                       "from": "a\u0000@example.com", "domain": "e\u0000.com",
                       "nested": {"deeper": ["\u0000"]}})
    for route, method in _json_operations(client):
        result = client.simulate_request(
            method, _fill(route.template, tenant), body=body,
            headers={**tenant.auth, "Content-Type": "application/json"})
        error = _envelope(result, 400, f"{method} {route.template}")
        assert "NUL" in error["message"]


def test_a_required_object_body_that_is_missing_is_a_400_not_a_500(client, tenant):
    for route, method in _json_operations(client):
        op = route.resource.doc[method.lower()]
        result = client.simulate_request(method, _fill(route.template, tenant),
                                         headers=tenant.auth)
        where = f"{method} {route.template} (no body)"
        # An absent body reads as {}: a POST that needs fields refuses it; an
        # update (PUT, PATCH) without changes is a no-op, as clients rely on.
        if op["requestBody"].get("required", False) and method == "POST":
            # 404: the route's object (an unknown id here) is looked up first.
            assert result.status_code in (400, 404), (where, result.text)
        else:
            _not_a_crash(result, where)


# -- item: body size ------------------------------------------------------------


class _Endless(io.RawIOBase):
    """A body that never ends: reading it all would never return."""

    def __init__(self) -> None:
        self.read_bytes = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        buffer[:] = b" " * len(buffer)
        self.read_bytes += len(buffer)
        return len(buffer)


def _limit_for(cfg, template: str) -> int:
    if template in PAGES:
        return MAX_FORM_BYTES
    if template.endswith(("/send", "/reply", "/forward", "/approve")):
        return cfg.http.max_send_body_bytes
    return cfg.http.max_body_bytes


def _call(client, tenant, route: openapi.Route, method: str, stream: Any,
          length: int | None) -> tuple[str, bytes]:
    """The app called as a server would, the body read from ``stream``;
    ``length`` None: sent chunked, with no Content-Length."""
    framing = {"Content-Length": str(length)} if length is not None else {
        "Transfer-Encoding": "chunked"}
    env = testing.create_environ(path=_fill(route.template, tenant), method=method,
                                 headers={**tenant.auth, "Content-Type": "application/json",
                                          **framing})
    if length is None:
        env.pop("CONTENT_LENGTH", None)
    env["wsgi.input"] = stream
    srmock = testing.StartResponseMock()
    body = b"".join(client.app(env, srmock))
    return srmock.status, body


def test_a_declared_length_over_the_limit_is_413_before_the_body_is_read(cfg, client,
                                                                            tenant):
    for route, method in _operations(client, BODY_METHODS):
        stream = _Endless()
        status, body = _call(client, tenant, route, method, stream,
                             _limit_for(cfg, route.template) + 1)
        where = f"{method} {route.template}"
        assert status.startswith("413"), (where, status, body[:300])
        assert stream.read_bytes == 0, where
        if route.template in PAGES:
            assert b"<html" in body.lower(), where
        else:
            assert json.loads(body)["error"]["code"] == "payload_too_large", where


def test_a_body_without_a_length_is_read_up_to_the_limit_only(cfg, client, tenant):
    for route, method in _operations(client, BODY_METHODS):
        stream = _Endless()
        status, _ = _call(client, tenant, route, method, stream, None)
        where = f"{method} {route.template}"
        assert status.startswith("413"), (where, status)
        assert stream.read_bytes <= _limit_for(cfg, route.template) + 64 * 1024, where


def test_a_chunked_body_within_the_limit_is_read(cfg, client, tenant):
    payload = json.dumps({"hitl_ttl_seconds": 1234}).encode()
    [route] = [r for r in _routes(client) if r.template == "/api/v1/agents/{email}"]
    status, body = _call(client, tenant, route, "PUT", io.BytesIO(payload), None)
    assert status.startswith("200"), body
    assert json.loads(body)["hitl_ttl_seconds"] == 1234


def test_the_send_limit_takes_the_largest_legitimate_send(cfg):
    largest = max(cfg.send.max_attachments_total_bytes, cfg.mail.max_message_bytes)
    assert cfg.http.max_send_body_bytes >= largest * 4 // 3 + cfg.http.max_body_bytes
    assert cfg.http.max_body_bytes == 1024 * 1024


def _body_fields(client, route: openapi.Route, method: str) -> list[str]:
    document = openapi.build(client.app)
    op = document["paths"][route.template][method.lower()]
    ref = op["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    schema = document["components"]["schemas"][ref.rsplit("/", 1)[-1]]
    return sorted(schema.get("properties", {}))


def test_junk_in_any_json_field_is_never_a_500(client, tenant):
    junk = ("", "0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00", -1,
            10 ** 30, 1.5e308, float("nan"), float("-inf"), True, [], {}, ["\u2603" * 3],
            {"a": {"b": 1}})
    for route, method in _json_operations(client):
        if route.template.endswith(("/send", "/reply", "/forward", "/approve", "/test")):
            continue  # those send mail; their refusals have their own tests
        path = _fill(route.template, tenant)
        for name in _body_fields(client, route, method):
            for value in junk:
                result = client.simulate_request(method, path, json={name: value},
                                                 headers=tenant.auth)
                _not_a_crash(result, f"{method} {route.template} {name}={value!r}")
