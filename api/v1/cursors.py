"""``{items, next_cursor}`` pages with signed cursors (api/pagination.py's
tokens): a cursor is bound to the caller's account, the collection, its
parent path and every filter. Replayed anywhere else it is ``400
invalid_cursor``; bytes that are no cursor of ours are ``400
invalid_request``."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

import falcon

from e2a.api import pagination
from e2a.api.errors import ApiError
from e2a.api.v1.errors import invalid

Position = pagination.Position


def scope(req: falcon.Request, collection: str, **filters: Any) -> dict[str, Any]:
    return {"api": "v1", "user": req.context.principal.user_id, "collection": collection,
            **filters}


def position(req: falcon.Request, secret: str, bound: Mapping[str, Any]) -> Position | None:
    token = req.get_param("cursor")
    if not token:
        return None
    try:
        return pagination.open_token(secret, bound, token)
    except pagination.CursorRefused as exc:
        if exc.foreign:
            raise ApiError(400, "invalid_cursor", "the cursor belongs to another listing; "
                           "keep the same filters or start again without one",
                           details={"fields": [{"location": "query.cursor",
                                                "message": "foreign cursor"}]}) from None
        raise invalid("query.cursor", "not a cursor of this server") from None


def page(rows: list[dict[str, Any]], limit: int, secret: str, bound: Mapping[str, Any],
         view: Callable[[dict[str, Any]], dict[str, Any]],
         key: Callable[[dict[str, Any]], tuple[datetime, str]]) -> dict[str, Any]:
    """``rows`` fetched with one more than ``limit``: the extra one says that
    another page exists."""
    shown = rows[:limit]
    next_cursor = None
    if len(rows) > limit:
        next_cursor = pagination.encode(secret, bound, key(shown[-1]))
    return {"items": [view(r) for r in shown], "next_cursor": next_cursor}


def page_whole(rows: list[dict[str, Any]], limit: int, after: Position | None, secret: str,
               bound: Mapping[str, Any],
               view: Callable[[dict[str, Any]], dict[str, Any]]) -> dict[str, Any]:
    """A listing short enough to read whole (an account's keys, its
    domains), paged here: newest first by (created_at, id)."""
    def key(row: dict[str, Any]) -> tuple[datetime, str]:
        return (row["created_at"], row["id"])

    ordered = sorted(rows, key=key, reverse=True)
    if after:
        ordered = [r for r in ordered if key(r) < after]
    return page(ordered[:limit + 1], limit, secret, bound, view, key)
