"""The /v1 error envelope ``{"error": {code, message, request_id, details}}``
with e2a's current code vocabulary, for every error under ``/v1`` (router
404/405, Falcon's own errors, ours, crashes). Installed over the legacy
handlers: a request outside ``/v1`` is answered by those, unchanged."""

from __future__ import annotations

import logging
from typing import Any

import falcon
import psycopg

from e2a.api import errors as legacy
from e2a.api.errors import ApiError

log = logging.getLogger("e2a.api")

PREFIX = "/v1"

# A status of Falcon's own, or a legacy code that shared code raised, in the
# current vocabulary (reference/e2a-v1-current.md §1.4).
_BY_STATUS = {400: "invalid_request", 401: "unauthorized", 402: "limit_exceeded",
              403: "forbidden", 404: "not_found", 405: "method_not_allowed", 409: "conflict",
              410: "gone", 412: "precondition_failed", 413: "payload_too_large",
              415: "unsupported_media_type", 422: "invalid_request", 429: "rate_limited",
              501: "not_implemented"}
_RENAMED = {"invalid_json": "invalid_request", "unprocessable": "invalid_request",
            "unavailable": "internal_error",
            "idempotency_key_reused": "idempotency_key_reuse",
            "idempotency_key_in_progress": "idempotency_in_flight",
            # An approval Postfix did not take (the hold stays).
            "release_refused": "invalid_request", "release_unavailable": "internal_error"}


def is_v1(req: falcon.Request) -> bool:
    return req.path == PREFIX or req.path.startswith(PREFIX + "/")


def invalid(location: str, message: str, *, status: int = 400) -> ApiError:
    """``invalid_request`` naming the input at fault, as ``body.x``,
    ``query.limit`` or ``path.id``."""
    return ApiError(status, "invalid_request", f"{location}: {message}",
                    details={"fields": [{"location": location, "message": message}]})


def error(status: int, code: str, message: str, **details: Any) -> ApiError:
    return ApiError(status, code, message, details=details)


def not_found(message: str) -> ApiError:
    return ApiError(404, "not_found", message)


def _fields(req: falcon.Request, message: str, details: dict[str, Any]) -> dict[str, Any]:
    """A legacy ``{"param": name}`` detail becomes ``{"fields": [...]}``."""
    if "fields" in details:
        return details
    param = str(details.get("param", ""))
    if not param:
        location = "body"
    elif param in req.params:
        location = f"query.{param}"
    else:
        location = f"body.{param}"
    return {"fields": [{"location": location, "message": message}]}


def _render(req: falcon.Request, resp: falcon.Response, status: int, code: str,
            message: str, details: dict[str, Any] | None) -> None:
    resp.status = falcon.code_to_http_status(status)
    body: dict[str, Any] = {"code": code, "message": message,
                            "request_id": getattr(req.context, "request_id", "")}
    if details:
        body["details"] = details
    resp.media = {"error": body}


def handle_http_error(req: falcon.Request, resp: falcon.Response, ex: falcon.HTTPError,
                      params: dict[str, Any]) -> None:
    if not is_v1(req):
        legacy.handle_http_error(req, resp, ex, params)
        return
    status = falcon.http_status_to_code(ex.status)
    own = getattr(ex, "api_code", None)
    code = _RENAMED.get(own or "", own) or _BY_STATUS.get(
        status, "internal_error" if status >= 500 else "error")
    message = legacy.message_of(req, ex, status)
    details = dict(getattr(ex, "details", None) or {})
    if code == "invalid_request":
        details = _fields(req, message, details)
    _render(req, resp, status, code, message, details)
    if ex.headers:
        resp.set_headers(ex.headers)


def handle_database_down(req: falcon.Request, resp: falcon.Response, ex: Exception,
                         params: dict[str, Any]) -> None:
    if not is_v1(req):
        legacy.handle_database_down(req, resp, ex, params)
        return
    log.warning("database unavailable: %s", type(ex).__name__,
                extra={"request_id": getattr(req.context, "request_id", "")})
    _render(req, resp, 503, "internal_error", "the database is unavailable, retry later",
            {"retry_after_seconds": 5})
    resp.set_header("Retry-After", "5")


def handle_unexpected(req: falcon.Request, resp: falcon.Response, ex: Exception,
                      params: dict[str, Any]) -> None:
    if not is_v1(req):
        legacy.handle_unexpected(req, resp, ex, params)
        return
    log.error("unhandled error on %s %s", req.method, req.path, exc_info=ex,
              extra={"request_id": getattr(req.context, "request_id", "")})
    _render(req, resp, 500, "internal_error", "internal error", None)


def handle_bad_value(req: falcon.Request, resp: falcon.Response, ex: Exception,
                     params: dict[str, Any]) -> None:
    if not is_v1(req):
        legacy.handle_bad_value(req, resp, ex, params)
        return
    _render(req, resp, 400, "invalid_request", "a value in the request is out of range", None)


def install(app: falcon.App) -> None:
    """Replaces the legacy handlers (same exception types), delegating to them
    outside /v1."""
    app.add_error_handler(Exception, handle_unexpected)
    app.add_error_handler(falcon.HTTPError, handle_http_error)
    app.add_error_handler(psycopg.OperationalError, handle_database_down)
    app.add_error_handler(psycopg.DataError, handle_bad_value)
