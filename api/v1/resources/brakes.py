"""``GET``/``PUT /v1/agents/{email}/brakes`` (account keys only): an agent's
loop and abuse brakes (core/outbound/brakes.py) and its outbound kill
switch. An e2a-postfix extension, not part of upstream e2a's API: the SDKs
have no method for it; call it over plain HTTP.

The view: ``defaults`` (the [brakes] configuration), ``overrides`` (this
agent's), ``effective`` (both together: what applies), ``paused`` with
``paused_at`` and ``paused_reason``. PUT is wholesale: ``{"overrides":
{...}, "paused": bool}``, an absent ``overrides`` meaning none and an absent
``paused`` false (so a PUT of the view's own overrides resumes the agent)."""

from __future__ import annotations

from typing import Any

import falcon
from psycopg_pool import ConnectionPool

from e2a.api.v1 import access, bodies
from e2a.api.v1.errors import invalid
from e2a.core.accounts import protection as settings
from e2a.core.config import Config
from e2a.core.outbound import brakes
from e2a.core.store import brakes as store
from e2a.core.timefmt import rfc3339

_PUT = {"overrides": bodies.Field(dict), "paused": bodies.Field(bool),
        "reason": bodies.Field(str, max_length=500)}


class AgentBrakes:
    def __init__(self, cfg: Config, pool: ConnectionPool) -> None:
        self._defaults = brakes.Settings.defaults(cfg)
        self._pool = pool

    def _view(self, agent: dict[str, Any], row: dict[str, Any] | None) -> dict[str, Any]:
        overrides = dict(row["overrides"]) if row else {}
        paused_at = row["paused_at"] if row else None
        return {"agent_email": agent["email"], "defaults": self._defaults.as_dict(),
                "overrides": overrides,
                "effective": self._defaults.with_overrides(overrides).as_dict(),
                "paused": paused_at is not None,
                "paused_at": rfc3339(paused_at) if paused_at else None,
                "paused_reason": row["paused_reason"] if row and paused_at else None}

    def on_get(self, req: falcon.Request, resp: falcon.Response, email: str) -> None:
        with self._pool.connection() as conn:
            agent = access.agent(conn, req, email, account_only=True)
            row = store.settings(conn, agent["id"])
        resp.media = self._view(agent, row)

    def on_put(self, req: falcon.Request, resp: falcon.Response, email: str) -> None:
        body = bodies.read(req, _PUT, body_required=True)
        try:
            overrides = brakes.checked_overrides(body.get("overrides") or {})
        except brakes.OverrideError as exc:
            raise invalid(f"body.overrides.{exc.name}", str(exc)) from None
        with self._pool.connection() as conn:
            agent = access.agent(conn, req, email, account_only=True)
            with conn.transaction():
                row = settings.set_brakes(conn, agent, overrides, body.get("paused", False),
                                          body.get("reason"))
        resp.media = self._view(agent, row)
