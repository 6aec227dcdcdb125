"""A network namespace standing in for a second host: its own loopback, so
its Postfix, DNS server and services listen on the same 127.0.0.1 ports as
the first host's without meeting them, and reach the first host only
through what they share on disk (PostgreSQL's unix socket).

``command()`` runs a program in it; ``entered()`` moves the calling thread
in for a block, so a test opens sockets there (a client, a webhook
receiver) and keeps using them after it leaves: a socket stays in the
namespace it was made in."""

from __future__ import annotations

import ctypes
import os
import subprocess
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

CLONE_NEWNET = 0x40000000
NETNS_DIR = Path("/run/netns")

_libc = ctypes.CDLL(None, use_errno=True)


def _setns(fd: int) -> None:
    # os.setns is Python 3.12+; Debian 12 has 3.11.
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"setns: {os.strerror(errno)}")


class Namespace:
    def __init__(self, name: str) -> None:
        self.name = name

    @property
    def path(self) -> Path:
        return NETNS_DIR / self.name

    def create(self) -> Namespace:
        subprocess.run(["ip", "netns", "add", self.name], check=True, capture_output=True)
        subprocess.run(["ip", "-n", self.name, "link", "set", "lo", "up"], check=True,
                       capture_output=True)
        return self

    def delete(self) -> None:
        if self.path.exists():
            subprocess.run(["ip", "netns", "delete", self.name], check=False,
                           capture_output=True)

    def command(self, argv: Sequence[str]) -> list[str]:
        return ["ip", "netns", "exec", self.name, *argv]

    @contextmanager
    def entered(self) -> Iterator[None]:
        """The calling thread in this namespace for the block (setns is per thread)."""
        home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        target = os.open(self.path, os.O_RDONLY)
        try:
            _setns(target)
            try:
                yield
            finally:
                _setns(home)
        finally:
            os.close(target)
            os.close(home)
