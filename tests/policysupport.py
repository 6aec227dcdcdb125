"""Talking to the policy daemon the way Postfix does, and running one in-process."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from e2a.core import config
from e2a.core.net import listen
from e2a.core.net.addresses import UnixAddress
from e2a.policy.checks import RcptLimits
from e2a.policy.daemon import PolicyServer, open_policy_pool


class Client:
    """What Postfix's smtpd does: one connection, many requests."""

    def __init__(self, path: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(15)
        self.sock.connect(path)
        self.rfile = self.sock.makefile("rb")

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def ask(self, **attrs: str) -> str:
        request = {"request": "smtpd_access_policy", "protocol_name": "ESMTP",
                   "client_address": "192.0.2.10", "sender": "someone@example.org", **attrs}
        self.send(b"".join(f"{k}={v}\n".encode() for k, v in request.items()) + b"\n")
        line = self.rfile.readline()
        assert line.startswith(b"action="), line
        assert self.rfile.readline() == b"\n"
        return line[len("action="):-1].decode()

    def rcpt(self, recipient: str) -> str:
        return self.ask(protocol_state="RCPT", recipient=recipient)

    def closed_without_answer(self) -> bool:
        try:
            return self.rfile.read() == b""
        except ConnectionResetError:
            return True  # closed with our unread request still in its buffer

    def close(self) -> None:
        self.rfile.close()
        self.sock.close()


@contextmanager
def running_policy(cfg: config.Config, path: Path, limits: RcptLimits) -> Iterator[str]:
    """A policy daemon with its own pool on the unix socket ``path``."""
    pool = open_policy_pool(cfg, wait=True)
    try:
        server = PolicyServer(listen.bind(UnixAddress(str(path))), pool, limits)
        server.start()
        try:
            yield str(path)
        finally:
            server.stop()
    finally:
        pool.close()
