"""`e2a serve policy`: Postfix SMTP access policy delegation.

Postfix opens one connection per smtpd process and reuses it for every
request of that process; policy.connections serves them all from one
selector and a few workers. With the database unreachable it answers 451
itself (DB_UNAVAILABLE); on any other internal error it logs and
drops the connection without answering, so Postfix applies
smtpd_policy_service_default_action: a 4xx, never a silent accept.
"""

from __future__ import annotations

import logging

import psycopg
from psycopg_pool import ConnectionPool

from e2a.core.config import Config
from e2a.core.db import open_pool
from e2a.core.net import addresses, listen
from e2a.core.runtime import metrics, shutdown
from e2a.core.runtime.sdnotify import notify_ready
from e2a.policy import checks, connections, netstring, protocol, socketmap

log = logging.getLogger("e2a.policy")

# Above Postfix's smtpd_policy_service_max_idle (300 s), so Postfix is the one
# that normally closes an idle connection.
IDLE_TIMEOUT = 600.0
# Far below Postfix's smtpd_policy_service_timeout (100 s): in an outage the
# client gets its 4xx quickly instead of waiting on a pool that cannot connect.
# The service passes database.connect_timeout.
DB_TIMEOUT = 5.0
# Connections open at once, per listener. Postfix holds one per smtpd process
# (default_process_limit 100); both listeners together stay under the usual
# 1024 descriptors.
MAX_CONNECTIONS = 400
# Requests decided at once, per listener: each may hold a database connection.
WORKERS = 16
# Said rather than a dropped connection: Postfix asks a policy server that
# hung up once more, which doubled the client's wait in an outage.
DB_UNAVAILABLE = "451 4.3.5 Recipient check unavailable, try again later"
# On stop, requests being answered get this long to finish.
DRAIN_SECONDS = 2.0


def _context(attrs: dict[str, str]) -> dict[str, str]:
    return {k: attrs.get(k, "") for k in ("queue_id", "client_address", "recipient")}


class PolicyServer:
    """Serves on a socket bound by ``listen.bind`` (unix or inet alike)."""

    name = "policy"

    def __init__(self, listener: listen.ListeningSocket, pool: ConnectionPool,
                 limits: checks.RcptLimits, db_timeout: float = DB_TIMEOUT) -> None:
        self.listener = listener
        self.pool = pool
        self.limits = limits
        self.db_timeout = db_timeout
        self.connections = connections.Server(
            listener.sock, name=self.name, new_reader=self._new_reader, respond=self._respond,
            workers=WORKERS, max_connections=MAX_CONNECTIONS, idle_timeout=IDLE_TIMEOUT)

    def _new_reader(self) -> connections.Reader:
        return protocol.RequestReader()

    def _respond(self, attrs: dict[str, str]) -> bytes | None:
        try:
            with metrics.timed("policy"):
                action = checks.decide(self.pool, attrs, limits=self.limits,
                                       db_timeout=self.db_timeout)
        except psycopg.Error as exc:  # PoolTimeout included: database unreachable
            log.error("policy lookup failed, answering 451: %s", exc, extra=_context(attrs))
            return protocol.encode_action(DB_UNAVAILABLE)
        return protocol.encode_action(action)

    def start(self) -> None:
        self.connections.start()

    def stop(self) -> None:
        """Stop accepting, let answers in progress go out, close everything."""
        self.connections.stop(DRAIN_SECONDS)
        self.listener.close()


class SocketmapServer(PolicyServer):
    """Postfix's socketmap lookups (relay_domains, the reinjection
    service's login check), on their own socket."""

    name = "socketmap"

    def __init__(self, listener: listen.ListeningSocket, pool: ConnectionPool, shared_domain: str,
                 db_timeout: float = DB_TIMEOUT, secret: str = "",
                 cache: socketmap.RelayDomainCache | None = None) -> None:
        self.shared_domain = shared_domain
        self.secret = secret  # the deployment's, which reinjection logins derive from
        self.cache = cache
        super().__init__(listener, pool, checks.RcptLimits(), db_timeout)

    def _new_reader(self) -> connections.Reader:
        return netstring.Reader(socketmap.MAX_REQUEST)

    def _respond(self, request: bytes) -> bytes | None:  # type: ignore[override]
        return socketmap.respond(self.pool, request, shared_domain=self.shared_domain,
                                 db_timeout=self.db_timeout, secret=self.secret,
                                 cache=self.cache)


def open_policy_pool(cfg: Config, *, wait: bool = False) -> ConnectionPool:
    # Autocommit: a rate counter's row is locked only while its UPSERT runs,
    # not until this thread gets round to a COMMIT. Nothing here needs more
    # than one statement to be consistent.
    return open_pool(cfg, name="policy", wait=wait, autocommit=True)


def run(cfg: Config) -> None:
    stop = shutdown.on_signals()
    try:
        listener = listen.bind(addresses.parse(cfg.policy.listen))
    except listen.ListenError as exc:
        log.error("policy: %s", exc)
        raise SystemExit(1) from None
    try:
        map_listener = listen.bind(addresses.parse(cfg.policy.socketmap_listen))
    except listen.ListenError as exc:
        listener.close()
        log.error("policy socketmap: %s", exc)
        raise SystemExit(1) from None
    pool = open_policy_pool(cfg)
    server = PolicyServer(listener, pool, checks.RcptLimits.from_config(cfg),
                          cfg.database.connect_timeout)
    domains_listener = socketmap.CacheListener(cfg, None, stop)
    map_server = SocketmapServer(map_listener, pool, cfg.mail.shared_domain,
                                 cfg.database.connect_timeout, secret=cfg.secrets.hmac_secret,
                                 cache=domains_listener.cache)
    domains_listener.start()
    server.start()
    map_server.start()
    metrics.serve(cfg.metrics.policy_listen, "policy")
    log.info("policy listening on %s, socketmap on %s", listener.address, map_listener.address)
    notify_ready()
    try:
        shutdown.wait(stop)
    finally:
        server.stop()
        map_server.stop()
        domains_listener.join(1.0)
        pool.close()
        log.info("policy stopped")
