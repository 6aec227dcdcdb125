"""``/api/v1/users/me[...]``: the account itself: its limits, a full export of
its data, and its deletion. Account-wide keys only (an agent's key gets 403).
"""

from __future__ import annotations

import falcon
from psycopg_pool import ConnectionPool

from e2a.api import auth, errors
from e2a.api.export import Export
from e2a.core.accounts import data as accountdata
from e2a.core.store import users as user_store

CONFIRM = "DELETE"
# What every account operation may answer besides its own outcomes.


class AccountResource:
    """A resource of the account itself: account-wide keys only."""

    def __init__(self, pool: ConnectionPool) -> None:
        self._pool = pool

    @staticmethod
    def principal(req: falcon.Request) -> auth.Principal:
        principal: auth.Principal = req.context.principal
        auth.require_account_key(principal)
        return principal


class Me(AccountResource):
    def on_delete(self, req: falcon.Request, resp: falcon.Response) -> None:
        principal = self.principal(req)
        if req.get_param("confirm") != CONFIRM:
            raise errors.bad_request(f"add confirm={CONFIRM} to delete the account and all "
                                     "its data, irreversibly", param="confirm")
        with self._pool.connection() as conn:
            resp.media = accountdata.erase(conn, principal.user_id)


class DataExport(AccountResource):
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        principal = self.principal(req)
        with self._pool.connection() as conn:
            user = user_store.user_by_id(conn, principal.user_id)
        if user is None:  # deleted since the key was checked
            raise errors.unauthorized("invalid API key")
        export = Export(self._pool, user)
        resp.content_type = falcon.MEDIA_JSON
        resp.cache_control = ["no-store"]
        resp.downloadable_as = f"e2a-export-{user['id']}.json"
        resp.stream = export.chunks()


class Limits(AccountResource):
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        principal = self.principal(req)
        with self._pool.connection() as conn:
            account = accountdata.limits_and_usage(conn, principal.user_id)
        if account is None:
            raise errors.unauthorized("invalid API key")
        # Self-hosted: there is nothing to upgrade to.
        resp.media = {"plan_code": account["plan_code"], "upgrade_url": "",
                      "limits": account["limits"], "usage": account["usage"]}
