"""``e2a serve api``: gunicorn, gevent-websocket workers, one DB pool per worker.

Why the master runs in a fresh interpreter: gevent patches the standard
library in each worker right after fork, but psycopg settles how it waits on
its socket when it is first imported. Imported before the patch (the ``e2a``
CLI imports the store), it keeps the unpatched epoll selector for connection
set-up, which the pool runs in the background whenever the database is slow or
away: a database that accepts TCP but never answers froze every request of the
worker for the whole connect timeout (tests/unit/test_api_server.py). With
psycopg's C extension installed it would also keep its C wait loop, and every
query would block the worker. So ``run`` re-executes itself as ``python -m
e2a.api`` when psycopg is loaded; the master never imports it, and each worker
imports it, opens its pool and builds the app after the patch.
"""

from __future__ import annotations

import atexit

# The readiness thread's connect encodes its host name with this codec, and
# workers are forked while it runs: imported now, before any fork, a worker
# never inherits it half-imported (LookupError: unknown encoding: idna).
import encodings.idna  # noqa: F401
import http.client
import logging
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, NoReturn

import falcon
from gunicorn import glogging
from gunicorn import util as gunicorn_util
from gunicorn.app.base import BaseApplication

from e2a.api import worker
from e2a.core import config, localhttp, logs
from e2a.core.config import Config
from e2a.core.sdnotify import notify_ready

log = logging.getLogger("e2a.api")

# gevent-websocket's worker, made to stop cleanly (see e2a.api.worker).
WORKER_CLASS = "e2a.api.worker.ApiWorker"
# Seconds a kept-alive connection may sit idle (also bounds how long an idle
# client can delay a graceful stop).
KEEPALIVE = 2
DB_MODULES = ("psycopg", "psycopg_pool")
# Seconds a worker gets to finish its requests after SIGTERM.
GRACEFUL_TIMEOUT = 10
# Seconds between two probes of /api/health while the workers boot.
READY_POLL = 0.2
HEALTH_PATH = "/api/health"
# e2a.core.metrics.MULTIPROC_ENV, spelled here: importing prometheus_client in
# the master before this is set would fix every forked worker in
# single-process mode.
METRICS_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"


def run(cfg: Config) -> None:
    """Serve until SIGTERM, then exit 0. Replaces the process when psycopg is
    already imported (see the module doc); the configuration is read again,
    from the same file and environment."""
    if any(name in sys.modules for name in DB_MODULES):
        _reexec(cfg)
    serve(cfg)


def _reexec(cfg: Config) -> NoReturn:
    env = dict(os.environ)
    if Path(cfg.source).is_file():
        env["E2A_CONFIG"] = cfg.source
    sys.stdout.flush()
    sys.stderr.flush()
    # -P: the working directory (a checkout holds a milter/ dir) stays off sys.path.
    os.execve(sys.executable, [sys.executable, "-P", "-m", "e2a.api"], env)  # noqa: S606


def main() -> None:
    """Entry point of ``python -m e2a.api``."""
    try:
        cfg = config.load()
    except config.ConfigError as exc:
        sys.exit(f"e2a: {exc}")
    logs.setup(cfg.log.level, cfg.log.format)
    serve(cfg)


def serve(cfg: Config) -> None:
    loaded = [name for name in DB_MODULES if name in sys.modules]
    if loaded:
        raise RuntimeError(f"{', '.join(loaded)} imported before the gevent patch")
    debug = cfg.log.level == "debug"
    # Access lines only when debugging; gevent-websocket logs them at INFO.
    logging.getLogger("geventwebsocket.handler").setLevel(
        logging.DEBUG if debug else logging.WARNING)
    metrics_dir()
    keep_process_owner()
    # gunicorn's arbiter says READY=1 itself as soon as it has bound its
    # socket, before any worker has booted (or failed to): systemd would call
    # the unit started, and a worker that cannot start would loop unnoticed.
    # The variable is taken away from gunicorn (and the workers); the master
    # says READY=1 once a worker answers /api/health (_announce_when_serving).
    ApiServer.notify_socket = os.environ.pop("NOTIFY_SOCKET", "")
    ApiServer(cfg).run()


def keep_process_owner() -> None:
    """gunicorn's workers switch to its ``user``/``group`` settings, which
    default to the ids they already have; Debian's gunicorn (20.1) calls
    setuid() even then, which the unit's system call filter (~@privileged)
    refuses, and every worker dies at boot. systemd already made us the
    service user (User=), so the switch is skipped when there is nothing to
    switch; a real switch (root starting the API by hand) still happens."""
    switch = gunicorn_util.set_owner_process
    if getattr(switch, "e2a_keeps_owner", False):
        return

    def set_owner_process(uid: int, gid: int, initgroups: bool = False) -> None:
        if uid == os.getuid() and gid == os.getgid():
            return
        switch(uid, gid, initgroups=initgroups)

    set_owner_process.e2a_keeps_owner = True  # type: ignore[attr-defined]
    gunicorn_util.set_owner_process = set_owner_process


def metrics_dir() -> str:
    """A fresh directory where every worker keeps its metric values, so
    GET /metrics in any worker reports them all (prometheus-client's
    multiprocess mode). An operator's PROMETHEUS_MULTIPROC_DIR is emptied
    (values of an earlier run would count twice); otherwise a private temporary
    one, removed when the master exits."""
    given = os.environ.get(METRICS_DIR_ENV, "")
    if given:
        os.makedirs(given, exist_ok=True)
        for name in os.listdir(given):
            if name.endswith(".db"):
                os.unlink(os.path.join(given, name))
        return given
    made = tempfile.mkdtemp(prefix="e2a-api-metrics-")
    master = os.getpid()

    def remove() -> None:
        # Forked workers run exit handlers too; only the master's exit ends the run.
        if os.getpid() == master:
            shutil.rmtree(made, ignore_errors=True)

    atexit.register(remove)
    os.environ[METRICS_DIR_ENV] = made
    return made


class GunicornLogs(glogging.Logger):
    """gunicorn's own lines through our handlers and format (core.logs)."""

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        for logger in (self.error_log, self.access_log):
            for handler in list(logger.handlers):
                logger.removeHandler(handler)
            logger.propagate = True


def _when_ready(arbiter: Any) -> None:
    worker.hold_stop_signals_across_forks()  # the workers are forked next
    # The one start line; gunicorn's own start chatter is INFO, below our level.
    log.info("api listening on %s", ", ".join(str(s) for s in arbiter.LISTENERS))
    threading.Thread(target=_announce_when_serving,
                     args=(arbiter.app.e2a_cfg.http.listen, ApiServer.notify_socket),
                     name="e2a-api-ready", daemon=True).start()


def _announce_when_serving(listen: str, notify_socket: str) -> None:
    """READY=1 once a worker answers /api/health, whatever its status (a 503
    says the database is down, which the API outlives; it still serves).
    A worker that never boots makes gunicorn exit, and systemd sees the
    start fail instead of a service that is "started" and never serves."""
    while True:
        if health_answers(listen):
            log.info("api serving")
            if notify_socket:
                notify_ready(notify_socket)
            return
        time.sleep(READY_POLL)


def health_answers(listen: str, timeout: float = 2.0) -> bool:
    """Whether GET /api/health on our own ``http.listen`` gets any HTTP answer."""
    try:
        localhttp.get_status(listen, HEALTH_PATH, timeout)
    except (OSError, http.client.HTTPException):
        return False
    return True


def _worker_exit(arbiter: Any, exiting: Any) -> None:
    exiting.app.release()


def bind_address(listen: str) -> str:
    """Our ``host:port`` / ``inet:host:port`` / ``unix:/path`` as gunicorn's bind."""
    return listen.removeprefix("inet:")


class ApiServer(BaseApplication):
    # systemd's $NOTIFY_SOCKET, kept from gunicorn (see serve).
    notify_socket: str = ""

    def __init__(self, cfg: Config) -> None:
        self.e2a_cfg = cfg
        self._pool: Any = None
        self._hub: Any = None
        super().__init__()

    def load_config(self) -> None:
        debug = self.e2a_cfg.log.level == "debug"
        settings: dict[str, Any] = {
            "bind": [bind_address(self.e2a_cfg.http.listen)],
            "workers": self.e2a_cfg.http.workers,
            "worker_class": WORKER_CLASS,
            "graceful_timeout": GRACEFUL_TIMEOUT,
            "keepalive": KEEPALIVE,
            "proc_name": "e2a-api",
            "loglevel": "debug" if debug else "warning",
            "accesslog": None,
            "logger_class": GunicornLogs,
            "when_ready": _when_ready,
            "worker_exit": _worker_exit,
            # gunicorn >= 25 opens a control socket under $HOME by default: two
            # instances on one host would fight over it, and we do not use it.
            "control_socket_disable": True,
        }
        for name, value in settings.items():
            if name in self.cfg.settings:
                self.cfg.set(name, value)

    def load(self) -> falcon.App:
        # Runs in the worker, after gevent's patch (no preload_app).
        from e2a.api.app import create_app
        from e2a.api.realtime import Hub
        from e2a.api.startup import prepare
        from e2a.core.db import open_pool

        self._pool = open_pool(self.e2a_cfg, name="api")
        prepare(self.e2a_cfg, self._pool)
        self._hub = Hub(self.e2a_cfg)
        # WebSocket clients never end on their own: told 1001 as soon as the
        # stop begins, they do not hold the worker until the graceful timeout.
        worker.on_stop(self._hub.stop)
        return create_app(self.e2a_cfg, self._pool, hub=self._hub)

    def release(self) -> None:
        """The worker is exiting: stop listening, close the pool."""
        if self._hub is not None:
            self._hub.stop()
            self._hub = None
        if self._pool is not None:
            self._pool.close()
            self._pool = None
            log.debug("database pool closed")
