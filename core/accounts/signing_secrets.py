"""A user's signing secrets: the keys of the X-E2A-Auth-* signatures on their
mail (docs/contract.md). The newest one signs; older ones stay so a client can roll
over. The plain secret is shown once, at creation.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

import psycopg

from e2a.core.accounts.registration import AccountError
from e2a.core.ids import new_id
from e2a.core.store import signing as signing_store
from e2a.core.store import users as user_store

MAX_SECRETS = 5
MAX_NAME_LENGTH = 100


@dataclass(frozen=True)
class NewSecret:
    row: dict[str, Any]  # the summary columns (no secret)
    secret: str  # the only time the plain secret leaves the store


def generate() -> str:
    return "whsec_" + secrets.token_hex(32)


def create(conn: psycopg.Connection, user_id: str, name: str = "") -> NewSecret:
    if len(name) > MAX_NAME_LENGTH:
        raise AccountError(f"name must be at most {MAX_NAME_LENGTH} characters")
    user_store.lock_user(conn, user_id)
    if signing_store.count_secrets(conn, user_id) >= MAX_SECRETS:
        raise AccountError(f"at most {MAX_SECRETS} signing secrets per user: delete one first",
                           code="limit_reached")
    secret = generate()
    row = signing_store.create_secret(conn, new_id("sec"), user_id, name, secret)
    return NewSecret(row, secret)


def delete(conn: psycopg.Connection, user_id: str, secret_id: str) -> None:
    """Refuses to remove the last one: mail would silently fall back to the
    deployment's secret, which the user's clients do not hold."""
    user_store.lock_user(conn, user_id)
    if not signing_store.secret_exists(conn, user_id, secret_id):
        raise AccountError(f"signing secret {secret_id} not found", code="not_found")
    if signing_store.count_secrets(conn, user_id) <= 1:
        raise AccountError("cannot delete the last signing secret: create a replacement first",
                           code="last_secret")
    signing_store.delete_secret(conn, user_id, secret_id)
