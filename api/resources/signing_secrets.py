"""``/api/v1/users/me/signing-secrets[/{id}]``: the keys of the X-E2A-Auth-*
signatures on the user's mail. The plain secret is in the creation response
only; lists show its prefix."""

from __future__ import annotations

from typing import Any

import falcon

from e2a.api import errors, inputs
from e2a.api.resources.account import AccountResource
from e2a.core.accounts import signing_secrets
from e2a.core.accounts.registration import AccountError
from e2a.core.store import signing as signing_store
from e2a.core.timefmt import rfc3339


def summary(row: dict[str, Any], secret: str = "") -> dict[str, Any]:
    return {"id": row["id"], "name": row["name"], "secret": secret,
            "secret_prefix": row["secret_prefix"], "created_at": rfc3339(row["created_at"]),
            "last_signed_at": rfc3339(row["last_signed_at"])}


class SigningSecrets(AccountResource):
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        principal = self.principal(req)
        with self._pool.connection() as conn:
            rows = signing_store.list_secrets(conn, principal.user_id)
        resp.media = {"secrets": [summary(row) for row in rows]}

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        principal = self.principal(req)
        name = inputs.json_object(req).get("name") or ""
        if not isinstance(name, str):
            raise errors.bad_request("name must be a string", param="name")
        try:
            with self._pool.connection() as conn:
                created = signing_secrets.create(conn, principal.user_id, name.strip())
        except AccountError as exc:
            raise errors.rule_broken(exc) from None
        resp.status = falcon.HTTP_201
        resp.media = summary(created.row, created.secret)


class SigningSecret(AccountResource):
    def on_delete(self, req: falcon.Request, resp: falcon.Response, id: str) -> None:
        principal = self.principal(req)
        try:
            with self._pool.connection() as conn:
                signing_secrets.delete(conn, principal.user_id, id)
        except AccountError as exc:
            raise errors.rule_broken(exc) from None
        resp.status = falcon.HTTP_204
