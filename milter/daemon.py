"""`e2a serve milter`: libmilter's threads serving Postfix on a socket.

With ``milter.processes`` above 1, that many processes serve the one
socket: libmilter's smfi_opensocket binds and listens before the fork, and
each process's smfi_main accepts on it (measured: Postfix's connections
spread evenly over them). Python runs one thread at a time per process, so
this is what lets the milter use more than one core."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
from collections.abc import Callable

import Milter

from e2a.core.config import Config
from e2a.core.db import open_pool
from e2a.core.net import addresses
from e2a.core.net import resolver as dns
from e2a.core.runtime import metrics
from e2a.core.runtime.sdnotify import notify_ready
from e2a.milter.handler import InboundMilter

# pymilter's C module as Milter itself imported it (the name alone could
# resolve to this checkout's milter/ package).
libmilter = Milter.milter

log = logging.getLogger("e2a.milter")


def _libmilter_address(listen: str) -> str:
    address = addresses.parse(listen)
    if isinstance(address, addresses.UnixAddress):
        return listen
    return f"inet:{address.port}@{address.host}"


def run(cfg: Config) -> None:
    # libmilter stops on SIGTERM/SIGINT through a thread that sigwait()s for
    # them. Blocked first, in this thread and so in every thread started after
    # (the pool's too), a stop signal waits for that thread instead of
    # killing the process by default action, half-way through a message.
    stop_signals = {signal.SIGTERM, signal.SIGINT, signal.SIGHUP}
    old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)
    dns.configure(cfg, cache=True)
    processes = cfg.milter.processes
    if processes == 1:
        metrics.serve(cfg.metrics.milter_listen, "milter")  # its thread inherits the mask
    else:
        # Each process counts for itself; one port cannot serve them all.
        log.info("milter: %d processes, its metrics endpoint is off", processes)
    InboundMilter.cfg = cfg
    Milter.factory = InboundMilter
    Milter.set_flags(Milter.ADDHDRS | Milter.CHGHDRS | Milter.DELRCPT)
    address = _libmilter_address(cfg.milter.listen)
    # The socket is created inside libmilter; a permissive umask lets the
    # postfix user connect. Access is guarded by the socket's directory.
    old_umask = os.umask(0o111)
    log.info("milter listening on %s", cfg.milter.listen)
    notify_ready()  # libmilter opens the socket within microseconds, before Postfix starts
    real_main = libmilter.main
    try:
        if processes == 1:
            _serve(cfg, real_main)
        else:
            # runmilter registers the callbacks and opens the socket
            # (smfi_opensocket) and then calls main: ours forks there, and each
            # process runs libmilter's smfi_main on the socket opened before.
            libmilter.main = lambda: _fork_and_supervise(cfg, real_main, processes,
                                                      stop_signals)
        Milter.runmilter("e2a", address, timeout=600)
    finally:
        libmilter.main = real_main
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
        os.umask(old_umask)
        if cfg.milter.listen.startswith("unix:"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(cfg.milter.listen[5:])
        log.info("milter stopped")


def _open_pool(cfg: Config) -> None:
    # Autocommit: the recipient lookup is one round trip, not BEGIN, SELECT,
    # COMMIT; inbound.store opens its one transaction explicitly.
    InboundMilter.pool = open_pool(cfg, name="milter", min_size=2, autocommit=True,
                                   timeout=cfg.database.connect_timeout)


def _serve(cfg: Config, real_main: Callable[[], None]) -> None:
    """One process: the pool, then libmilter's main loop when runmilter calls it."""
    _open_pool(cfg)

    def main() -> None:
        try:
            real_main()
        finally:
            InboundMilter.pool.close()

    libmilter.main = main


def _fork_and_supervise(cfg: Config, real_main: Callable[[], None], processes: int,
                        stop_signals: set[signal.Signals]) -> None:
    """``processes`` children on the one listening socket: libmilter's
    threads in one process serialize on the GIL, so cores are used only by
    processes. Each child opens its own pool after the fork (a pool's
    connections and threads do not survive one). A stop signal here is passed
    on to every child, each finishing its messages (libmilter's own
    handling); a child that dies stops the rest too, so the service manager
    restarts the whole (Postfix's 451 default action covers the gap)."""
    children: list[int] = []
    for _ in range(processes):
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                _open_pool(cfg)
                try:
                    real_main()
                finally:
                    InboundMilter.pool.close()
            except BaseException:
                log.exception("milter process failed")
                code = 1
            finally:
                os._exit(code)
        children.append(pid)
    log.info("milter processes %s", children)
    stopping = failed = False
    while children:
        got = signal.sigtimedwait(stop_signals, 1.0)
        ended = _reap(children)
        if stopping or not (got is not None or ended):
            continue
        # Asked to stop, or a child died unasked: all of them stop now.
        stopping, failed = True, got is None
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
    if failed:
        log.error("a milter process ended unasked: stopped the others")
        raise SystemExit(1)


def _reap(children: list[int]) -> bool:
    """Remove the children that exited; whether any did."""
    ended = False
    for pid in list(children):
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done:
            children.remove(pid)
            ended = True
    return ended
