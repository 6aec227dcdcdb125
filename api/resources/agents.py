"""``/api/v1/agents`` and ``/api/v1/agents/{email}``: a user's agents.

An agent-scoped key sees its own agent (list and get) and nothing else; it may
not register, change or delete agents: that would let an agent lift its own
human-in-the-loop hold. The 403 it gets for its own agent reveals nothing, and
any other agent is a 404 to it, as to any other tenant.
"""

from __future__ import annotations

from typing import Any

import falcon
from psycopg_pool import ConnectionPool

from e2a.api import auth, errors, inputs, views
from e2a.api.clientaddr import ClientAddress
from e2a.core import ratelimit
from e2a.core.accounts import registration as accounts
from e2a.core.config import Config
from e2a.core.store import agents as agent_store

# Per source address, whatever the key: one client with many accounts
# cannot mint addresses without end.
REGISTRATIONS = ratelimit.Limit("agent-registration-ip", per_window=200, window_seconds=3600)
_REGISTER_FIELDS = ("slug", "email", "name", "agent_mode", "webhook_url")


def _agent_only_forbidden(principal: auth.Principal) -> None:
    if principal.agent_id is not None:
        raise errors.forbidden("an agent-scoped key cannot register, change or delete agents")


class Agents:
    def __init__(self, cfg: Config, pool: ConnectionPool) -> None:
        self._cfg = cfg
        self._pool = pool
        self._client = ClientAddress(cfg.http.trusted_proxies)

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        principal: auth.Principal = req.context.principal
        with self._pool.connection() as conn:
            rows = agent_store.agents_for_user(conn, principal.user_id)
        resp.media = {"agents": [views.agent(r) for r in rows if principal.may_use(r)]}

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        principal: auth.Principal = req.context.principal
        _agent_only_forbidden(principal)
        # Counted in its own short transaction: refused and failed attempts
        # count too, and the counter row is not held while the agent is made.
        with self._pool.connection() as conn:
            outcome = ratelimit.hit(conn, REGISTRATIONS, self._client.of(req))
        if not outcome.allowed:
            raise errors.rate_limited(
                f"at most {REGISTRATIONS.per_window} agent registrations per hour from one "
                "address", outcome.retry_after_seconds)
        body = inputs.json_object(req)
        # JSON null is "not given", as some clients send every field.
        fields: dict[str, Any] = {k: "" if body.get(k) is None else body[k]
                                  for k in _REGISTER_FIELDS}
        if body.get("agent_mode") is None:
            # Not given: local, the mode that needs nothing more (cloud needs a
            # webhook URL, so asking for it stays explicit).
            fields["agent_mode"] = "local"
        try:
            with self._pool.connection() as conn:
                row = accounts.register_agent(conn, self._cfg, principal.user_id, **fields)
        except accounts.AccountError as exc:
            raise errors.rule_broken(exc) from None
        resp.status = falcon.HTTP_201
        resp.media = {"id": row["id"], "email": row["email"], "domain": row["domain"]}


class Agent:
    def __init__(self, cfg: Config, pool: ConnectionPool) -> None:
        self._cfg = cfg
        self._pool = pool

    def on_get(self, req: falcon.Request, resp: falcon.Response, email: str) -> None:
        with self._pool.connection() as conn:
            row = auth.agent_for(conn, req.context.principal, email)
        resp.media = views.agent(row)

    def on_put(self, req: falcon.Request, resp: falcon.Response, email: str) -> None:
        principal: auth.Principal = req.context.principal
        body = inputs.json_object(req)
        try:
            with self._pool.connection() as conn:
                row = auth.agent_for(conn, principal, email)
                _agent_only_forbidden(principal)
                row = accounts.update_agent(conn, self._cfg, row, body)
        except accounts.AccountError as exc:
            raise errors.rule_broken(exc) from None
        resp.media = views.agent(row)

    def on_delete(self, req: falcon.Request, resp: falcon.Response, email: str) -> None:
        principal: auth.Principal = req.context.principal
        with self._pool.connection() as conn:
            row = auth.agent_for(conn, principal, email)
            _agent_only_forbidden(principal)
            agent_store.delete_agent(conn, row["id"])
        resp.media = {"status": "deleted"}
