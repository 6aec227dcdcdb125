"""Users, keys and agents: the rules around creating them, shared by the CLI
and the API."""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from typing import Any

import psycopg

from e2a.core import apikeys
from e2a.core.config import Config
from e2a.core.ids import new_id
from e2a.core.store import agents as agent_store
from e2a.core.store import users as user_store

_EMAIL = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$")
_SLUG = re.compile(r"^[a-z0-9](?:[a-z0-9._-]{0,62}[a-z0-9])?$")


class AccountError(Exception):
    """A request that breaks a rule; str() says which."""

    def __init__(self, message: str, *, code: str = "invalid_request") -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class NewKey:
    id: str
    key: str  # the only time the plain key exists


def valid_email(value: str) -> bool:
    return bool(_EMAIL.match(value)) and len(value) <= 254


def create_user(conn: psycopg.Connection, email: str, name: str = "") -> dict[str, Any]:
    if not valid_email(email):
        raise AccountError(f"not an email address: {email!r}")
    if user_store.user_by_email(conn, email):
        raise AccountError(f"a user with email {email} exists already", code="conflict")
    return user_store.create_user(conn, new_id("usr"), email.strip(), name)


def issue_key(conn: psycopg.Connection, user_id: str, *, name: str = "",
              agent_id: str | None = None) -> NewKey:
    key = apikeys.generate()
    row = user_store.create_api_key(conn, new_id("key"), user_id, apikeys.digest(key),
                                    apikeys.prefix(key), name, agent_id)
    return NewKey(row["id"], key)


def seed_shared_domain(conn: psycopg.Connection, cfg: Config) -> None:
    if cfg.mail.shared_domain:
        agent_store.ensure_shared_domain(conn, new_id("dom"), cfg.mail.shared_domain,
                                         secrets.token_hex(16))


def register_agent(conn: psycopg.Connection, cfg: Config, user_id: str, *,
                   slug: str = "", email: str = "", name: str = "",
                   agent_mode: str = "local", webhook_url: str = "") -> dict[str, Any]:
    """An agent by slug on the shared domain, or by address on a verified domain
    this user owns."""
    if bool(slug) == bool(email):
        raise AccountError("give exactly one of slug or email")
    if agent_mode not in ("local", "cloud"):
        raise AccountError("agent_mode must be local or cloud")
    if agent_mode == "cloud" and not webhook_url:
        raise AccountError("webhook_url is required for cloud mode")
    if slug:
        if not cfg.mail.shared_domain:
            raise AccountError("slug registration is disabled: no shared domain configured")
        if not _SLUG.match(slug):
            raise AccountError("slug must be lowercase letters, digits, '.', '_' or '-'")
        email = f"{slug}@{cfg.mail.shared_domain}"
    email = email.strip().lower()
    if not valid_email(email):
        raise AccountError(f"not an email address: {email!r}")
    domain = agent_store.domain_by_name(conn, email.rpartition("@")[2])
    if domain is None or not (domain["is_shared"] or domain["user_id"] == user_id):
        raise AccountError(f"domain of {email} is not registered to you", code="not_found")
    if not domain["verified"]:
        raise AccountError(f"domain {domain['domain']} is not verified", code="forbidden")
    if agent_store.agent_by_email(conn, email):
        raise AccountError(f"agent {email} exists already", code="conflict")
    return agent_store.create_agent(conn, new_id("ag"), user_id, domain["id"], email, name,
                                    agent_mode, webhook_url)
