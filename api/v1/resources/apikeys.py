"""``/v1/account/api-keys[/{id}]``: the account's API keys (account keys
only): list, create (the key shown once), revoke. Revocation takes effect at
once, WebSockets included (the key-revocation trigger, sql/010).

A key may carry an expiry (``expires_at``): from then on it is refused at
authentication like a revoked one, and a WebSocket opened with it closes at
its next key check.

``last_used_at`` is recorded at most once a minute (core/store/users.py):
a request within a minute of the one recorded writes nothing.

Idempotency-Key is not honoured on create: a replay would have to keep the
plaintext key in the idempotency table, and no key is stored anywhere but as
a digest. A retried create mints a second key."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import falcon
from psycopg_pool import ConnectionPool

from e2a.api.v1 import access, bodies, cursors, params
from e2a.api.v1.errors import error, not_found
from e2a.api.v1.resources.account import confirmed
from e2a.core.accounts import registration as accounts
from e2a.core.config import Config
from e2a.core.store import agents as agent_store
from e2a.core.store import keys as key_store
from e2a.core.timefmt import rfc3339

_CREATE = {"name": bodies.Field(str, max_length=200), "scope": bodies.Field(str),
           "agent_email": bodies.Field(str, max_length=320),
           "expires_at": bodies.Field(str)}


def view(row: dict[str, Any]) -> dict[str, Any]:
    found = {"id": row["id"], "name": row["name"], "key_prefix": row["key_prefix"],
             "scope": "agent" if row["agent_id"] else "account",
             "created_at": rfc3339(row["created_at"])}
    if row["agent_email"]:
        found["agent_email"] = row["agent_email"]
    if row["last_used_at"] is not None:
        found["last_used_at"] = rfc3339(row["last_used_at"])
    if row["expires_at"] is not None:
        found["expires_at"] = rfc3339(row["expires_at"])
    return found


def _expiry(value: str) -> datetime:
    """A moment ahead, as CreateAPIKeyRequest's expires_at must be."""
    refused = error(400, "invalid_expires_at", "expires_at must be an RFC 3339 date-time "
                    "in the future", fields=[{"location": "body.expires_at",
                                              "message": "must be a future date-time"}])
    try:
        moment = params.parse_datetime(value)
    except (ValueError, OverflowError):
        raise refused from None
    if moment <= datetime.now(UTC):
        raise refused
    return moment


class ApiKeys:
    def __init__(self, cfg: Config, pool: ConnectionPool) -> None:
        self._secret = cfg.secrets.hmac_secret
        self._pool = pool

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        caller = access.account_key(req)
        limit = params.limit(req)
        bound = cursors.scope(req, "api-keys")
        after = cursors.position(req, self._secret, bound)
        with self._pool.connection() as conn:
            rows = key_store.keys_for_user(conn, caller.user_id)
        # Live keys; an account has few.
        resp.media = cursors.page_whole([r for r in rows if r["revoked_at"] is None], limit,
                                        after, self._secret, bound, view)

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        caller = access.account_key(req)
        body = bodies.read(req, _CREATE)
        expires_at = _expiry(body["expires_at"]) if "expires_at" in body else None
        scope = body.get("scope", "account")
        if scope not in ("account", "agent") or (scope == "agent") != ("agent_email" in body):
            raise error(400, "invalid_scope", "scope is account, or agent with agent_email")
        with self._pool.connection() as conn:
            agent_id = None
            if scope == "agent":
                agent = agent_store.agent_for_user(conn, caller.user_id, body["agent_email"])
                if agent is None:
                    raise not_found(f"agent {body['agent_email']} not found")
                agent_id = agent["id"]
            with conn.transaction():
                key = accounts.issue_key(conn, caller.user_id, name=body.get("name", ""),
                                         agent_id=agent_id, expires_at=expires_at)
            row = key_store.key_by_id(conn, key.id)
        resp.status = falcon.HTTP_201
        resp.media = {**view(row), "key": key.key}


class ApiKey:
    def __init__(self, pool: ConnectionPool) -> None:
        self._pool = pool

    def on_delete(self, req: falcon.Request, resp: falcon.Response, id: str) -> None:
        caller = access.account_key(req)
        with self._pool.connection() as conn:
            row = key_store.key_by_id(conn, id)
            if row is None or row["user_id"] != caller.user_id or row["revoked_at"]:
                raise not_found(f"API key {id} not found")
            confirmed(req)
            with conn.transaction():
                key_store.revoke_key(conn, id)
        resp.media = {"deleted": True, "id": id}
