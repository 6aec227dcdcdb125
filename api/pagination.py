"""Opaque, signed ``next_token`` cursors for keyset pagination.

A cursor holds the (created_at, id) of the last row served and the *scope* of
the listing: every input that decides which rows belong to it (the agent, each
filter, the sort order). A token only continues the listing it came from; a
forged one, or one replayed with other filters, is a 400. A listing gains a
filter by adding it to its scope dict, nothing more.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from e2a.api import errors
from e2a.core import tokens

PURPOSE = "cursor"
VERSION = 1

Position = tuple[datetime, str]  # (created_at, id) of the last row served


def _canonical(scope: Any) -> str:
    # Scope values are JSON values (str, int, bool, None, lists): compare them
    # as they travel, so a tuple and a list of the same items agree.
    return json.dumps(scope, sort_keys=True, separators=(",", ":"))


def encode(secret: str, scope: Mapping[str, Any], after: Position) -> str:
    created_at, row_id = after
    # Full microseconds: the second-precision wire format would skip or repeat
    # rows that share a second.
    return tokens.sign_json(secret, PURPOSE, {
        "v": VERSION, "scope": dict(scope), "after": [created_at.isoformat(), row_id]})


class CursorRefused(ValueError):
    """A token that is not ours (``foreign`` False) or continues another listing."""

    def __init__(self, message: str, *, foreign: bool) -> None:
        super().__init__(message)
        self.foreign = foreign


def open_token(secret: str, scope: Mapping[str, Any], token: str) -> Position:
    """The position a token continues after; CursorRefused otherwise. Each API
    generation words the refusal its own way."""
    try:
        data = tokens.verify_json(secret, PURPOSE, token)
    except tokens.TokenError:
        raise CursorRefused("invalid pagination token", foreign=False) from None
    if data.get("v") != VERSION:
        raise CursorRefused("invalid pagination token", foreign=False)
    if _canonical(data.get("scope")) != _canonical(dict(scope)):
        raise CursorRefused(
            "pagination token was issued for other filters; keep the same filters "
            "or start again without a token", foreign=True)
    try:
        created_at, row_id = data["after"]
        return datetime.fromisoformat(created_at), str(row_id)
    except (KeyError, TypeError, ValueError):
        raise CursorRefused("invalid pagination token", foreign=False) from None


def decode(secret: str, scope: Mapping[str, Any], token: str) -> Position:
    """The position to continue after; 400 when the token is not one of ours
    or belongs to a listing with another scope."""
    try:
        return open_token(secret, scope, token)
    except CursorRefused as exc:
        raise errors.bad_request(str(exc), param="token") from None
