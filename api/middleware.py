"""Request-wide concerns: a request id on every response, the shape of
requests (NUL, body size), and authentication."""

from __future__ import annotations

import io
import re
import secrets
import time
from typing import Any

import falcon
from psycopg_pool import ConnectionPool

from e2a.api import auth, errors, pages
from e2a.api.throttle import RequestLimit
from e2a.api.wschannel import POLICY_VIOLATION, Channel
from e2a.core import db
from e2a.core.config import Config
from e2a.core.runtime import metrics

REQUEST_ID_HEADER = "X-Request-Id"
# A caller's own id (from a proxy, say) is kept when it is short and plain, so
# log lines on both sides join up; anything else could forge log content.
_CALLER_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


class RequestId:
    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        given = req.get_header(REQUEST_ID_HEADER) or ""
        req.context.request_id = given if _CALLER_ID.match(given) else (
            "req_" + secrets.token_hex(12))

    def process_response(self, req: falcon.Request, resp: falcon.Response,
                         resource: object, req_succeeded: bool) -> None:
        resp.set_header(REQUEST_ID_HEADER, req.context.request_id)


class RequestTiming:
    """Every request's time, as e2a_stage_seconds{stage="api_request"}."""

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        req.context.started = time.perf_counter()

    def process_response(self, req: falcon.Request, resp: falcon.Response,
                         resource: object, req_succeeded: bool) -> None:
        started = getattr(req.context, "started", None)
        if started is not None:
            metrics.stage_seconds.labels(stage="api_request").observe(
                time.perf_counter() - started)


class Authentication:
    """Runs once a route matched (an unknown path is a 404, not a 401); a
    resource opts out with ``public = True``. The caller's request is counted
    against its key's limit in the same checkout, each statement committing
    alone as when they were apart: no BEGIN and COMMIT round trips."""

    def __init__(self, pool: ConnectionPool, limit: RequestLimit) -> None:
        self._pool = pool
        self._limit = limit

    def process_resource(self, req: falcon.Request, resp: falcon.Response,
                         resource: object, params: dict[str, Any]) -> None:
        if resource is None or getattr(resource, "public", False):
            return
        key = auth.bearer_key(req.auth)
        with db.autocommit(self._pool) as conn:
            principal = auth.principal_for(conn, key)
            outcome = self._limit.count(conn, principal.key_id)
        req.context.principal = principal
        self._limit.enforce(req, outcome)


# The magic links' form: a token and a reason of at most 1000 characters.
MAX_FORM_BYTES = 16 * 1024
# How much of a body without a Content-Length (chunked) is read at a time.
_READ_CHUNK = 64 * 1024


class RequestShape:
    """Refusals that need no resource and no database, for every route alike:
    a NUL in the path or query (PostgreSQL text cannot hold one: a psycopg
    DataError, a 500, in whichever query met it first) is a 400, and a body
    over the route's limit is a 413 before it is read. A chunked body, whose
    size nobody declared, is read up to the limit and no further.

    ``large`` are the resources that take a send's attachments (base64 in
    JSON); ``pages`` (and resources with ``page = True``) answer people, so
    their 413 is a page too."""

    def __init__(self, cfg: Config, *, large: tuple[type, ...] = (),
                 pages: tuple[type, ...] = ()) -> None:
        self._default = cfg.http.max_body_bytes
        self._large_limit = cfg.http.max_send_body_bytes
        self._large = large
        self._pages = pages

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        if "\x00" in req.path:
            self._refuse(req, resp, "NUL characters are not allowed in the path")
            return
        for name, value in req.params.items():
            values = value if isinstance(value, list) else [value]
            if "\x00" in name or any("\x00" in v for v in values):
                self._refuse(req, resp, f"NUL characters are not allowed ({name})",
                             param=name.replace("\x00", ""))
                return

    @staticmethod
    def _refuse(req: falcon.Request, resp: falcon.Response, message: str,
                **details: Any) -> None:
        ws = req.env.get("wsgi.websocket")
        if ws is None:
            raise errors.bad_request(message, **details)
        # gevent-websocket upgraded the connection before the app ran: a
        # refusal is a close frame (1008, as for a bad key), not an HTTP answer.
        Channel(ws).close(POLICY_VIOLATION, message)
        resp.complete = True

    def _is_page(self, resource: object) -> bool:
        return isinstance(resource, self._pages) or getattr(resource, "page", False) is True

    def limit_for(self, resource: object) -> int:
        # A resource may name its own limit (the dashboard's forms do).
        own = getattr(resource, "max_body_bytes", None)
        if isinstance(own, int):
            return own
        if isinstance(resource, self._pages):
            return MAX_FORM_BYTES
        if isinstance(resource, self._large):
            return self._large_limit
        return self._default

    def process_resource(self, req: falcon.Request, resp: falcon.Response,
                         resource: object, params: dict[str, Any]) -> None:
        if resource is None:
            return
        limit = self.limit_for(resource)
        length = req.content_length
        if length is None and req.get_header("Transfer-Encoding"):
            length = self._read_chunked(req, limit)
        if length is None or length <= limit:
            return
        # The rest of the body is never read: the server must not keep the
        # connection for a next request that would start inside it.
        close = {"Connection": "close"}
        if self._is_page(resource):
            pages.problem(resp, 413, "Too much data", "This form sends far less than that. "
                          "Go back to the page it came from and try again.")
            resp.set_headers(close)
            resp.complete = True
            return
        raise errors.ApiError(413, "payload_too_large",
                              f"the request body is over {limit} bytes",
                              details={"max_bytes": limit}, headers=close)

    @staticmethod
    def _read_chunked(req: falcon.Request, limit: int) -> int:
        """Read a body of undeclared size, at most ``limit`` + 1 bytes; what
        was read takes the stream's place, with its length declared."""
        chunks: list[bytes] = []
        size = 0
        while size <= limit:
            chunk = req.stream.read(min(_READ_CHUNK, limit + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size <= limit:
            body = io.BytesIO(b"".join(chunks))
            req.env["wsgi.input"] = req.stream = body
            req.env["CONTENT_LENGTH"] = str(size)
        return size
