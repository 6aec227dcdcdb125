"""`e2a serve milter`: libmilter's threads serving Postfix on a socket."""

from __future__ import annotations

import contextlib
import logging
import os
import signal

import Milter

from e2a.core import addresses, dns, metrics
from e2a.core.config import Config
from e2a.core.db import open_pool
from e2a.core.sdnotify import notify_ready
from e2a.milter.handler import InboundMilter

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
    metrics.serve(cfg.metrics.milter_listen, "milter")  # its thread inherits the mask
    # Autocommit: the recipient lookup is one round trip, not BEGIN, SELECT,
    # COMMIT; inbound.store opens its one transaction explicitly.
    pool = open_pool(cfg, name="milter", min_size=2, autocommit=True,
                     timeout=cfg.database.connect_timeout)
    InboundMilter.cfg = cfg
    InboundMilter.pool = pool
    Milter.factory = InboundMilter
    Milter.set_flags(Milter.ADDHDRS | Milter.CHGHDRS | Milter.DELRCPT)
    address = _libmilter_address(cfg.milter.listen)
    # The socket is created inside libmilter; a permissive umask lets the
    # postfix user connect. Access is guarded by the socket's directory.
    old_umask = os.umask(0o111)
    log.info("milter listening on %s", cfg.milter.listen)
    notify_ready()  # libmilter opens the socket within microseconds, before Postfix starts
    try:
        Milter.runmilter("e2a", address, timeout=600)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
        os.umask(old_umask)
        pool.close()
        if cfg.milter.listen.startswith("unix:"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(cfg.milter.listen[5:])
        log.info("milter stopped")
