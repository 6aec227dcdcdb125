"""What a request carries, checked: query parameters and JSON bodies.

Anything malformed is a 400 whose ``details.param`` names the input at fault,
so a client can tell which of its values to fix.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import falcon

from e2a.api import errors
from e2a.core.timefmt import parse_rfc3339


def choice(req: falcon.Request, name: str, allowed: tuple[str, ...], default: str) -> str:
    value = req.get_param(name) or default
    if value not in allowed:
        raise errors.bad_request(f"{name} must be one of {', '.join(allowed)}", param=name)
    return value


def page_size(req: falcon.Request, *, default: int, maximum: int) -> int:
    raw = req.get_param("page_size")
    if raw is None or raw == "":
        return default
    if not raw.isdigit() or int(raw) < 1:
        raise errors.bad_request(f"page_size must be an integer from 1 to {maximum}",
                                 param="page_size")
    # Larger asks get the largest page (and a next_token where there is one),
    # not an error.
    return min(int(raw), maximum)


def text(req: falcon.Request, name: str, *, max_length: int) -> str:
    """A free-text parameter; "" when absent."""
    value = req.get_param(name) or ""
    if len(value) > max_length:
        raise errors.bad_request(f"{name} is at most {max_length} characters", param=name)
    return value


def timestamp(req: falcon.Request, name: str) -> datetime | None:
    """An RFC 3339 timestamp with a zone (``Z`` or an offset), in UTC; None when absent."""
    raw = req.get_param(name)
    if not raw:
        return None
    try:
        return parse_rfc3339(raw)
    except ValueError:
        raise errors.bad_request(
            f"{name} must be an RFC 3339 timestamp such as 2026-06-01T12:00:00Z",
            param=name) from None


def string_list(req: falcon.Request, name: str) -> list[str]:
    """Values given as ``name=a,b``, as ``name=a&name=b``, or both; blanks dropped.

    Split here rather than by Falcon's ``auto_parse_qs_csv``, so the
    parameter reads the same whatever the app's query-string options."""
    found = req.get_param_as_list(name) or []
    return [item.strip() for value in found for item in value.split(",") if item.strip()]


def json_object(req: falcon.Request) -> dict[str, Any]:
    """The JSON object in the body; an empty body is an empty object. Malformed
    JSON is answered by errors.py (400 invalid_json)."""
    body = req.get_media(default_when_empty={})
    if not isinstance(body, dict):
        raise errors.bad_request("the request body must be a JSON object")
    return body
