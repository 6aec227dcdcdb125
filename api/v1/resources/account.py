"""``/v1/account``: the caller's account (any key) and its erasure (account
keys, ``confirm=DELETE``)."""

from __future__ import annotations

import falcon
from psycopg_pool import ConnectionPool

from e2a.api.errors import unauthorized
from e2a.api.export import Export
from e2a.api.v1 import access, views
from e2a.api.v1 import export as v1export
from e2a.api.v1.errors import invalid
from e2a.core.accounts import data as accountdata
from e2a.core.config import Config
from e2a.core.store import agents as agent_store
from e2a.core.store import users as user_store

CONFIRM = "DELETE"
# The current receipt's counts of things this server does not keep (none
# now: core/accounts/data.erase counts every field).
_NONE_KEPT: tuple[str, ...] = ()


def confirmed(req: falcon.Request) -> None:
    if req.get_param("confirm") != CONFIRM:
        raise invalid("query.confirm", f"must be {CONFIRM}", status=422)


class Account:
    def __init__(self, pool: ConnectionPool) -> None:
        self._pool = pool

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        caller = access.principal(req)
        with self._pool.connection() as conn:
            data = accountdata.limits_and_usage(conn, caller.user_id)
            own = (agent_store.agent_by_id(conn, caller.agent_id)
                   if caller.agent_id else None)
        if data is None:
            raise unauthorized("invalid API key")
        resp.media = views.account(caller, data, own["email"] if own else None)

    def on_delete(self, req: falcon.Request, resp: falcon.Response) -> None:
        caller = access.account_key(req)
        confirmed(req)
        with self._pool.connection() as conn:
            receipt = accountdata.erase(conn, caller.user_id)
        resp.media = {"deleted": True, **dict.fromkeys(_NONE_KEPT, 0), **receipt}


class AccountExport:
    """The whole account as one JSON document, streamed (api/export.py)."""

    def __init__(self, cfg: Config, pool: ConnectionPool) -> None:
        self._cfg = cfg
        self._pool = pool

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        caller = access.account_key(req)
        with self._pool.connection() as conn:
            user = user_store.user_by_id(conn, caller.user_id)
        if user is None:  # erased since the key was checked
            raise unauthorized("invalid API key")
        export = Export(self._pool, user, v1export.shape(self._cfg))
        resp.content_type = falcon.MEDIA_JSON
        resp.cache_control = ["no-store"]
        resp.downloadable_as = f"e2a-export-{user['id']}.json"
        resp.stream = export.chunks()
