"""Users' mail domains: the rules of registering, verifying, promoting and
deleting one, shared by the API and the CLI. DNS itself is core.domaindns."""

from __future__ import annotations

import secrets
from datetime import timedelta
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool

from e2a.core.accounts import dkimkeys, domaindns, domainname
from e2a.core.accounts.domaindns import Probe
from e2a.core.accounts.registration import AccountError
from e2a.core.config import Config
from e2a.core.ids import new_id
from e2a.core.store import domains as domain_store
from e2a.core.store import users as user_store

Row = dict[str, Any]

# Expired claims removed per worker pass (one short transaction).
EXPIRY_BATCH = 1000


def reserved(cfg: Config, name: str) -> bool:
    """Names the deployment keeps: the shared domain and everything under it
    (decided by the configuration, not by the table, so a renamed shared
    domain is reserved at once), and the mail host's own name."""
    return (domainname.is_within(name, cfg.mail.shared_domain)
            or name == cfg.mail.hostname.lower().rstrip("."))


def register(conn: psycopg.Connection, cfg: Config, user_id: str, name: object) -> Row:
    """A new domain of this user with a fresh DKIM key pair. The caller's
    transaction decides whether it stays."""
    if not isinstance(name, str):
        raise AccountError("domain must be a string")
    try:
        domain = domainname.normalize(name)
    except domainname.DomainNameError as exc:
        raise AccountError(str(exc)) from None
    if reserved(cfg, domain):
        raise AccountError(f"domain {domain} is reserved by this deployment", code="conflict")
    # A claim past its time holds the name no longer, even before the
    # worker comes by (expire_claims).
    domain_store.delete_expired_claims(conn, claim_lifetime(cfg), 1, domain=domain)
    # Made before the user's lock is taken, so the lock is held for the
    # insert only, not for the key generation (the slow part).
    pair = dkimkeys.generate()
    if not user_store.lock_user(conn, user_id):
        raise AccountError("user not found", code="not_found")
    user = user_store.user_by_id(conn, user_id)
    if domain_store.count_for_user(conn, user_id) >= user["max_domains"]:
        raise AccountError(f"at most {user['max_domains']} domains per account",
                           code="limit_reached")
    row = domain_store.create_domain(conn, new_id("dom"), user_id, domain,
                                     secrets.token_hex(16), pair.selector, pair.public_key,
                                     dkimkeys.sealed(cfg, domain, pair))
    if row is None:
        # The same answer whoever holds it: a name's owner is nobody's business.
        raise AccountError(f"domain {domain} is already registered", code="conflict")
    return row


def claim_lifetime(cfg: Config) -> timedelta:
    return timedelta(seconds=cfg.domains.unverified_expiry_seconds)


def expire_claims(cfg: Config, conn: psycopg.Connection) -> int:
    """The worker's job: remove one batch of domains registered longer ago
    than domains.unverified_expiry_seconds and never verified, so that a
    name nobody proved is not held forever. A domain once verified stays (its
    agents and DKIM key are in use even when a check later fails)."""
    return domain_store.delete_expired_claims(conn, claim_lifetime(cfg), EXPIRY_BATCH)


def record_probe(conn: psycopg.Connection, domain_id: str, result: Probe, *,
                 need_mx: bool = False) -> Row | None:
    """Store what a verify probe found; None when the domain went meanwhile.
    The probe decides ``verified``, both ways: a domain whose token was taken
    down stops being verified at its next check. The legacy API asks for the
    ownership token alone; /v1 promises more (``need_mx``): the inbound MX
    must point at us too, so a verified domain really receives mail."""
    return domain_store.record_check(conn, domain_id, result.verifies(need_mx=need_mx))


def sending_status(row: Row) -> str:
    """Whether agents of the domain send as themselves (/v1's outbound axis):
    mail leaves through our own Postfix, signed with the domain's DKIM key,
    so there is no provider identity to wait for; a verified domain with a
    key sends. A legacy row without a key signs nothing."""
    if not row["dkim_public_key"]:
        return "none"
    return "verified" if row["verified"] else "pending"


def verify(pool: ConnectionPool, cfg: Config, row: Row, *,
           need_mx: bool = False) -> tuple[Row | None, Probe]:
    """Probe DNS for the domain ``row`` and record what it found (``need_mx``:
    see record_probe): the domain as stored now (None when it went
    meanwhile) and the probe. No pooled connection is held while DNS takes
    its time. Raises domaindns.DnsUnavailable, with the time of the attempt
    recorded."""
    try:
        probe = domaindns.probe(cfg, row)
    except domaindns.DnsUnavailable:
        with pool.connection() as conn:
            domain_store.touch_checked(conn, row["id"])
        raise
    with pool.connection() as conn:
        return record_probe(conn, row["id"], probe, need_mx=need_mx), probe


def make_primary(conn: psycopg.Connection, user_id: str, row: Row) -> Row:
    user_store.lock_user(conn, user_id)
    return domain_store.make_primary(conn, user_id, row["id"])


def delete(conn: psycopg.Connection, user_id: str, row: Row) -> None:
    # The lock keeps an agent from being registered on it between the count
    # and the delete (agent registration takes the same lock).
    user_store.lock_user(conn, user_id)
    agents = domain_store.agent_count(conn, row["id"])
    if agents:
        raise AccountError(f"domain {row['domain']} still has {agents} agent(s); "
                           "delete them first", code="has_agents")
    domain_store.delete_domain(conn, row["id"])

