"""/v1/openapi.json is generated from the /v1 route table and covers every
/v1 route the app serves, method for method; /api/openapi.json stays the
legacy document."""

from __future__ import annotations

import pytest
from apisupport import api_client

from e2a.api import openapi as legacy_openapi
from e2a.api.v1.routes import ROUTES, UNDOCUMENTED


@pytest.fixture(scope="module")
def client(cfg):
    with api_client(cfg) as test_client:
        yield test_client


def test_every_v1_route_is_documented(client):
    # The magic links' HTML pages and the WebSocket are served but are no
    # JSON operations.
    served = {(r.template, m.lower()) for r in legacy_openapi.all_routes(client.app)
              if r.template.startswith("/v1/") and r.template not in UNDOCUMENTED
              for m in r.methods}
    document = client.simulate_get("/v1/openapi.json").json
    documented = {(path, method) for path, item in document["paths"].items()
                  for method in item}
    assert served == documented
    assert document["openapi"].startswith("3.")


def test_operation_ids_are_unique_and_match_the_table(client):
    document = client.simulate_get("/v1/openapi.json").json
    ids = [op["operationId"] for item in document["paths"].values() for op in item.values()]
    assert len(ids) == len(set(ids))
    assert sorted(ids) == sorted(op.operation_id for r in ROUTES for op in r.ops)


def test_public_operations_need_no_key(client):
    document = client.simulate_get("/v1/openapi.json").json
    assert document["paths"]["/v1/info"]["get"]["security"] == []
    assert "security" not in document["paths"]["/v1/account"]["get"]


def test_the_legacy_document_has_no_v1_paths(client):
    legacy = client.simulate_get("/api/openapi.json").json
    assert legacy["paths"]
    assert not [p for p in legacy["paths"] if p.startswith("/v1/")]
