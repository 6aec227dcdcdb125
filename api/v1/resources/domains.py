"""``/v1/domains[/{domain}[/verify]]``: a user's own mail domains (account
keys only), over the legacy resource's core (core/accounts/domains.py, DNS
in core/accounts/domaindns.py, one DKIM key pair per domain).

What /v1 adds: ``verified`` needs the inbound MX as well as the ownership
TXT; re-registering a domain one already owns answers that domain (201); the
records as a list, each with its ``purpose``; and the outbound axis. Mail
leaves through this deployment's own Postfix, DKIM-signed with the domain's
key, so there is no provider identity to provision: a verified domain sends
as itself (``sending_status`` verified), no sending ramp applies (exempt), and
a deletion has nothing to tear down (``sending_teardown`` confirmed)."""

from __future__ import annotations

from typing import Any

import falcon
import psycopg
from psycopg_pool import ConnectionPool

from e2a.api import idempotent
from e2a.api.idempotent import Answer, Keep
from e2a.api.resources.domains import owned
from e2a.api.v1 import access, bodies, cursors, params
from e2a.api.v1.errors import error
from e2a.api.v1.resources.account import confirmed
from e2a.core.accounts import domaindns, domainname, domains
from e2a.core.accounts.registration import AccountError
from e2a.core.config import Config
from e2a.core.store import domains as domain_store
from e2a.core.store import users as user_store
from e2a.core.timefmt import rfc3339

_REGISTER = {"domain": bodies.Field(str, required=True, max_length=4 * domainname.MAX_LENGTH)}
# The legacy DNSRecords' keys -> (type, purpose) of a /v1 DNSRecord.
_RECORDS = (("txt", "TXT", "ownership"), ("mx", "MX", "inbound_mx"), ("dkim", "TXT", "dkim"))
_NO_RAMP = {"status": "exempt", "daily_recipient_limit": 0, "recipients_used_today": 0,
            "active_days": 0, "ramp_days": 0}


def domain_view(cfg: Config, row: dict[str, Any], agent_count: int) -> dict[str, Any]:
    """DomainView."""
    inbound = "verified" if row["verified"] else "pending"
    sending = domains.sending_status(row)
    status = {"ownership": inbound, "inbound_mx": inbound,
              "dkim": "verified" if sending == "verified" else "pending"}
    published = domaindns.records(cfg, row)
    records = []
    for key, kind, purpose in _RECORDS:
        found = published[key]
        if not found["value"]:
            continue
        records.append({"type": kind, "name": found["host"], "value": found["value"],
                        "priority": found["priority"] if kind == "MX" else None,
                        "purpose": purpose, "status": status[purpose]})
    view: dict[str, Any] = {
        "domain": row["domain"], "verified": row["verified"],
        "verification_token": row["verification_token"], "agent_count": agent_count,
        "created_at": rfc3339(row["created_at"]), "sending_status": sending,
        "capabilities": {"inbound": inbound, "outbound": sending},
        "dns_records": records, "sending_ramp": dict(_NO_RAMP)}
    for name in ("verified_at", "last_checked_at"):
        if row[name] is not None:
            view[name] = rfc3339(row[name])
    if row["last_checked_at"] is not None and sending != "none":
        view["sending_last_checked_at"] = rfc3339(row["last_checked_at"])
    return view


def _registered(conn: psycopg.Connection, cfg: Config, user_id: str, name: str) -> dict[str, Any]:
    """The caller's domain ``name``, registered now unless it already was."""
    try:
        normal = domainname.normalize(name)
    except domainname.DomainNameError as exc:
        raise error(400, "invalid_domain", str(exc), fields=[
            {"location": "body.domain", "message": str(exc)}]) from None
    if domains.reserved(cfg, normal):
        raise error(400, "reserved_domain", f"{normal} is reserved by this deployment")
    mine = domain_store.domain_for_user(conn, user_id, normal)
    if mine is not None:
        return mine
    try:
        return domains.register(conn, cfg, user_id, normal)
    except AccountError as exc:
        if exc.code == "limit_reached":
            user = user_store.user_by_id(conn, user_id) or {}
            raise error(402, "limit_exceeded", str(exc), resource="domains",
                        limit=user.get("max_domains", 0),
                        current=domain_store.count_for_user(conn, user_id)) from None
        if exc.code == "conflict":
            raise error(409, "domain_taken", str(exc)) from None
        raise error(400, "invalid_domain", str(exc)) from None


class Domains:
    def __init__(self, cfg: Config, pool: ConnectionPool) -> None:
        self._cfg = cfg
        self._pool = pool
        self._secret = cfg.secrets.hmac_secret

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        caller = access.account_key(req)
        limit = params.limit(req)
        bound = cursors.scope(req, "domains")
        after = cursors.position(req, self._secret, bound)
        with self._pool.connection() as conn:
            rows = domain_store.domains_for_user(conn, caller.user_id)
        # An account has at most max_domains.
        resp.media = cursors.page_whole(rows, limit, after, self._secret, bound,
                                        lambda r: domain_view(self._cfg, r, r["agent_count"]))

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        caller = access.account_key(req)
        body = bodies.read(req, _REGISTER, body_required=True)
        with self._pool.connection() as conn:
            row = _registered(conn, self._cfg, caller.user_id, body["domain"])
            count = domain_store.agent_count(conn, row["id"])
        resp.status = falcon.HTTP_201
        resp.media = domain_view(self._cfg, row, count)


class Domain:
    def __init__(self, cfg: Config, pool: ConnectionPool) -> None:
        self._cfg = cfg
        self._pool = pool

    def on_get(self, req: falcon.Request, resp: falcon.Response, domain: str) -> None:
        caller = access.account_key(req)
        with self._pool.connection() as conn:
            row = owned(conn, caller, domain)
            count = domain_store.agent_count(conn, row["id"])
        resp.media = domain_view(self._cfg, row, count)

    def on_delete(self, req: falcon.Request, resp: falcon.Response, domain: str) -> None:
        caller = access.account_key(req)
        confirmed(req)

        def delete(keep: Keep) -> Answer:
            # The deletion and its replay record commit together.
            with self._pool.connection() as conn, conn.transaction():
                row = owned(conn, caller, domain)
                try:
                    domains.delete(conn, caller.user_id, row)
                except AccountError as exc:
                    raise error(400, "domain_has_agents", str(exc)) from None
                answer = Answer(200, {"deleted": True, "domain": row["domain"],
                                      "sending_teardown": "confirmed"})
                keep(conn, answer)
            return answer

        idempotent.respond(self._pool, req, resp, delete, authorize=lambda: None)


class DomainVerification:
    def __init__(self, cfg: Config, pool: ConnectionPool) -> None:
        self._cfg = cfg
        self._pool = pool

    def on_post(self, req: falcon.Request, resp: falcon.Response, domain: str) -> None:
        caller = access.account_key(req)
        bodies.no_body(req)
        with self._pool.connection() as conn:
            row = owned(conn, caller, domain)
        view: dict[str, Any]
        try:
            checked, probe = domains.verify(self._pool, self._cfg, row, need_mx=True)
        except domaindns.DnsUnavailable:
            # Always 200: a lookup that failed proves nothing either way, so
            # the stored state stands and every probe reads missing.
            view = {"mx": domaindns.MISSING, "spf": domaindns.MISSING,
                    "dkim": domaindns.MISSING}
            checked = row
        else:
            view = {"mx": probe.mx, "spf": probe.spf, "dkim": probe.dkim}
        if checked is None:
            raise error(404, "not_found", f"domain {row['domain']} not found")
        view.update({"domain": checked["domain"], "verified": checked["verified"]})
        if checked["verified"] and checked["verified_at"] is not None:
            view["verified_at"] = rfc3339(checked["verified_at"])
        resp.media = view
