"""Building blocks of the OpenAPI operation objects that resources carry in
their ``doc`` attribute (one place for the shapes, so every operation spells a
parameter or a response the same way)."""

from __future__ import annotations

from typing import Any

JSON = "application/json"


def ref(schema: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{schema}"}


def path_param(name: str, description: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "description": description,
            "schema": {"type": "string"}}


def query_param(name: str, description: str, schema: dict[str, Any] | None = None,
                **extra: Any) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "description": description,
            "schema": schema or {"type": "string"}, **extra}


def header_param(name: str, description: str) -> dict[str, Any]:
    return {"name": name, "in": "header", "required": False, "description": description,
            "schema": {"type": "string"}}


def body(schema: str, description: str) -> dict[str, Any]:
    return {"required": True, "description": description,
            "content": {JSON: {"schema": ref(schema)}}}


def ok(schema: str, description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": ref(schema)}}}


def error(description: str) -> dict[str, Any]:
    """Errors share one JSON shape (api/errors.py); the text says when this one occurs."""
    return {"description": description}


AGENT_EMAIL = path_param("email", "Agent email address (URL-encoded: %40 for @)")
UNAUTHORIZED = error("Missing or invalid API key")
