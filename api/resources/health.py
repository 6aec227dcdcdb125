"""``GET /api/health``: is this process able to serve, i.e. does the database answer."""

from __future__ import annotations

import falcon
import psycopg
from psycopg_pool import ConnectionPool

from e2a.core.store import health as health_store

# Well under a load balancer's probe timeout, so a down database reads as 503
# rather than as a hung probe.
PROBE_TIMEOUT = 2.0


class Health:
    public = True

    def __init__(self, pool: ConnectionPool) -> None:
        self._pool = pool

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        try:
            with self._pool.connection(timeout=PROBE_TIMEOUT) as conn:
                ok = health_store.ping(conn)
        except psycopg.Error:  # PoolTimeout included
            ok = False
        resp.cache_control = ["no-store"]
        if ok:
            resp.media = {"status": "ok"}
        else:
            resp.status = falcon.HTTP_503
            resp.media = {"status": "unavailable"}
