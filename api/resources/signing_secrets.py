"""``/api/v1/users/me/signing-secrets[/{id}]``: the keys of the X-E2A-Auth-*
signatures on the user's mail. The plain secret is in the creation response
only; lists show its prefix."""

from __future__ import annotations

from typing import Any

import falcon

from e2a.api import errors, inputs
from e2a.api.openapi import parts as opdoc
from e2a.api.resources.account import ACCOUNT_ERRORS, AccountResource
from e2a.core.accounts import signing_secrets
from e2a.core.accounts.registration import AccountError
from e2a.core.store import signing as signing_store
from e2a.core.timefmt import rfc3339


def summary(row: dict[str, Any], secret: str = "") -> dict[str, Any]:
    return {"id": row["id"], "name": row["name"], "secret": secret,
            "secret_prefix": row["secret_prefix"], "created_at": rfc3339(row["created_at"]),
            "last_signed_at": rfc3339(row["last_signed_at"])}


class SigningSecrets(AccountResource):
    doc = {
        "get": {
            "operationId": "listSigningSecrets",
            "summary": "List your signing secrets",
            "description": "Newest first; the newest signs new mail. The secret itself is "
                           "never listed (secret is empty): it is shown once, at creation.",
            "responses": {"200": opdoc.ok("ListSigningSecretsResponse"), **ACCOUNT_ERRORS},
        },
        "post": {
            "operationId": "createSigningSecret",
            "summary": "Create a signing secret",
            "description": f"At most {signing_secrets.MAX_SECRETS} per user. The response "
                           "holds the secret (whsec_<64 hex>); it cannot be read again.",
            "requestBody": {"required": False, "content": {"application/json": {
                "schema": opdoc.ref("internal_agent.CreateSigningSecretRequest")}}},
            "responses": {"201": opdoc.ok("CreateSigningSecretResponse", "Created"),
                          "400": opdoc.error("Bad request, or the cap is reached"),
                          **ACCOUNT_ERRORS},
        },
    }

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
    doc = {"delete": {
        "operationId": "deleteSigningSecret",
        "summary": "Delete a signing secret",
        "description": "Refused while it is the user's last one: create its replacement "
                       "first.",
        "parameters": [opdoc.path_param("id", "Signing secret id (sec_...)")],
        "responses": {"204": {"description": "Deleted"},
                      "400": opdoc.error("It is the last signing secret"),
                      "404": opdoc.error("No such secret of this user"), **ACCOUNT_ERRORS},
    }}

    def on_delete(self, req: falcon.Request, resp: falcon.Response, id: str) -> None:
        principal = self.principal(req)
        try:
            with self._pool.connection() as conn:
                signing_secrets.delete(conn, principal.user_id, id)
        except AccountError as exc:
            raise errors.rule_broken(exc) from None
        resp.status = falcon.HTTP_204
