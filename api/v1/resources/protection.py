"""``/v1/agents/{email}/protection[/first-contact]``: an agent's protection
settings (core/protection/config.py). Account keys only: the agent itself
must not loosen what screens its mail. PUT is wholesale; first-contact
review, an e2a extension, has its own resource so that the SDK's PUT (which
does not know it) leaves it alone."""

from __future__ import annotations

from typing import Any

import falcon
from psycopg_pool import ConnectionPool

from e2a.api.errors import ApiError
from e2a.api.v1 import access
from e2a.api.v1.errors import error
from e2a.core.accounts import protection as settings
from e2a.core.protection import config as protection


def _body(req: falcon.Request) -> Any:
    return req.get_media(default_when_empty=None)


def _refused(exc: protection.ConfigError) -> ApiError:
    if isinstance(exc, protection.UnknownField):
        return error(422, "invalid_request", str(exc))
    return error(400, "invalid_request", str(exc))


class AgentProtection:
    def __init__(self, pool: ConnectionPool) -> None:
        self._pool = pool

    def on_get(self, req: falcon.Request, resp: falcon.Response, email: str) -> None:
        access.account_key(req)
        with self._pool.connection() as conn:
            row = access.agent(conn, req, email, account_only=True)
        resp.media = protection.view(protection.of_agent(row))

    def on_put(self, req: falcon.Request, resp: falcon.Response, email: str) -> None:
        access.account_key(req)
        body = _body(req)
        with self._pool.connection() as conn, conn.transaction():
            row = access.agent(conn, req, email, account_only=True)
            try:
                row = settings.save(conn, row, body)
            except protection.ConfigError as exc:
                raise _refused(exc) from None
        resp.media = protection.view(protection.of_agent(row))


class FirstContact:
    def __init__(self, pool: ConnectionPool) -> None:
        self._pool = pool

    def on_get(self, req: falcon.Request, resp: falcon.Response, email: str) -> None:
        access.account_key(req)
        with self._pool.connection() as conn:
            row = access.agent(conn, req, email, account_only=True)
        resp.media = protection.first_contact_view(protection.of_agent(row).first_contact)

    def on_put(self, req: falcon.Request, resp: falcon.Response, email: str) -> None:
        access.account_key(req)
        body = _body(req)
        with self._pool.connection() as conn, conn.transaction():
            row = access.agent(conn, req, email, account_only=True)
            try:
                first = settings.save_first_contact(conn, row, body)
            except protection.ConfigError as exc:
                raise _refused(exc) from None
        resp.media = protection.first_contact_view(first)
