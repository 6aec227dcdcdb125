"""The one reader of request bodies (JSON, and the magic links' HTML form),
installed as the app's media handlers: whatever a resource gets from
``req.get_media()`` has passed these checks, so no resource repeats them.

- JSON nested deeper than MAX_DEPTH is a 400. Without the limit, deep
  nesting ends in a RecursionError (a 500) inside json.loads, or later in
  whatever walks the value (json.dumps of an idempotent request, psycopg).
- NaN and Infinity, which Python's json module reads but JSON has not,
  are malformed JSON (400).
- A NUL character in any string or key is a 400: PostgreSQL text cannot
  hold one, so it would otherwise surface as a psycopg DataError (a 500)
  at the first INSERT, after part of the work was done.
"""

from __future__ import annotations

import json
from typing import Any

import falcon
import falcon.media

from e2a.api import errors

# Containers inside containers. Our bodies are two or three deep (a send's
# attachments); 32 leaves room for any client's shape.
MAX_DEPTH = 32


def _too_deep() -> errors.ApiError:
    return errors.ApiError(400, "invalid_json",
                           f"JSON nested deeper than {MAX_DEPTH} levels")


def _nul_in(where: str) -> errors.ApiError:
    return errors.ApiError(400, "invalid_request",
                           f"NUL characters are not allowed ({where or 'body'})",
                           details={"param": where} if where else {})


def check(value: Any) -> None:
    """Raise a 400 for a value nested deeper than MAX_DEPTH or holding a NUL.

    Iterative: the walk itself must not recurse on what it is bounding."""
    stack: list[tuple[Any, str, int]] = [(value, "", 0)]
    while stack:
        item, where, depth = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                raise _nul_in(where)
        elif isinstance(item, dict):
            if depth >= MAX_DEPTH:
                raise _too_deep()
            for key, child in item.items():
                if "\x00" in key:
                    raise _nul_in(where)
                stack.append((child, f"{where}.{key}" if where else key, depth + 1))
        elif isinstance(item, list):
            if depth >= MAX_DEPTH:
                raise _too_deep()
            stack.extend((child, f"{where}[{n}]", depth + 1) for n, child in enumerate(item))


def _not_json(name: str) -> Any:
    # Python reads NaN and Infinity; JSON (and PostgreSQL's jsonb) has no such thing.
    raise ValueError(f"{name} is not JSON")


class JsonBody(falcon.media.JSONHandler):
    def deserialize(self, stream: Any, content_type: str | None,
                    content_length: int | None) -> Any:
        data = stream.read()
        if not data:
            raise falcon.MediaNotFoundError("JSON")
        try:
            value = json.loads(data, parse_constant=_not_json)
        except RecursionError:
            raise _too_deep() from None
        except ValueError as exc:  # UnicodeDecodeError included
            raise falcon.MediaMalformedError("JSON") from exc
        check(value)
        return value


class FormBody(falcon.media.URLEncodedFormHandler):
    def deserialize(self, stream: Any, content_type: str | None,
                    content_length: int | None) -> Any:
        value = super().deserialize(stream, content_type, content_length)
        check(value)
        return value


def install(app: falcon.App) -> None:
    handlers = {falcon.MEDIA_JSON: JsonBody(),
                falcon.MEDIA_URLENCODED: FormBody()}
    app.req_options.media_handlers.update(handlers)
