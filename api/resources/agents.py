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

from e2a.api import auth, errors, inputs, opdoc, views
from e2a.api.clientaddr import ClientAddress
from e2a.core import accounts, ratelimit
from e2a.core.config import Config
from e2a.core.store import agents as agent_store

TAGS = ["Agents"]
_FORBIDDEN = opdoc.error("The key is scoped to one agent")
_NOT_FOUND = opdoc.error("Agent not found")
# Per source address, whatever the key: one client with many accounts
# cannot mint addresses without end.
REGISTRATIONS = ratelimit.Limit("agent-registration-ip", per_window=200, window_seconds=3600)
_REGISTER_FIELDS = ("slug", "email", "name", "agent_mode", "webhook_url")


def _agent_only_forbidden(principal: auth.Principal) -> None:
    if principal.agent_id is not None:
        raise errors.forbidden("an agent-scoped key cannot register, change or delete agents")


class Agents:
    doc = {
        "get": {
            "operationId": "listAgents",
            "summary": "List your registered agents",
            "description": "Returns all agents owned by the authenticated user (for an "
                           "agent-scoped key, its own agent only).",
            "tags": TAGS,
            "responses": {"200": opdoc.ok("ListAgentsResponse"), "401": opdoc.UNAUTHORIZED},
        },
        "post": {
            "operationId": "registerAgent",
            "summary": "Register a new agent",
            "description": "Registers an agent by slug on the shared domain, or by email on "
                           "a verified domain of yours. agent_mode: local (the default) "
                           "or cloud; cloud needs an https webhook_url. Rate limited to "
                           f"{REGISTRATIONS.per_window} registrations per source IP per "
                           "hour; 429 carries Retry-After.",
            "tags": TAGS,
            "requestBody": opdoc.body("RegisterAgentRequest", "Agent registration details"),
            "responses": {"201": opdoc.ok("RegisterAgentResponse", "Created"),
                          "400": opdoc.error("Invalid request"),
                          "401": opdoc.UNAUTHORIZED, "403": _FORBIDDEN,
                          "409": opdoc.error("Agent already exists"),
                          "429": opdoc.error("Rate limit exceeded; see Retry-After")},
        },
    }

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
    doc = {
        "get": {
            "operationId": "getAgent",
            "summary": "Get agent details",
            "tags": TAGS,
            "parameters": [opdoc.AGENT_EMAIL],
            "responses": {"200": opdoc.ok("Agent"), "401": opdoc.UNAUTHORIZED,
                          "404": _NOT_FOUND},
        },
        "put": {
            "operationId": "updateAgent",
            "summary": "Update an agent",
            "description": "Partial: only the fields sent change. Switching to cloud mode "
                           "needs a webhook_url; hitl_ttl_seconds is 1 to "
                           f"{accounts.HITL_MAX_TTL}; hitl_expiration_action is reject or "
                           "approve. Returns the agent after the update.",
            "tags": TAGS,
            "parameters": [opdoc.AGENT_EMAIL],
            "requestBody": opdoc.body("UpdateAgentRequest", "Fields to update"),
            "responses": {"200": opdoc.ok("Agent"),
                          "400": opdoc.error("Validation error (e.g. bad agent_mode, TTL "
                                             "out of range)"),
                          "401": opdoc.UNAUTHORIZED, "403": _FORBIDDEN, "404": _NOT_FOUND},
        },
        "delete": {
            "operationId": "deleteAgent",
            "summary": "Delete an agent",
            "description": "Deletes the agent with its messages and agent-scoped keys.",
            "tags": TAGS,
            "parameters": [opdoc.AGENT_EMAIL],
            "responses": {"200": {"description": "status: deleted", "content": {
                              opdoc.JSON: {"schema": {"type": "object", "properties": {
                                  "status": {"type": "string"}}}}}},
                          "401": opdoc.UNAUTHORIZED, "403": _FORBIDDEN, "404": _NOT_FOUND},
        },
    }

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
