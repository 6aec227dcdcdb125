"""GET a path of one of our own HTTP listeners (``http.listen``: ``host:port``,
``inet:host:port`` or ``unix:/path``): the API's readiness and ``e2a doctor``
ask /api/health this way."""

from __future__ import annotations

import http.client
import socket

# A wildcard listener is reached on loopback.
_WILDCARDS = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}  # noqa: S104


def get_status(listen: str, path: str, timeout: float) -> int:
    """The HTTP status of GET ``path``; OSError or HTTPException when there is
    no answer."""
    listen = listen.removeprefix("inet:")
    conn: http.client.HTTPConnection
    if listen.startswith("unix:"):
        conn = _UnixConnection(listen.removeprefix("unix:"), timeout)
    else:
        host, _, port = listen.rpartition(":")
        host = host.strip("[]")
        conn = http.client.HTTPConnection(_WILDCARDS.get(host, host), int(port),
                                          timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self.unix_path)
        self.sock = sock
