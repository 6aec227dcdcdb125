"""Refusals /v1 makes before authentication: NUL characters and invalid
UTF-8 anywhere in the request (path, query, headers, JSON body keys and
values) are ``400 invalid_request`` naming where, so a bad path parameter is
a 400, never a 404 or a 401."""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote_to_bytes

import falcon

from e2a.api.v1.errors import invalid, is_v1


def _bad(raw: bytes) -> str | None:
    """What is wrong with these bytes, or None."""
    if b"\x00" in raw:
        return "NUL characters are not allowed"
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return "invalid UTF-8"
    return None


def _wire(value: str) -> bytes:
    # WSGI carries bytes as latin-1 code points.
    return value.encode("latin-1", "replace")


class Text:
    """Path, query and headers: placed before the legacy shape check, so
    /v1 words these refusals its own way."""

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        if not is_v1(req):
            return
        # The path as sent (gunicorn and falcon.testing keep it in RAW_URI):
        # PATH_INFO arrives decoded, with bad bytes already replaced.
        raw_uri = req.env.get("RAW_URI") or req.env.get("REQUEST_URI")
        sent = (unquote_to_bytes(_wire(raw_uri).split(b"?", 1)[0]) if raw_uri
                else _wire(req.env.get("PATH_INFO", "")))
        problem = _bad(sent)
        if problem:
            raise invalid("path", problem)
        for pair in req.env.get("QUERY_STRING", "").split("&"):
            name, _, value = pair.partition("=")
            raw_name = unquote_to_bytes(name.replace("+", " "))
            problem = _bad(raw_name) or _bad(unquote_to_bytes(value.replace("+", " ")))
            if problem:
                where = raw_name.decode("utf-8", "replace").replace("\x00", "")
                raise invalid(f"query.{where}", problem)
        for key, value in req.env.items():
            if key.startswith("HTTP_") and isinstance(value, str):
                problem = _bad(_wire(value))
                if problem:
                    raise invalid("header." + key[5:].lower().replace("_", "-"), problem)



class Body:
    """Placed after the size check (api/middleware.RequestShape: nothing
    oversized is read) and before authentication."""

    def process_resource(self, req: falcon.Request, resp: falcon.Response,
                         resource: object, params: dict[str, Any]) -> None:
        """A JSON body is read here, once (Falcon keeps the parsed value for
        the resource): its NULs and bad bytes are refused before the key is
        looked at."""
        if resource is None or not is_v1(req):
            return
        if not (req.content_length or req.get_header("Transfer-Encoding")):
            return
        if (req.content_type or "").split(";")[0].strip().lower() not in (
                "", falcon.MEDIA_JSON):
            return
        req.get_media(default_when_empty=None)
