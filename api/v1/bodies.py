"""Strict request bodies: /v1 request schemas are closed, so a field the
operation does not know is ``422 invalid_request`` naming it, and a field of
the wrong type or length a 400 naming it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import falcon

from e2a.api.errors import ApiError
from e2a.api.v1.errors import invalid


@dataclass(frozen=True)
class Field:
    kind: type | tuple[type, ...]
    required: bool = False
    max_length: int | None = None  # strings: code points; lists: items
    nullable: bool = False


def read(req: falcon.Request, schema: dict[str, Field], *,
         body_required: bool = False) -> dict[str, Any]:
    """The body's fields, checked against ``schema``; absent ones left out
    (and an explicit null, where the field allows it, kept as None)."""
    body = req.get_media(default_when_empty=None)
    if body is None:
        if body_required:
            raise invalid("body", "a JSON object is required")
        body = {}
    if not isinstance(body, dict):
        raise invalid("body", "must be a JSON object")
    unknown = sorted(set(body) - set(schema))
    if unknown:
        raise unknown_fields(unknown)
    out: dict[str, Any] = {}
    for name, spec in schema.items():
        if name not in body:
            if spec.required:
                raise invalid(f"body.{name}", "is required")
            continue
        value = body[name]
        if value is None:
            if spec.nullable:
                out[name] = None
            elif spec.required:
                raise invalid(f"body.{name}", "must not be null")
            # Otherwise a null is "not given", as for the SDK's unset fields.
            continue
        if isinstance(value, bool) and spec.kind is not bool:
            raise invalid(f"body.{name}", "has the wrong type")
        if not isinstance(value, spec.kind):
            raise invalid(f"body.{name}", "has the wrong type")
        if spec.max_length is not None and len(value) > spec.max_length:
            raise invalid(f"body.{name}", f"at most {spec.max_length} "
                          f"{'items' if isinstance(value, list) else 'characters'}")
        out[name] = value
    return out


def unknown_fields(unknown: list[str]) -> ApiError:
    fields = [{"location": f"body.{name}", "message": "unknown field"} for name in unknown]
    return ApiError(422, "invalid_request", f"unknown field(s): {', '.join(unknown)}",
                    details={"fields": fields})


def no_body(req: falcon.Request) -> None:
    """Operations that take no body accept an empty one or ``{}``."""
    body = req.get_media(default_when_empty=None)
    if body not in (None, {}):
        raise unknown_fields(sorted(body) if isinstance(body, dict) else ["body"])
