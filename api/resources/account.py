"""``/api/v1/users/me[...]``: the account itself: its limits, a full export of
its data, and its deletion. Account-wide keys only (an agent's key gets 403).
"""

from __future__ import annotations

import falcon
from psycopg_pool import ConnectionPool

from e2a.api import auth, errors, opdoc
from e2a.api.export import Export
from e2a.core import accountdata
from e2a.core.store import users as user_store

CONFIRM = "DELETE"
# What every account operation may answer besides its own outcomes.
ACCOUNT_ERRORS = {"401": opdoc.UNAUTHORIZED,
                  "403": opdoc.error("The key is scoped to one agent")}


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
    doc = {"delete": {
        "operationId": "deleteUserData",
        "summary": "Delete your account and everything it owns",
        "description": "Irreversible, in one transaction. Requires confirm=DELETE. Answers "
                       "how many rows of each kind were removed; the key used stops working.",
        "parameters": [opdoc.query_param("confirm", "Must be DELETE", required=True)],
        "responses": {"200": opdoc.ok("DeleteUserDataResult"),
                      "400": opdoc.error("confirm is missing or not DELETE"),
                      **ACCOUNT_ERRORS},
    }}

    def on_delete(self, req: falcon.Request, resp: falcon.Response) -> None:
        principal = self.principal(req)
        if req.get_param("confirm") != CONFIRM:
            raise errors.bad_request(f"add confirm={CONFIRM} to delete the account and all "
                                     "its data, irreversibly", param="confirm")
        with self._pool.connection() as conn:
            resp.media = accountdata.erase(conn, principal.user_id)


class DataExport(AccountResource):
    doc = {"get": {
        "operationId": "exportUserData",
        "summary": "Export your data",
        "description": "Everything the account owns as one JSON document: profile, agents, "
                       "domains, API key metadata, signing secret metadata, webhooks and "
                       "every message with its raw content (base64). No key hashes, secret "
                       "values or private keys. Streamed.",
        "responses": {"200": opdoc.ok("UserExport"), **ACCOUNT_ERRORS},
    }}

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
    doc = {"get": {
        "operationId": "getUserLimits",
        "summary": "Your limits and current usage",
        "description": "messages_month counts inbound mail in the current calendar month "
                       "(UTC); storage_bytes is the size of all stored mail.",
        "responses": {"200": opdoc.ok("LimitsInfo"), **ACCOUNT_ERRORS},
    }}

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        principal = self.principal(req)
        with self._pool.connection() as conn:
            account = accountdata.limits_and_usage(conn, principal.user_id)
        if account is None:
            raise errors.unauthorized("invalid API key")
        # Self-hosted: there is nothing to upgrade to.
        resp.media = {"plan_code": account["plan_code"], "upgrade_url": "",
                      "limits": account["limits"], "usage": account["usage"]}
