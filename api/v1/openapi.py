"""The /v1 OpenAPI document, generated from the route table (api/v1/routes.py):
a path or method is in it exactly when the table serves it. (The table's
rows are taken as they come, so this module needs nothing of routes.py.)"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import falcon

OPENAPI_VERSION = "3.1.0"
_PARAM = re.compile(r"{([A-Za-z_][A-Za-z0-9_]*)}")
_ERROR = {"$ref": "#/components/schemas/ErrorEnvelope"}


def _operation(route: Any, op: Any) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "operationId": op.operation_id,
        "summary": op.summary,
        "parameters": [{"name": name, "in": "path", "required": True,
                        "schema": {"type": "string"}}
                       for name in _PARAM.findall(route.template)],
        "responses": {
            str(op.status): {"description": "Success", "content": {"application/json": {
                "schema": {"$ref": f"#/components/schemas/{op.view}"} if op.view
                else {"type": "object"}}}},
            "default": {"description": "Error envelope",
                        "content": {"application/json": {"schema": _ERROR}}},
        },
    }
    if op.scope == "public":
        operation["security"] = []
    else:
        operation["x-e2a-scope"] = op.scope
    return operation


def document(routes: Iterable[Any], server: str) -> dict[str, Any]:
    routes = list(routes)
    paths: dict[str, Any] = {}
    views: set[str] = set()
    for route in routes:
        for op in route.ops:
            paths.setdefault(route.template, {})[op.method.lower()] = _operation(route, op)
            if op.view:
                views.add(op.view)
    schemas: dict[str, Any] = {name: {"type": "object"} for name in sorted(views)}
    schemas["ErrorEnvelope"] = {
        "type": "object", "required": ["error"],
        "properties": {"error": {"type": "object", "required": ["code", "message",
                                                                "request_id"],
                                 "properties": {"code": {"type": "string"},
                                                "message": {"type": "string"},
                                                "request_id": {"type": "string"},
                                                "details": {"type": "object"}}}}}
    return {
        "openapi": OPENAPI_VERSION,
        "info": {"title": "e2a-postfix /v1", "version": "1.0.0"},
        "servers": [{"url": server}] if server else [],
        "components": {"schemas": schemas, "securitySchemes": {
            "bearer": {"type": "http", "scheme": "bearer"}}},
        "security": [{"bearer": []}],
        "paths": paths,
    }


class Document:
    """``GET /v1/openapi.json``."""

    public = True

    def __init__(self, routes: Iterable[Any], server: str) -> None:
        self._doc = document(routes, server)

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = self._doc
