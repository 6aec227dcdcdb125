"""/api/openapi.json matches the app's routes, and api.openapi.check catches
every way the two could drift apart."""

from __future__ import annotations

import falcon
import pytest
from apisupport import api_client

from e2a.api.app import create_app
from e2a.api.openapi import builder as openapi
from e2a.api.openapi import parts as opdoc
from e2a.api.resources.health import Health


@pytest.fixture(scope="module")
def client(cfg):
    with api_client(cfg) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def app(cfg):
    # Building the document never touches the database.
    return create_app(cfg, None)


def test_the_app_and_its_document_agree(app):
    assert openapi.check(app) == []


def test_served_document_has_exactly_the_routes(cfg, app, client):
    result = client.simulate_get("/api/openapi.json")  # public: no key
    assert result.status_code == 200
    document = result.json
    assert document["openapi"].startswith("3.")
    assert document["servers"] == [{"url": cfg.http.public_url}]
    routed = {(r.template, m.lower()) for r in openapi.routes(app) for m in r.methods}
    documented = {(path, method) for path, item in document["paths"].items()
                  for method in item}
    assert documented == routed
    # The account endpoints of e2a's reference, by their schemas.
    paths = document["paths"]
    ok = paths["/api/v1/users/me/export"]["get"]["responses"]["200"]
    assert ok["content"]["application/json"]["schema"] == opdoc.ref("UserExport")
    created = paths["/api/v1/users/me/signing-secrets"]["post"]["responses"]["201"]
    assert created["content"]["application/json"]["schema"] == opdoc.ref(
        "CreateSigningSecretResponse")


def test_operations_share_security_and_error_shapes(app):
    document = openapi.build(app)
    assert set(document["components"]["schemas"]) >= {
        "UserExport", "DeleteUserDataResult", "LimitsInfo", "SigningSecretSummary",
        "CreateSigningSecretResponse", "Agent", "Domain", "MessageSummary", "ErrorResponse"}
    public = {r.template for r in openapi.routes(app) if getattr(r.resource, "public", False)}
    assert {"/api/health", "/api/v1/info", "/api/openapi.json"} <= public
    for path, item in document["paths"].items():
        for method, op in item.items():
            where = f"{method.upper()} {path}"
            # Success is a 2xx, or 101 for the WebSocket's upgrade.
            assert any(s.startswith("2") or s == "101" for s in op["responses"]), where
            if path in public:
                assert op["security"] == [], where
            else:
                assert "security" not in op, where  # the document's bearerAuth applies
                assert "401" in op["responses"], where
            for status, response in op["responses"].items():
                if status[0] in "45":  # our error envelope, or a page for a person
                    content = response["content"]
                    assert (content.get("application/json") or content["text/html"])[
                        "schema"], where
                if status == "429":
                    assert "Retry-After" in response["headers"], where


# -- check() on apps made to be wrong ------------------------------------


def op(operation_id, responses, **extra):
    return {"operationId": operation_id, "summary": operation_id, "responses": responses,
            **extra}



class Documented:
    doc = {"get": op("getThing", {"200": opdoc.ok("Agent")},
                     parameters=[opdoc.path_param("id", "its id")])}

    def on_get(self, req: falcon.Request, resp: falcon.Response, id: str) -> None:
        resp.media = {}


class Undocumented:
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = {}


class OverDocumented:
    doc = {"get": op("getOver", {"200": {"description": "OK"}}),
           "post": op("postOver", {"200": {"description": "OK"}})}

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = {}


class BadRef:
    doc = {"get": op("getBad", {"200": opdoc.ok("NoSuchSchema")})}

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = {}


def app_with(*routes: tuple[str, object]) -> falcon.App:
    app = falcon.App()
    for template, resource in routes:
        app.add_route(template, resource)
    return app


class Limited:
    doc = {"get": op("getLimited", {"200": opdoc.ok("Agent"), "404": opdoc.error("None"),
                                    "429": opdoc.error("Too many")})}

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = {}


def test_errors_get_the_envelope_unless_documented_otherwise():
    document = openapi.build(app_with(("/limited", Limited()), ("/api/health", Health(None))))
    responses = document["paths"]["/limited"]["get"]["responses"]
    for status in ("404", "429"):
        assert responses[status]["content"]["application/json"]["schema"] == opdoc.ref(
            "ErrorResponse")
    assert set(responses["429"]["headers"]) == {"Retry-After"}
    assert "headers" not in responses["404"]
    health = document["paths"]["/api/health"]["get"]["responses"]["503"]
    assert health["content"]["application/json"]["schema"]["properties"] == {
        "status": {"type": "string"}}
    assert document["paths"]["/api/health"]["get"]["security"] == []


def test_check_passes_a_documented_route_with_a_converter():
    app = app_with(("/things/{id:int}", Documented()))
    assert openapi.check(app) == []
    assert list(openapi.build(app)["paths"]) == ["/things/{id}"]


@pytest.mark.parametrize("routes,expected", [
    ([("/plain", Undocumented())], "GET /plain: Undocumented has no doc['get']"),
    ([("/over", OverDocumented())], "POST /over: OverDocumented.doc documents a method"),
    ([("/bad", BadRef())], "$ref #/components/schemas/NoSuchSchema names no schema"),
    ([("/things/{name}", Documented())], "GET /things/{name}: path parameters ['id'] differ"),
    ([("/a/{id}", Documented()), ("/b/{id}", Documented())], "operationId 'getThing' used"),
])
def test_check_names_each_disagreement(routes, expected):
    problems = openapi.check(app_with(*routes))
    assert any(p.startswith(expected) for p in problems), problems


def test_undocumented_route_is_left_out_of_the_document_but_reported():
    app = app_with(("/plain", Undocumented()), ("/things/{id}", Documented()))
    assert list(openapi.build(app)["paths"]) == ["/things/{id}"]
    assert openapi.check(app)
