"""``/api/v1/domains``: a user's own mail domains.

Account endpoints: an agent-scoped key gets 403 on every one of them, before
any lookup, so the answer says nothing about which domains exist. Another
user's domain is a 404, the same as no domain at all.
"""

from __future__ import annotations

from typing import Any

import falcon
import psycopg
from psycopg_pool import ConnectionPool

from e2a.api import auth, errors, inputs, views
from e2a.core.accounts import domaindns, domainname, domains
from e2a.core.accounts.registration import AccountError
from e2a.core.config import Config
from e2a.core.store import domains as domain_store

# A resolver that does not answer is usually back within the minute.
DNS_RETRY_AFTER = 30


def owned(conn: psycopg.Connection, principal: auth.Principal, name: str) -> dict[str, Any]:
    """The caller's domain by the name in the path, else 404."""
    try:
        domain = domainname.normalize(name)
    except domainname.DomainNameError:
        raise errors.not_found(f"domain {name} not found") from None
    row = domain_store.domain_for_user(conn, principal.user_id, domain)
    if row is None:
        raise errors.not_found(f"domain {domain} not found")
    return row


class Domains:
    def __init__(self, cfg: Config, pool: ConnectionPool) -> None:
        self._cfg = cfg
        self._pool = pool

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        auth.require_account_key(req.context.principal)
        with self._pool.connection() as conn:
            rows = domain_store.domains_for_user(conn, req.context.principal.user_id)
        resp.media = {"domains": [views.domain(self._cfg, r) for r in rows]}

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        principal = req.context.principal
        auth.require_account_key(principal)
        body = inputs.json_object(req)
        if not body.get("domain"):
            raise errors.bad_request("domain is required", param="domain")
        try:
            with self._pool.connection() as conn:
                row = domains.register(conn, self._cfg, principal.user_id, body["domain"])
        except AccountError as exc:
            raise errors.rule_broken(exc) from None
        resp.status = falcon.HTTP_201
        resp.media = views.domain(self._cfg, row)


class Domain:
    def __init__(self, cfg: Config, pool: ConnectionPool) -> None:
        self._cfg = cfg
        self._pool = pool

    def on_get(self, req: falcon.Request, resp: falcon.Response, domain: str) -> None:
        principal = req.context.principal
        auth.require_account_key(principal)
        with self._pool.connection() as conn:
            row = owned(conn, principal, domain)
            count = domain_store.agent_count(conn, row["id"])
        resp.media = views.domain(self._cfg, {**row, "agent_count": count})

    def on_patch(self, req: falcon.Request, resp: falcon.Response, domain: str) -> None:
        principal = req.context.principal
        auth.require_account_key(principal)
        body = inputs.json_object(req)
        primary = body.get("is_primary")
        if primary is not None and not isinstance(primary, bool):
            raise errors.bad_request("is_primary must be true or false", param="is_primary")
        with self._pool.connection() as conn:
            row = owned(conn, principal, domain)
            if primary:
                row = domains.make_primary(conn, principal.user_id, row)
            count = domain_store.agent_count(conn, row["id"])
        resp.media = views.domain(self._cfg, {**row, "agent_count": count})

    def on_delete(self, req: falcon.Request, resp: falcon.Response, domain: str) -> None:
        principal = req.context.principal
        auth.require_account_key(principal)
        try:
            with self._pool.connection() as conn:
                domains.delete(conn, principal.user_id, owned(conn, principal, domain))
        except AccountError as exc:
            raise errors.rule_broken(exc) from None
        resp.status = falcon.HTTP_204


class DomainVerification:
    def __init__(self, cfg: Config, pool: ConnectionPool) -> None:
        self._cfg = cfg
        self._pool = pool

    def on_post(self, req: falcon.Request, resp: falcon.Response, domain: str) -> None:
        principal = req.context.principal
        auth.require_account_key(principal)
        with self._pool.connection() as conn:
            row = owned(conn, principal, domain)
        try:
            checked, probe = domains.verify(self._pool, self._cfg, row)
        except domaindns.DnsUnavailable as exc:
            raise errors.ApiError(503, "dns_unavailable", f"{exc}; try again later",
                                  headers={"Retry-After": str(DNS_RETRY_AFTER)}) from None
        if checked is None:
            raise errors.not_found(f"domain {row['domain']} not found")
        resp.status = falcon.HTTP_200 if checked["verified"] else falcon.HTTP_412
        resp.media = views.domain_verification(checked, probe)
