"""`e2a serve policy`: Postfix SMTP access policy delegation.

One thread per connection (Postfix opens one per smtpd process and reuses
it for every request of that process). With the database unreachable it
answers 451 itself (DB_UNAVAILABLE); on any other internal error it logs and
drops the connection without answering, so Postfix applies
smtpd_policy_service_default_action: a 4xx, never a silent accept.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import socketserver
import threading
import time
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool

from e2a.core import addresses, metrics, shutdown
from e2a.core.config import Config
from e2a.core.db import open_pool
from e2a.core.sdnotify import notify_ready
from e2a.policy import checks, listen, protocol, socketmap

log = logging.getLogger("e2a.policy")

# Above Postfix's smtpd_policy_service_max_idle (300 s), so Postfix is the one
# that normally closes an idle connection.
IDLE_TIMEOUT = 600.0
# Far below Postfix's smtpd_policy_service_timeout (100 s): in an outage the
# client gets its 4xx quickly instead of waiting on a pool that cannot connect.
# The service passes database.connect_timeout.
DB_TIMEOUT = 5.0
# Said rather than a dropped connection: Postfix asks a policy server that
# hung up once more, which doubled the client's wait in an outage.
DB_UNAVAILABLE = "451 4.3.5 Recipient check unavailable, try again later"
MAX_CONNECTIONS = 1000
# On stop, requests being answered get this long to finish.
DRAIN_SECONDS = 2.0


class PolicyHandler(socketserver.StreamRequestHandler):
    timeout = IDLE_TIMEOUT
    server: PolicyServer

    def handle(self) -> None:
        while True:
            try:
                attrs = protocol.read_request(self.rfile)
            except protocol.ProtocolError as exc:
                log.warning("policy client dropped: %s", exc)
                return
            except OSError:
                return  # idle timeout, reset, or our own shutdown
            if attrs is None:
                return
            try:
                with metrics.timed("policy"):
                    action = checks.decide(self.server.pool, attrs, limits=self.server.limits,
                                           db_timeout=self.server.db_timeout)
                answer = protocol.encode_action(action)
            except psycopg.Error as exc:  # PoolTimeout included: database unreachable
                log.error("policy lookup failed, answering 451: %s", exc,
                          extra=_context(attrs))
                answer = protocol.encode_action(DB_UNAVAILABLE)
            except Exception:
                log.exception("policy check failed, disconnecting (Postfix applies its "
                              "default action)", extra=_context(attrs))
                return
            try:
                self.wfile.write(answer)
            except OSError:
                return


def _context(attrs: dict[str, str]) -> dict[str, str]:
    return {k: attrs.get(k, "") for k in ("queue_id", "client_address", "recipient")}


class PolicyServer(socketserver.ThreadingMixIn, socketserver.TCPServer):
    """Serves on a socket bound by ``listen.bind`` (unix or inet alike)."""

    daemon_threads = True
    handler_class: type[socketserver.BaseRequestHandler] = PolicyHandler

    def __init__(self, listener: listen.Listener, pool: ConnectionPool, limits: checks.Limits,
                 db_timeout: float = DB_TIMEOUT) -> None:
        super().__init__(("", 0), self.handler_class, bind_and_activate=False)
        self.socket.close()
        self.socket = listener.sock
        self.listener = listener
        self.pool = pool
        self.limits = limits
        self.db_timeout = db_timeout
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._thread: threading.Thread | None = None

    def verify_request(self, request: Any, client_address: Any) -> bool:
        if self._slots.acquire(blocking=False):
            return True
        log.warning("policy: %d connections open, refusing another", MAX_CONNECTIONS)
        return False

    def process_request(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        with self._lock:
            self._open.add(request)
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self._lock:
                self._open.discard(request)
            self._slots.release()

    def start(self) -> None:
        self._thread = threading.Thread(target=self.serve_forever, name="policy-accept",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop accepting, let answers in progress go out, close everything."""
        self.shutdown()
        with self._lock:
            conns = list(self._open)
        for conn in conns:
            # Wakes readers blocked on idle connections; a request being
            # decided can still write its answer.
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RD)
        deadline = time.monotonic() + DRAIN_SECONDS
        while self._open and time.monotonic() < deadline:
            time.sleep(0.02)
        self.listener.close()


class SocketmapServer(PolicyServer):
    """Postfix's relay_domains lookups (socketmap), on their own socket."""

    handler_class = socketmap.SocketmapHandler

    def __init__(self, listener: listen.Listener, pool: ConnectionPool, shared_domain: str,
                 db_timeout: float = DB_TIMEOUT) -> None:
        super().__init__(listener, pool, checks.Limits(), db_timeout)
        self.shared_domain = shared_domain


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
    server = PolicyServer(listener, pool, checks.Limits.from_config(cfg),
                          cfg.database.connect_timeout)
    map_server = SocketmapServer(map_listener, pool, cfg.mail.shared_domain,
                                 cfg.database.connect_timeout)
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
        pool.close()
        log.info("policy stopped")
