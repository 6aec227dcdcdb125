"""Postfix socketmap lookups (socketmap_table(5)).

``relay_domains``: Postfix asks ``relay_domains <domain>`` for every
recipient domain; a domain verified through the API is then accepted at
once, with no main.cf edit or reload. The answer ``TEMP`` on a database
error makes Postfix defer (4xx) rather than refuse mail for a domain that is
ours.

``reinject_login``: the reinjection service's check_sasl_access. Only our
content filter and release log in to it (XCLIENT LOGIN) with a login made
from the deployment secret (core/release.reinject_login); every other
client, any program of this host included, gets a 5.7.1 and can neither
relay through it, skip the filter, nor pass for an agent there.
"""

from __future__ import annotations

import logging

import psycopg
from psycopg_pool import ConnectionPool

from e2a.core import release
from e2a.core.store import domains
from e2a.policy import netstring

log = logging.getLogger("e2a.policy.socketmap")

RELAY_DOMAINS = "relay_domains"
REINJECT_LOGIN = "reinject_login"
REINJECT_REFUSED = (b"OK 554 5.7.1 this service takes mail from e2a's content filter "
                    b"and release only")
# A request is "<map name> <key>": a domain is at most 253 bytes, so this
# leaves room and still bounds what one client can make us buffer. Postfix
# closes an idle socketmap connection itself (after about 10 s).
MAX_REQUEST = 1024
MAX_DOMAIN = 253


def answer(pool: ConnectionPool, request: bytes, *, shared_domain: str,
           db_timeout: float, secret: str = "") -> bytes:
    """The reply payload (not yet framed) to one request."""
    name, sep, raw_key = request.partition(b" ")
    if not sep:
        return b"PERM malformed request"
    if name.decode("ascii", "replace") == REINJECT_LOGIN:
        given = raw_key.decode("ascii", "replace").strip()
        return b"OK OK" if secret and release.valid_login(secret, given) else REINJECT_REFUSED
    if name.decode("ascii", "replace") != RELAY_DOMAINS:
        return b"PERM unknown map"
    key = raw_key.decode("utf-8", "replace").strip().lower()
    if not key or len(key) > MAX_DOMAIN or "\x00" in key:
        return b"NOTFOUND "
    if key == shared_domain:
        return b"OK " + key.encode()
    try:
        with pool.connection(timeout=db_timeout) as conn:
            found = domains.accepts_mail_for(conn, key)
    except psycopg.Error as exc:  # PoolTimeout included: database unreachable
        log.error("socketmap lookup of %s failed, answering TEMP: %s", key, exc)
        return b"TEMP database unavailable"
    return b"OK " + key.encode() if found else b"NOTFOUND "


def respond(pool: ConnectionPool, request: bytes, *, shared_domain: str,
            db_timeout: float, secret: str = "") -> bytes:
    """The framed answer to one request (a worker of policy.connections)."""
    try:
        reply = answer(pool, request, shared_domain=shared_domain, db_timeout=db_timeout,
                       secret=secret)
    except Exception:
        log.exception("socketmap lookup failed, answering TEMP")
        reply = b"TEMP internal error"
    return netstring.encode(reply)
