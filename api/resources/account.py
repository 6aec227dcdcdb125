"""``/api/v1/users/me[...]``: the account itself: its limits, a full export of
its data, and its deletion. Account-wide keys only (an agent's key gets 403).
"""

from __future__ import annotations

import falcon
from psycopg_pool import ConnectionPool

from e2a.api import auth, errors
from e2a.api.export import Export
from e2a.core.store import agents as agent_store
from e2a.core.store import domains as domain_store
from e2a.core.store import usage as usage_store
from e2a.core.store import userdata
from e2a.core.store import users as user_store

CONFIRM = "DELETE"
# What every account operation may answer besides its own outcomes.

# e2a's DeleteUserDataResult field -> our table whose rows it counts; e2a's
# tables we do not have (OAuth, sessions, usage events) count 0.
_DELETED_FIELDS = {
    "agents_deleted": "agents",
    "api_keys_deleted": "api_keys",
    "domains_deleted": "domains",
    "messages_deleted": "messages",
    "usage_summaries_deleted": "usage_monthly",
    # Ours, beyond e2a's shape.
    "events_deleted": "events",
    "signing_secrets_deleted": "signing_secrets",
    "webhooks_deleted": "webhooks",
}
_NOT_KEPT_HERE = ("oauth_access_tokens_deleted", "oauth_auth_codes_deleted",
                  "oauth_refresh_tokens_deleted", "sessions_deleted", "usage_events_deleted")


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
            user_store.lock_user(conn, principal.user_id)
            userdata.lock_agents(conn, principal.user_id)
            counts = userdata.erase(conn, principal.user_id)
        result: dict[str, int | bool] = {field: counts.get(table, 0)
                                         for field, table in _DELETED_FIELDS.items()}
        result.update(dict.fromkeys(_NOT_KEPT_HERE, 0))
        result["user_deleted"] = counts["users"] == 1
        resp.media = result


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
            user = user_store.user_by_id(conn, principal.user_id)
            quota = usage_store.quota_of(conn, principal.user_id)
            agents = agent_store.count_for_user(conn, principal.user_id)
            domains = domain_store.count_for_user(conn, principal.user_id)
        if user is None or quota is None:
            raise errors.unauthorized("invalid API key")
        resp.media = {
            "plan_code": user["plan_code"],
            # Self-hosted: there is nothing to upgrade to.
            "upgrade_url": "",
            "limits": {"max_agents": user["max_agents"], "max_domains": user["max_domains"],
                       "max_messages_month": user["max_messages_month"],
                       "max_storage_bytes": user["max_storage_bytes"]},
            "usage": {"agents": agents, "domains": domains,
                      "messages_month": quota["messages_this_month"],
                      "storage_bytes": quota["storage_bytes"]},
        }
