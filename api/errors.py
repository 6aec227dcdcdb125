"""Every error leaves as ``{"error": {"code", "message", "request_id", "details"}}``,
whether we raised it, Falcon did (unknown route, wrong method, bad JSON) or
something broke."""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

import falcon
import psycopg

from e2a.core.accounts import AccountError

log = logging.getLogger("e2a.api")

# Falcon's own errors carry no code of ours; the status decides it.
_CODES = {
    400: "invalid_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    410: "gone",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "unprocessable",
    429: "rate_limited",
    500: "internal_error",
    503: "unavailable",
}


class ApiError(falcon.HTTPError):
    """An error with our machine-readable code and optional details."""

    def __init__(self, status: int, code: str, message: str, *,
                 details: dict[str, Any] | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(falcon.code_to_http_status(status), description=message,
                         headers=headers)
        self.api_code = code
        self.details = details or {}


def bad_request(message: str, **details: Any) -> ApiError:
    return ApiError(400, "invalid_request", message, details=details)


def unauthorized(message: str) -> ApiError:
    return ApiError(401, "unauthorized", message, headers={"WWW-Authenticate": "Bearer"})


def forbidden(message: str) -> ApiError:
    return ApiError(403, "forbidden", message)


def not_found(message: str) -> ApiError:
    return ApiError(404, "not_found", message)


def rate_limited(message: str, retry_after_seconds: int) -> ApiError:
    """429 with Retry-After in delay-seconds form, as 2.x clients expect."""
    return ApiError(429, "rate_limited", message,
                    details={"retry_after_seconds": retry_after_seconds},
                    headers={"Retry-After": str(retry_after_seconds)})


# A broken rule's code (core.accounts.AccountError) decides the status; codes
# not listed here are refusals of a well-formed request: 400.
_RULE_STATUS = {"not_found": 404, "conflict": 409, "forbidden": 403, "gone": 410}


def rule_broken(exc: AccountError) -> ApiError:
    return ApiError(_RULE_STATUS.get(exc.code, 400), exc.code, str(exc))


def _request_id(req: falcon.Request) -> str:
    return getattr(req.context, "request_id", "")


def _render(req: falcon.Request, resp: falcon.Response, status: int, code: str,
            message: str, details: dict[str, Any]) -> None:
    resp.status = falcon.code_to_http_status(status)
    resp.media = {"error": {"code": code, "message": message,
                            "request_id": _request_id(req), "details": details}}


def _code_of(ex: falcon.HTTPError, status: int) -> str:
    if isinstance(ex, falcon.MediaMalformedError):
        return "invalid_json"
    if isinstance(ex, falcon.HTTPRouteNotFound):
        return "not_found"
    return _CODES.get(status, "error")


def message_of(req: falcon.Request, ex: falcon.HTTPError, status: int) -> str:
    """What an error says, router misses included."""
    if isinstance(ex, falcon.HTTPRouteNotFound):
        return f"no route for {req.method} {req.path}"
    if isinstance(ex, falcon.HTTPMethodNotAllowed):
        return f"{req.method} is not allowed on {req.path}"
    return ex.description or HTTPStatus(status).phrase


def handle_http_error(req: falcon.Request, resp: falcon.Response, ex: falcon.HTTPError,
                      params: dict[str, Any]) -> None:
    status = falcon.http_status_to_code(ex.status)
    code = getattr(ex, "api_code", None) or _code_of(ex, status)
    _render(req, resp, status, code, message_of(req, ex, status),
            getattr(ex, "details", None) or {})
    if ex.headers:
        resp.set_headers(ex.headers)


def handle_database_down(req: falcon.Request, resp: falcon.Response, ex: Exception,
                         params: dict[str, Any]) -> None:
    # An outage, not a bug: one line, no traceback; the client may retry.
    log.warning("database unavailable: %s", type(ex).__name__,
                extra={"request_id": _request_id(req)})
    _render(req, resp, 503, "unavailable", "the database is unavailable, retry later", {})
    resp.set_header("Retry-After", "5")


def handle_unexpected(req: falcon.Request, resp: falcon.Response, ex: Exception,
                      params: dict[str, Any]) -> None:
    # The path names the resource; the query string is left out because it can
    # carry tokens.
    log.error("unhandled error on %s %s", req.method, req.path, exc_info=ex,
              extra={"request_id": _request_id(req)})
    _render(req, resp, 500, "internal_error", "internal error", {})


def handle_bad_value(req: falcon.Request, resp: falcon.Response, ex: Exception,
                     params: dict[str, Any]) -> None:
    # A value the checks let through that the database refuses (out of a
    # type's range, say): the request's fault, so not a 500. Logged, since
    # the input check that should have caught it is missing.
    log.warning("database refused a request value on %s %s: %s", req.method, req.path,
                type(ex).__name__, extra={"request_id": _request_id(req)})
    _render(req, resp, 400, "invalid_request", "a value in the request is out of range", {})


def install(app: falcon.App) -> None:
    """Falcon picks the most specific handler by the exception's MRO."""
    app.add_error_handler(Exception, handle_unexpected)
    app.add_error_handler(falcon.HTTPError, handle_http_error)
    # Also catches psycopg_pool.PoolTimeout, a subclass.
    app.add_error_handler(psycopg.OperationalError, handle_database_down)
    app.add_error_handler(psycopg.DataError, handle_bad_value)
