"""Query parameters as the 5.x SDK sends them: ``limit``/``cursor``,
booleans as true/false, CSV lists, and datetimes either in RFC 3339 or in
the SDK's own ``%Y-%m-%dT%H:%M:%S.%f%z`` form (a colon-less offset such as
``+0000``, or none when the caller passed a naive datetime: UTC then)."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import falcon

from e2a.api.v1.errors import invalid

DEFAULT_LIMIT = 100
MAX_LIMIT = 100
# A colon-less numeric offset at the end: +0000, -0530.
_BARE_OFFSET = re.compile(r"([+-])(\d{2})(\d{2})$")


def limit(req: falcon.Request, default: int = DEFAULT_LIMIT) -> int:
    raw = req.get_param("limit")
    if raw is None or raw == "":
        return default
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
        raise invalid("query.limit", f"must be an integer from 1 to {MAX_LIMIT}")
    return int(raw)


def choice(req: falcon.Request, name: str, allowed: tuple[str, ...], default: str) -> str:
    value = req.get_param(name)
    if value is None or value == "":
        return default
    if value not in allowed:
        raise invalid(f"query.{name}", f"must be one of {', '.join(allowed)}")
    return value


def boolean(req: falcon.Request, name: str) -> bool:
    return choice(req, name, ("true", "false"), "false") == "true"


def text(req: falcon.Request, name: str, *, max_length: int) -> str:
    value = req.get_param(name) or ""
    if len(value) > max_length:
        raise invalid(f"query.{name}", f"at most {max_length} characters")
    return value


def csv(req: falcon.Request, name: str) -> list[str]:
    found = req.get_param_as_list(name) or []
    return [item.strip() for value in found for item in value.split(",") if item.strip()]


def parse_datetime(value: str) -> datetime:
    """RFC 3339, ISO 8601 with a colon-less offset, or naive (taken as UTC);
    ValueError otherwise."""
    value = value.strip().replace(" ", "+")  # a '+' the client left unencoded
    if value[-1:] in "Zz":
        value = value[:-1] + "+00:00"
    value = _BARE_OFFSET.sub(r"\1\2:\3", value) if "T" in value else value
    moment = datetime.fromisoformat(value)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def timestamp(req: falcon.Request, name: str) -> datetime | None:
    raw = req.get_param(name)
    if not raw:
        return None
    try:
        return parse_datetime(raw)
    except (ValueError, OverflowError):
        raise invalid(f"query.{name}", "must be a date-time such as "
                      "2026-07-01T10:00:00Z") from None
