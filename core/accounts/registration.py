"""Users, keys and agents: the rules around creating them, shared by the CLI
and the API."""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

from e2a.core.accounts import apikeys, dkimkeys, domainname
from e2a.core.config import Config
from e2a.core.ids import new_id
from e2a.core.protection import config as protection
from e2a.core.store import agents as agent_store
from e2a.core.store import domains as domain_store
from e2a.core.store import users as user_store
from e2a.core.webhooks import urls as webhookurl

_EMAIL = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+\Z")
_SLUG = re.compile(r"^[a-z0-9](?:[a-z0-9._-]{0,62}[a-z0-9])?\Z")
AGENT_MODES = ("local", "cloud")
EXPIRATION_ACTIONS = ("reject", "approve")
HITL_MAX_TTL = 604800  # 7 days, the most a held message may wait for a human
MAX_AGENT_NAME = 255
MAX_LOCAL_PART = 64
# Role addresses of the shared domain (RFC 2142 and the bounce sender) belong
# to the operator, not to whoever registers them first.
RESERVED_SLUGS = frozenset({"postmaster", "abuse", "hostmaster", "webmaster", "security",
                            "mailer-daemon", "noc"})
# Local parts the server gives meaning to on every domain of ours: the
# approve-by-reply addresses (core/outbound/replyaddress.py) and VERP return paths
# (core/mta/verp.py). An agent there would receive, or be mistaken for, what
# approves held mail or reports bounces.
RESERVED_PREFIXES = ("approve-", "bounces+")


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
              agent_id: str | None = None, expires_at: datetime | None = None) -> NewKey:
    """``expires_at``: when the key stops working (None: never); the caller
    has checked that it lies ahead."""
    key = apikeys.generate()
    row = user_store.create_api_key(conn, new_id("key"), user_id, apikeys.digest(key),
                                    apikeys.prefix(key), name, agent_id, expires_at)
    return NewKey(row["id"], key)


def seed_shared_domain(conn: psycopg.Connection, cfg: Config) -> None:
    """The shared domain's row, with a DKIM key pair for its outbound mail;
    idempotent, and safe when several processes start at once."""
    if not cfg.mail.shared_domain:
        return
    row = agent_store.ensure_shared_domain(conn, new_id("dom"), cfg.mail.shared_domain,
                                           secrets.token_hex(16))
    if row["dkim_private_key_enc"] is None:
        pair = dkimkeys.generate()
        domain_store.set_dkim_key(conn, row["id"], pair.selector, pair.public_key,
                                  dkimkeys.sealed(cfg, row["domain"], pair))


def register_agent(conn: psycopg.Connection, cfg: Config, user_id: str, *,
                   slug: str = "", email: str = "", name: str = "",
                   agent_mode: str = "local", webhook_url: str = "") -> dict[str, Any]:
    """An agent by slug on the shared domain, or by address on a verified domain
    this user owns. The caller's transaction decides whether it stays."""
    for label, value in (("slug", slug), ("email", email), ("name", name),
                         ("agent_mode", agent_mode), ("webhook_url", webhook_url)):
        if not isinstance(value, str):
            raise AccountError(f"{label} must be a string")
    if bool(slug) == bool(email):
        raise AccountError("give exactly one of slug or email")
    if agent_mode not in AGENT_MODES:
        raise AccountError("agent_mode must be local or cloud")
    if len(name) > MAX_AGENT_NAME:
        raise AccountError(f"name must be at most {MAX_AGENT_NAME} characters")
    webhook_url = checked_webhook_url(cfg, agent_mode, webhook_url)
    if slug:
        if not cfg.mail.shared_domain:
            raise AccountError("slug registration is disabled: no shared domain configured")
        if not _SLUG.match(slug):
            raise AccountError("slug must be lowercase letters, digits, '.', '_' or '-'")
        email = f"{slug}@{cfg.mail.shared_domain}"
    email = _normalize_address(email)
    local, _, domain_name = email.rpartition("@")
    # The configured one only: a shared domain renamed since is nobody's to use.
    shared = bool(cfg.mail.shared_domain) and domain_name == cfg.mail.shared_domain
    if shared:
        # The same rules whether the address came as a slug or as an email.
        if not _SLUG.match(local):
            raise AccountError("slug must be lowercase letters, digits, '.', '_' or '-'")
        if local in RESERVED_SLUGS:
            raise AccountError(f"{email} is reserved", code="conflict")
    if reserved_address(cfg, email):
        raise AccountError(f"{email} is reserved for the server's own mail", code="conflict")
    domain = agent_store.domain_by_name(conn, domain_name)
    if domain is None and shared:
        # The start-up seed did not run (the database was down then).
        seed_shared_domain(conn, cfg)
        domain = agent_store.domain_by_name(conn, domain_name)
    if domain is None or not ((shared and domain["is_shared"]) or domain["user_id"] == user_id):
        raise AccountError(f"domain of {email} is not registered to you",
                           code="domain_not_found")
    if not domain["verified"]:
        raise AccountError(f"domain {domain['domain']} is not verified",
                           code="domain_not_verified")
    if not user_store.lock_user(conn, user_id):
        raise AccountError("user not found", code="not_found")
    limit = user_store.user_by_id(conn, user_id)["max_agents"]
    if agent_store.count_for_user(conn, user_id) >= limit:
        raise AccountError(f"at most {limit} agents per account", code="limit_reached")
    agent = agent_store.create_agent(conn, new_id("ag"), user_id, domain["id"], email, name,
                                     agent_mode, webhook_url)
    if agent is None:
        # Addresses are public, so saying it is taken reveals nothing.
        raise AccountError(f"agent {email} exists already", code="conflict")
    return agent


def reserved_address(cfg: Config, email: str) -> bool:
    """Whether ``email`` (normalized) is the server's own, never an agent's:
    the owner notifications' sender (hitl.notify_from, whatever it is
    configured to), every address of a reply domain of its own (one that is
    not the shared domain, where agents live too), and the reply and VERP
    shapes on any domain. An agent at the notify_from address could send
    mail that looks like an approval request, or read the owners' replies."""
    local, _, domain = email.rpartition("@")
    if email == cfg.hitl.notify_from.lower():
        return True
    if domain == cfg.hitl.reply_domain and domain != cfg.mail.shared_domain:
        return True
    return local.startswith(RESERVED_PREFIXES)


# What the legacy agent update takes (agents.protection is /v1's, through
# core/protection/config.py).
LEGACY_UPDATABLE = ("agent_mode", "webhook_url", "hitl_enabled", "hitl_ttl_seconds",
                    "hitl_expiration_action")


def update_agent(conn: psycopg.Connection, cfg: Config, agent: dict[str, Any],
                 fields: dict[str, Any]) -> dict[str, Any]:
    """Apply the fields given (a JSON null counts as not given) and return the
    agent as it is now. Every field is checked before anything changes."""
    given = {k: v for k, v in fields.items() if k in LEGACY_UPDATABLE and v is not None}
    mode = given.get("agent_mode", agent["agent_mode"])
    if mode not in AGENT_MODES:
        raise AccountError("agent_mode must be local or cloud")
    if "webhook_url" in given and not isinstance(given["webhook_url"], str):
        raise AccountError("webhook_url must be a string")
    url = given.get("webhook_url", agent["webhook_url"])
    if "webhook_url" in given or "agent_mode" in given:
        # A stored URL was checked when it was set; only a new one is checked now.
        if "webhook_url" in given:
            url = checked_webhook_url(cfg, mode, url)
        elif mode == "cloud" and not url:
            raise AccountError("webhook_url is required for cloud mode")
    if "hitl_enabled" in given and not isinstance(given["hitl_enabled"], bool):
        raise AccountError("hitl_enabled must be true or false")
    ttl = given.get("hitl_ttl_seconds", agent["hitl_ttl_seconds"])
    if isinstance(ttl, bool) or not isinstance(ttl, int) or not 1 <= ttl <= HITL_MAX_TTL:
        raise AccountError(f"hitl_ttl_seconds must be an integer from 1 to {HITL_MAX_TTL}")
    action = given.get("hitl_expiration_action", agent["hitl_expiration_action"])
    if action not in EXPIRATION_ACTIONS:
        raise AccountError("hitl_expiration_action must be reject or approve")
    if "webhook_url" in given:
        given["webhook_url"] = url
    if "hitl_enabled" in given:
        # The legacy switch is the outbound part of the protection settings.
        config = protection.with_legacy_hitl(protection.of_agent(agent),
                                             given["hitl_enabled"])
        given.update(protection=protection.stored(config), hitl_enabled=config.hold_all)
    agent_store.update_agent(conn, agent["id"], given)
    return agent_store.agent_by_email(conn, agent["email"])


def checked_webhook_url(cfg: Config, agent_mode: str, webhook_url: str) -> str:
    """The webhook URL an agent in ``agent_mode`` may have: required and
    checked for cloud mode; for local mode, checked when given."""
    if agent_mode == "cloud" and not webhook_url:
        raise AccountError("webhook_url is required for cloud mode")
    if not webhook_url:
        return ""
    try:
        return webhookurl.check(webhook_url, allow_loopback=cfg.webhooks.allow_loopback)
    except webhookurl.WebhookUrlError as exc:
        raise AccountError(str(exc)) from None


def _normalize_address(email: str) -> str:
    local, at, domain = email.strip().rpartition("@")
    if not at or not local:
        raise AccountError(f"not an email address: {email!r}")
    try:
        domain = domainname.normalize(domain)
    except domainname.DomainNameError as exc:
        raise AccountError(f"not an email address: {email!r} ({exc})") from None
    address = f"{local.lower()}@{domain}"
    if len(local) > MAX_LOCAL_PART or not valid_email(address):
        raise AccountError(f"not an email address: {email!r}")
    return address


def rename_agent(conn: psycopg.Connection, agent: dict[str, Any], name: str) -> dict[str, Any]:
    """The agent with its new display name."""
    if len(name) > MAX_AGENT_NAME:
        raise AccountError(f"name must be at most {MAX_AGENT_NAME} characters")
    agent_store.rename_agent(conn, agent["id"], name)
    return {**agent, "name": name}
