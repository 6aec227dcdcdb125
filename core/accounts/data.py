"""The account as a whole: its limits and usage, and its erasure. Both API
generations answer these from here (legacy ``/api/v1/users/me[/limits]``,
``/v1/account``)."""

from __future__ import annotations

from typing import Any

import psycopg

from e2a.core.store import agents as agent_store
from e2a.core.store import domains as domain_store
from e2a.core.store import usage as usage_store
from e2a.core.store import userdata
from e2a.core.store import users as user_store

# e2a's DeleteUserDataResult field -> our table whose rows it counts.
_DELETED_FIELDS = {
    "agents_deleted": "agents",
    "api_keys_deleted": "api_keys",
    "domains_deleted": "domains",
    "messages_deleted": "messages",
    "usage_summaries_deleted": "usage_monthly",
    "agent_suppressions_deleted": "agent_suppressions",
    "agent_unsubscribe_tokens_deleted": "unsubscribe_tokens",
    # Ours, beyond e2a's shape.
    "events_deleted": "events",
    "signing_secrets_deleted": "signing_secrets",
    "webhooks_deleted": "webhooks",
}
# e2a's tables we do not have (OAuth, sessions, usage events) count 0.
_NOT_KEPT_HERE = ("oauth_access_tokens_deleted", "oauth_auth_codes_deleted",
                  "oauth_refresh_tokens_deleted", "sessions_deleted", "usage_events_deleted")


def erase(conn: psycopg.Connection, user_id: str) -> dict[str, Any]:
    """Erase the user and everything it owns, in the caller's transaction;
    the receipt in e2a's DeleteUserDataResult shape."""
    user_store.lock_user(conn, user_id)
    userdata.lock_agents(conn, user_id)
    counts = userdata.erase(conn, user_id)
    receipt: dict[str, Any] = {field: counts.get(table, 0)
                               for field, table in _DELETED_FIELDS.items()}
    receipt.update(dict.fromkeys(_NOT_KEPT_HERE, 0))
    receipt["user_deleted"] = counts["users"] == 1
    return receipt


def limits_and_usage(conn: psycopg.Connection, user_id: str) -> dict[str, Any] | None:
    """The user's plan, caps and current use; None when the user is gone.
    ``messages_month`` counts inbound mail of this calendar month (UTC)."""
    user = user_store.user_by_id(conn, user_id)
    quota = usage_store.quota_of(conn, user_id)
    if user is None or quota is None:
        return None
    return {
        "user": {"id": user["id"], "email": user["email"]},
        "plan_code": user["plan_code"],
        "limits": {"max_agents": user["max_agents"], "max_domains": user["max_domains"],
                   "max_messages_month": user["max_messages_month"],
                   "max_storage_bytes": user["max_storage_bytes"]},
        "usage": {"agents": agent_store.count_for_user(conn, user_id),
                  "domains": domain_store.count_for_user(conn, user_id),
                  "messages_month": quota["messages_this_month"],
                  "storage_bytes": quota["storage_bytes"]},
    }
