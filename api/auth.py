"""Who is calling, and what they may touch.

Ownership failures answer 404, never 403: a caller must not learn that another
tenant's agent or message exists.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool

from e2a.api import errors
from e2a.core import db
from e2a.core.accounts import apikeys
from e2a.core.store import agents as agent_store
from e2a.core.store import users as user_store


@dataclass(frozen=True)
class Principal:
    user_id: str
    key_id: str
    agent_id: str | None  # set: the key acts for this one agent only

    def may_use(self, agent: dict[str, Any]) -> bool:
        return agent["user_id"] == self.user_id and self.agent_id in (None, agent["id"])


def require_account_key(principal: Principal) -> None:
    """Account endpoints are for account-wide keys. A 403 reveals nothing
    here: the answer depends on the key alone, not on any resource."""
    if principal.agent_id is not None:
        raise errors.forbidden("an agent-scoped key cannot use account endpoints")


def bearer_key(header: str | None) -> str:
    if not header:
        raise errors.unauthorized("missing API key (Authorization: Bearer e2a_...)")
    scheme, _, key = header.strip().partition(" ")
    key = key.strip()
    if scheme.lower() != "bearer" or not apikeys.is_well_formed(key):
        raise errors.unauthorized("invalid API key")
    return key


def authenticate_key(pool: ConnectionPool, key: str) -> Principal:
    """The caller with this key (a header's, or a WebSocket's ?token=)."""
    if not apikeys.is_well_formed(key):
        raise errors.unauthorized("invalid API key")
    with db.autocommit(pool) as conn:
        return principal_for(conn, key)


def principal_for(conn: psycopg.Connection, key: str) -> Principal:
    """The caller with this well-formed key. Its last use is written only
    when the one recorded is a minute old: a write on every request would
    cost each one a round trip."""
    row = user_store.api_key_by_hash(conn, apikeys.digest(key))
    if row is None:
        raise errors.unauthorized("invalid API key")
    if row["use_unrecorded"]:
        user_store.touch_api_key(conn, row["id"])
    return Principal(user_id=row["user_id"], key_id=row["id"], agent_id=row["agent_id"])


def agent_for(conn: psycopg.Connection, principal: Principal, email: str) -> dict[str, Any]:
    """The agent at this address if the caller may use it, else 404."""
    agent = agent_store.agent_for_user(conn, principal.user_id, email)
    if agent is None or not principal.may_use(agent):
        raise errors.not_found(f"agent {email} not found")
    return agent
