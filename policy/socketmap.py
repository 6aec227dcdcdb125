"""Postfix socketmap lookups (socketmap_table(5)).

``relay_domains``: Postfix asks ``relay_domains <domain>`` for every
recipient domain; a domain verified through the API is then accepted at
once, with no main.cf edit or reload. The answer ``TEMP`` on a database
error makes Postfix defer (4xx) rather than refuse mail for a domain that is
ours.

``reinject_login``: the reinjection service's check_sasl_access. Only our
content filter and release log in to it (XCLIENT LOGIN) with a login made
from the deployment secret (core/outbound/release.reinject_login); every other
client, any program of this host included, gets a 5.7.1 and can neither
relay through it, skip the filter, nor pass for an agent there.

Postfix asks ``relay_domains`` up to three times per message (smtpd,
cleanup, qmgr; an outbound message twice over): the answers are cached in
the process (RelayDomainCache), emptied by the NOTIFY a trigger sends on any
change to the domains table. The cache is used only while that LISTEN
connection is up; when it drops, the cache empties and every lookup goes to
the database until it is back. Entries also expire after CACHE_SECONDS, a
bound on a notification lost on a connection that died without a word.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import psycopg
from psycopg_pool import ConnectionPool

from e2a.core.config import Config
from e2a.core.db import wakeup
from e2a.core.outbound import release
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
CACHE_SECONDS = 60.0
CACHE_ENTRIES = 10_000


class RelayDomainCache:
    """domain -> accepted, valid while ``live()`` says the LISTEN for the
    domains table's changes is up. ``invalidate`` is called on every
    notification (and when the listener (re)connects)."""

    def __init__(self, live: Callable[[], bool] = lambda: False, *,
                 ttl: float = CACHE_SECONDS, max_entries: int = CACHE_ENTRIES) -> None:
        self._live = live
        self._ttl = ttl
        self._max = max_entries
        self._entries: dict[str, tuple[bool, float]] = {}
        self._generation = 0
        self._lock = threading.Lock()

    def invalidate(self) -> None:
        with self._lock:
            self._entries.clear()
            self._generation += 1

    def lookup(self, domain: str, query: Callable[[], bool]) -> bool:
        """The cached answer, or ``query()``'s (cached when nothing changed
        meanwhile: a notification during the query means it may be stale)."""
        if not self._live():
            if self._entries:
                self.invalidate()  # what was cached may have changed unheard
            return query()
        now = time.monotonic()
        with self._lock:
            hit = self._entries.get(domain)
            generation = self._generation
        if hit is not None and hit[1] > now:
            return hit[0]
        found = query()
        with self._lock:
            if self._generation == generation and self._live():
                if len(self._entries) >= self._max:
                    self._entries.clear()
                self._entries[domain] = (found, now + self._ttl)
        return found


class CacheListener:
    """Keeps ``cache`` in step with the domains table: a LISTEN connection
    (core/db/wakeup.WakeupThread) whose every notification, and every reconnect,
    empties it."""

    def __init__(self, cfg: Config, cache: RelayDomainCache | None,
                 stop: threading.Event) -> None:
        self._heard = False
        self.cache = cache or RelayDomainCache()
        self.cache._live = self.live
        self._listener = wakeup.WakeupThread(cfg, domains.DOMAINS_CHANGED_CHANNEL,
                                         _Invalidate(self), stop)
        self._listener.name = "e2a-domains-listen"

    def start(self) -> None:
        self._listener.start()

    def join(self, timeout: float) -> None:
        self._listener.join(timeout)

    def live(self) -> bool:
        return (self._heard and self._listener.is_alive()
                and getattr(self._listener, "lost", True) is False)


class _Invalidate(wakeup.Bell):
    """The listener rings once LISTEN is in place and on each notification."""

    def __init__(self, owner: CacheListener) -> None:
        super().__init__()
        self._owner = owner

    def ring(self) -> None:
        self._owner.cache.invalidate()
        self._owner._heard = True




def answer(pool: ConnectionPool, request: bytes, *, shared_domain: str,
           db_timeout: float, secret: str = "",
           cache: RelayDomainCache | None = None) -> bytes:
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
    def query() -> bool:
        with pool.connection(timeout=db_timeout) as conn:
            return domains.accepts_mail_for(conn, key)

    try:
        found = cache.lookup(key, query) if cache is not None else query()
    except psycopg.Error as exc:  # PoolTimeout included: database unreachable
        log.error("socketmap lookup of %s failed, answering TEMP: %s", key, exc)
        return b"TEMP database unavailable"
    return b"OK " + key.encode() if found else b"NOTFOUND "


def respond(pool: ConnectionPool, request: bytes, *, shared_domain: str,
            db_timeout: float, secret: str = "",
            cache: RelayDomainCache | None = None) -> bytes:
    """The framed answer to one request (a worker of policy.connections)."""
    try:
        reply = answer(pool, request, shared_domain=shared_domain, db_timeout=db_timeout,
                       secret=secret, cache=cache)
    except Exception:
        log.exception("socketmap lookup failed, answering TEMP")
        reply = b"TEMP internal error"
    return netstring.encode(reply)
