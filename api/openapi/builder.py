"""The OpenAPI 3 document of the app, built from the app itself.

Each resource class carries ``doc``: lowercase HTTP method -> operation object
(written with api/openapi/parts.py). The document's paths are the app's routes,
walked from Falcon's router, so a route cannot be missing from it and it
cannot show a route the app lacks; ``check`` names every remaining way the two
could disagree (a responder without ``doc``, ``doc`` for a method the resource
does not answer, path parameters that differ from the route's, a ``$ref`` to
no schema). The schemas are e2a's, in api/openapi/legacy/schemas.py.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import falcon

from e2a.api.openapi import parts as opdoc
from e2a.api.openapi.legacy import schemas
from e2a.api.openapi.legacy.operations import OPERATIONS as LEGACY

OPENAPI_VERSION = "3.0.3"
_FIELD = re.compile(r"{([A-Za-z_][A-Za-z0-9_]*)(?::[^}]*)?}")
_REF_PREFIX = "#/components/schemas/"

Operation = dict[str, Any]
Operations = Mapping[str, Mapping[str, Operation]]
_RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait before trying again",
                                "schema": {"type": "integer"}}}


@dataclass(frozen=True)
class Route:
    template: str  # as OpenAPI writes it: converters dropped
    resource: object
    methods: tuple[str, ...]  # uppercase, those the resource itself answers

    @property
    def params(self) -> tuple[str, ...]:
        return tuple(_FIELD.findall(self.template))


def _own_responder(resource: object, responder: Any) -> bool:
    """True for the resource's on_<method>; False for Falcon's defaults
    (OPTIONS, 405)."""
    if isinstance(responder, functools.partial):
        responder = responder.func
    return getattr(responder, "__self__", None) is resource


def routes(app: falcon.App) -> list[Route]:
    """The legacy generation's routes: this document's. The /v1 routes have
    their own table and document (api/v1/routes.py, api/v1/openapi.py); the
    dashboard's are pages for people, no API (api/dashboard/)."""
    return [r for r in all_routes(app)
            if not any(r.template == p or r.template.startswith(p + "/")
                       for p in ("/v1", "/dashboard"))]


def all_routes(app: falcon.App) -> list[Route]:
    """Every route of the app, in template order. Walks Falcon's compiled
    router as falcon.inspect does (its RouteInfo has no resource object)."""
    found: list[Route] = []

    def walk(nodes: list[Any]) -> None:
        for node in nodes:
            if node.resource is not None:
                methods = tuple(sorted(
                    method for method, responder in (node.method_map or {}).items()
                    if _own_responder(node.resource, responder)))
                template = _FIELD.sub(r"{\1}", node.uri_template)
                found.append(Route(template, node.resource, methods))
            walk(node.children)

    walk(app._router._roots)
    return sorted(found, key=lambda r: r.template)


def _declared_path_params(op: Operation) -> set[str]:
    return {p["name"] for p in op.get("parameters", []) if p.get("in") == "path"}


def _refs(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "$ref" and isinstance(item, str):
                yield item
            else:
                yield from _refs(item)
    elif isinstance(value, list):
        for item in value:
            yield from _refs(item)


def _doc(resource: object, operations: Operations | None) -> Mapping[str, Operation]:
    """The operations of one resource: its generation's table entry, else the
    ``doc`` it carries itself (tests make such resources)."""
    table = LEGACY if operations is None else operations
    name = type(resource).__name__
    if name in table:
        return table[name]
    return getattr(resource, "doc", None) or {}


def check(app: falcon.App, operations: Operations | None = None) -> list[str]:
    """Everything in which the app and its documentation disagree; [] when none."""
    problems: list[str] = []
    for route in routes(app):
        doc = _doc(route.resource, operations)
        name = type(route.resource).__name__
        answered = {m.lower() for m in route.methods}
        for method in sorted(answered - set(doc)):
            problems.append(f"{method.upper()} {route.template}: {name} has no doc[{method!r}]")
        for method in sorted(set(doc) - answered):
            problems.append(f"{method.upper()} {route.template}: {name}.doc documents a "
                            "method it does not answer")
        for method in sorted(answered & set(doc)):
            op = doc[method]
            for key in ("operationId", "summary", "responses"):
                if not op.get(key):
                    problems.append(f"{method.upper()} {route.template}: no {key}")
            declared = _declared_path_params(op)
            if declared != set(route.params):
                problems.append(f"{method.upper()} {route.template}: path parameters "
                                f"{sorted(declared)} differ from the route's "
                                f"{sorted(route.params)}")
    document = build(app, operations)
    ids = [op["operationId"] for item in document["paths"].values() for op in item.values()]
    problems += [f"operationId {i!r} used twice" for i in sorted({i for i in ids
                                                                   if ids.count(i) > 1})]
    for target in sorted(set(_refs(document))):
        if not (target.startswith(_REF_PREFIX)
                and target[len(_REF_PREFIX):] in document["components"]["schemas"]):
            problems.append(f"$ref {target} names no schema")
    return problems


def _completed(op: Operation, public: bool) -> Operation:
    """What every operation shares, filled in here rather than in each doc:
    the error envelope, Retry-After on 429, 413 where a JSON body is taken
    (api/middleware.RequestShape), no security on public routes."""
    given = dict(op.get("responses", {}))
    if opdoc.JSON in op.get("requestBody", {}).get("content", {}):
        given.setdefault("413", opdoc.error("The request body is over the size limit "
                                            "(refused before it is read)"))
    responses = {}
    for status, response in given.items():
        response = dict(response)
        if str(status)[0] in "45" and "content" not in response:
            response["content"] = {opdoc.JSON: {"schema": opdoc.ref(schemas.ERROR)}}
        if str(status) == "429":
            response["headers"] = {**_RETRY_AFTER, **response.get("headers", {})}
        responses[str(status)] = response
    op = {**op, "responses": responses}
    if public:
        op["security"] = []
    return op


def build(app: falcon.App, operations: Operations | None = None, *,
          server_url: str = "") -> dict[str, Any]:
    paths: dict[str, dict[str, Operation]] = {}
    for route in routes(app):
        doc = _doc(route.resource, operations)
        public = getattr(route.resource, "public", False)
        item: dict[str, Operation] = {}
        for method in route.methods:
            op = doc.get(method.lower())
            if op is not None:
                item[method.lower()] = _completed(op, public)
        if item:
            paths[route.template] = item
    document: dict[str, Any] = {
        "openapi": OPENAPI_VERSION,
        "info": {"title": "e2a-postfix API", "version": "1",
                 "description": "e2a's v1 REST API, served by e2a-postfix."},
        "paths": paths,
        "components": {
            "schemas": schemas.COMPONENTS,
            "securitySchemes": {"bearerAuth": {
                "type": "http", "scheme": "bearer",
                "description": "An API key: Authorization: Bearer e2a_<64 hex>"}},
        },
        "security": [{"bearerAuth": []}],
    }
    if server_url:
        document["servers"] = [{"url": server_url}]
    return document
