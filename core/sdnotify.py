"""Tell systemd a ``Type=notify`` service is ready (the sd_notify protocol).

systemd passes a datagram socket in ``$NOTIFY_SOCKET``; one ``READY=1``
datagram there marks the unit started, so units ordered after it (Postfix
after the milter and policy service) wait until we actually listen. Without
the variable (a shell, a test, the sandbox) this does nothing. Written here
rather than taken from python3-systemd so the package needs one dependency
less for a dozen lines.
"""

from __future__ import annotations

import logging
import os
import socket

log = logging.getLogger("e2a.sdnotify")


def notify(state: str, address: str | None = None) -> bool:
    """Send ``state`` (``"READY=1"``, ``"STOPPING=1"``, ...); True when sent.
    ``address``: the socket to use instead of ``$NOTIFY_SOCKET`` (for a
    process that took the variable out of its environment, see e2a.api.server)."""
    if address is None:
        address = os.environ.get("NOTIFY_SOCKET", "")
    if address.startswith("@"):
        # Linux abstract namespace: systemd writes its leading NUL as "@".
        address = "\0" + address[1:]
    elif not address.startswith("/"):
        return False  # unset, or a transport we do not speak (vsock)
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(state.encode())
    except OSError as exc:
        # Readiness is a courtesy to the service manager; never a reason to stop serving.
        log.warning("cannot notify the service manager: %s", exc.strerror or exc)
        return False
    return True


def notify_ready(address: str | None = None) -> bool:
    """The service listens and serves: call once, after the listening log line."""
    return notify("READY=1", address)
