"""``/v1/account/suppressions[/{address}]`` and
``/v1/agents/{email}/suppressions[/{address}]`` (account keys only): the
recipients the account, or one agent, no longer sends to
(core/outbound/suppressions.py). Listed newest first; an account's own
entries come from bounces and complaints (no POST upstream), an agent's from
unsubscribes and by hand."""

from __future__ import annotations

from typing import Any

import falcon
from psycopg_pool import ConnectionPool

from e2a.api import export
from e2a.api.v1 import access, bodies, cursors, params
from e2a.api.v1.errors import invalid, not_found
from e2a.api.v1.resources.account import confirmed
from e2a.core.accounts.registration import valid_email
from e2a.core.config import Config
from e2a.core.outbound import suppressions
from e2a.core.store import suppressions as store

_CREATE = {"address": bodies.Field(str, required=True, max_length=suppressions.MAX_ADDRESS),
           "reason": bodies.Field(str, max_length=suppressions.MAX_REASON)}


def agent_view(agent_email: str) -> Any:
    def view(row: dict[str, Any]) -> dict[str, Any]:
        return export.suppression({**row, "agent_email": agent_email})
    return view


def _key(row: dict[str, Any]) -> tuple[Any, str]:
    return (row["created_at"], row["address"])


def _address(value: str) -> str:
    address = suppressions.canonical(value)
    if len(value) > suppressions.MAX_ADDRESS or not valid_email(address):
        raise invalid("path.address", "not an email address")
    return address


class AccountSuppressions:
    def __init__(self, cfg: Config, pool: ConnectionPool) -> None:
        self._secret = cfg.secrets.hmac_secret
        self._pool = pool

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        caller = access.account_key(req)
        limit = params.limit(req)
        bound = cursors.scope(req, "suppressions")
        after = cursors.position(req, self._secret, bound)
        with self._pool.connection() as conn:
            rows = store.list_account(conn, caller.user_id, limit=limit + 1, before=after)
        resp.media = cursors.page(rows, limit, self._secret, bound, export.suppression, _key)


class AccountSuppression:
    def __init__(self, pool: ConnectionPool) -> None:
        self._pool = pool

    def on_delete(self, req: falcon.Request, resp: falcon.Response, address: str) -> None:
        caller = access.account_key(req)
        canonical = _address(address)
        confirmed(req)
        with self._pool.connection() as conn, conn.transaction():
            if not store.delete_account(conn, caller.user_id, canonical):
                raise not_found(f"{address} is not suppressed")
        resp.media = {"deleted": True, "address": canonical}


class AgentSuppressions:
    def __init__(self, cfg: Config, pool: ConnectionPool) -> None:
        self._secret = cfg.secrets.hmac_secret
        self._pool = pool

    def on_get(self, req: falcon.Request, resp: falcon.Response, email: str) -> None:
        limit = params.limit(req)
        with self._pool.connection() as conn:
            agent = access.agent(conn, req, email, account_only=True)
            bound = cursors.scope(req, "agent-suppressions", agent=agent["id"])
            after = cursors.position(req, self._secret, bound)
            rows = store.list_agent(conn, agent["id"], limit=limit + 1, before=after)
        resp.media = cursors.page(rows, limit, self._secret, bound,
                                  agent_view(agent["email"]), _key)

    def on_post(self, req: falcon.Request, resp: falcon.Response, email: str) -> None:
        body = bodies.read(req, _CREATE, body_required=True)
        address = suppressions.canonical(body["address"])
        if not valid_email(address):
            raise invalid("body.address", "not an email address")
        with self._pool.connection() as conn:
            agent = access.agent(conn, req, email, account_only=True)
            with conn.transaction():
                added = suppressions.add_for_agent(conn, agent, address, source="manual",
                                                   reason=body.get("reason"))
        resp.media = agent_view(agent["email"])(added.row)


class AgentSuppression:
    def __init__(self, pool: ConnectionPool) -> None:
        self._pool = pool

    def on_delete(self, req: falcon.Request, resp: falcon.Response, email: str,
                  address: str) -> None:
        with self._pool.connection() as conn:
            agent = access.agent(conn, req, email, account_only=True)
            canonical = _address(address)
            confirmed(req)
            with conn.transaction():
                if not store.delete_agent(conn, agent["id"], canonical):
                    raise not_found(f"{address} is not suppressed for {agent['email']}")
        resp.media = {"deleted": True, "address": canonical}
