"""Request-wide concerns: a request id on every response, and authentication."""

from __future__ import annotations

import re
import secrets
import time
from typing import Any

import falcon
from psycopg_pool import ConnectionPool

from e2a.api import auth
from e2a.core import metrics

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
    resource opts out with ``public = True``."""

    def __init__(self, pool: ConnectionPool) -> None:
        self._pool = pool

    def process_resource(self, req: falcon.Request, resp: falcon.Response,
                         resource: object, params: dict[str, Any]) -> None:
        if resource is None or getattr(resource, "public", False):
            return
        req.context.principal = auth.authenticate(self._pool, req.auth)
