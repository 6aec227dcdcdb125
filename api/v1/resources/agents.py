"""``/v1/agents[/{email}[/restore]]``: a user's agents. Creating, renaming
and deleting are for account keys; an agent key may read its own agent."""

from __future__ import annotations

from typing import Any

import falcon
from psycopg_pool import ConnectionPool

from e2a.api.clientaddr import ClientAddress
from e2a.api.errors import ApiError, rate_limited
from e2a.api.resources.agents import REGISTRATIONS
from e2a.api.v1 import access, bodies, cursors, params, views
from e2a.api.v1.errors import error
from e2a.api.v1.resources.account import confirmed
from e2a.core import accounts, ratelimit
from e2a.core.config import Config
from e2a.core.store import agents as agent_store
from e2a.core.store import messages as message_store
from e2a.core.store import users as user_store

MAX_NAME = 200
_CREATE = {"email": bodies.Field(str, required=True, max_length=320),
           "name": bodies.Field(str, max_length=MAX_NAME)}
_UPDATE = {"name": bodies.Field(str, max_length=MAX_NAME)}


def _refusal(exc: accounts.AccountError, conn: Any, user_id: str, email: str) -> ApiError:
    """A broken registration rule in the /v1 vocabulary."""
    message = str(exc)
    taken = agent_store.agent_for_user(conn, user_id, email, trashed_too=True)
    if exc.code == "conflict" and taken is not None and taken["deleted_at"] is not None:
        return error(409, "address_in_trash", f"{email} is in your trash; restore it or "
                     "erase it for good (DELETE with permanent=true)")
    if exc.code == "limit_reached":
        user = user_store.user_by_id(conn, user_id) or {}
        return error(402, "limit_exceeded", message, resource="agents",
                     limit=user.get("max_agents", 0),
                     current=agent_store.count_for_user(conn, user_id))
    if exc.code == "conflict":
        return error(409, "agent_taken", message)
    if exc.code == "domain_not_found":
        return error(400, "domain_not_registered", message)
    if exc.code == "domain_not_verified":
        return error(400, "domain_not_verified", message)
    if exc.code == "not_found":
        return error(401, "unauthorized", "invalid API key")
    code = "invalid_slug" if "slug" in message else "invalid_request"
    return error(400, code, message)


class Agents:
    def __init__(self, cfg: Config, pool: ConnectionPool) -> None:
        self._cfg = cfg
        self._pool = pool
        self._secret = cfg.secrets.hmac_secret
        self._client = ClientAddress(cfg.http.trusted_proxies)

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        caller = access.account_key(req)
        limit = params.limit(req)
        trashed = params.boolean(req, "deleted")
        bound = cursors.scope(req, "agents", deleted=trashed)
        after = cursors.position(req, self._secret, bound)
        with self._pool.connection() as conn:
            rows = agent_store.agents_page(conn, caller.user_id, limit=limit + 1,
                                           after=after, trashed=trashed)
        resp.media = cursors.page(rows, limit, self._secret, bound, views.agent,
                                  lambda r: (r["created_at"], r["id"]))

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        caller = access.account_key(req)
        body = bodies.read(req, _CREATE, body_required=True)
        with self._pool.connection() as conn:
            outcome = ratelimit.hit(conn, REGISTRATIONS, self._client.of(req))
        if not outcome.allowed:
            raise rate_limited(f"at most {REGISTRATIONS.per_window} agents an hour from "
                               "one address", outcome.retry_after_seconds)
        with self._pool.connection() as conn:
            try:
                with conn.transaction():
                    row = accounts.register_agent(conn, self._cfg, caller.user_id,
                                                  email=body["email"],
                                                  name=body.get("name", ""))
            except accounts.AccountError as exc:
                raise _refusal(exc, conn, caller.user_id, body["email"]) from None
            row = agent_store.agent_by_id(conn, row["id"])
        resp.status = falcon.HTTP_201
        resp.media = views.agent(row)


class Agent:
    def __init__(self, cfg: Config, pool: ConnectionPool) -> None:
        self._cfg = cfg
        self._pool = pool

    def on_get(self, req: falcon.Request, resp: falcon.Response, email: str) -> None:
        with self._pool.connection() as conn:
            resp.media = views.agent(access.agent(conn, req, email, trashed_too=True))

    def on_patch(self, req: falcon.Request, resp: falcon.Response, email: str) -> None:
        with self._pool.connection() as conn:
            row = access.agent(conn, req, email, account_only=True, trashed_too=True)
            body = bodies.read(req, _UPDATE)
            if "name" in body:
                row = accounts.rename_agent(conn, row, body["name"])
        resp.media = views.agent(row)

    def on_delete(self, req: falcon.Request, resp: falcon.Response, email: str) -> None:
        with self._pool.connection() as conn:
            row = access.agent(conn, req, email, account_only=True, trashed_too=True)
            confirmed(req)
            erased = 0
            with conn.transaction():
                if params.boolean(req, "permanent"):
                    erased = message_store.count_for_agent(conn, row["id"])
                    agent_store.delete_agent(conn, row["id"])
                elif row["deleted_at"] is None:
                    agent_store.set_trashed(conn, row["id"], True)
        resp.media = {"deleted": True, "email": row["email"], "messages_deleted": erased}


class AgentRestore:
    def __init__(self, pool: ConnectionPool) -> None:
        self._pool = pool

    def on_post(self, req: falcon.Request, resp: falcon.Response, email: str) -> None:
        bodies.no_body(req)
        with self._pool.connection() as conn:
            row = access.agent(conn, req, email, account_only=True, trashed_too=True)
            if row["deleted_at"] is None:
                raise error(409, "not_in_trash", f"agent {email} is not in the trash")
            with conn.transaction():
                agent_store.set_trashed(conn, row["id"], False)
            row = agent_store.agent_by_id(conn, row["id"])
        resp.media = views.agent(row)
