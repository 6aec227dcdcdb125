"""A private resolver address for milters that cannot be told a DNS port.

glibc's resolv.conf and dnspython (opendmarc, pyspf-milter) reach a name
server on port 53 only, and the sandbox's DNS listens on another loopback
port. This process opens its upstream socket to the sandbox DNS, then moves
itself into a network and mount namespace of its own, where it answers on
port 53 of ``ADDRESS`` by relaying every UDP query upstream, and where
/etc/resolv.conf is a private file naming that address. A milter started in
these namespaces (``nsenter --target PID --net --mount``) resolves through
the same sandbox DNS, and the machine's resolv.conf and port 53 are untouched.
It prints ``ready`` once the namespaces are set up, and stops on SIGTERM.
UDP only: every answer of the sandbox's fits (a 2048-bit DKIM key too).

Usage (as root): ``python -P bench/dnsrelay.py UPSTREAM_PORT RESOLV_CONF``.
The resolv.conf is the caller's: it names ``ADDRESS``.
"""

from __future__ import annotations

import ctypes
import os
import select
import socket
import subprocess
import sys

CLONE_NEWNS = 0x00020000
CLONE_NEWNET = 0x40000000
# Not loopback: opendkim's libunbound will not query a loopback address. An
# address of TEST-NET-1 on the namespace's own lo, reachable from nowhere else.
ADDRESS = "192.0.2.53"
HEADER = 12  # bytes of a DNS message header; the ID is its first two


def _unshare(flags: int) -> None:
    # os.unshare is Python 3.12+; Debian 12 has 3.11.
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(flags) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"unshare: {os.strerror(errno)}")


def _private_resolv_conf(resolv_conf: str) -> None:
    """/etc/resolv.conf replaced by ``resolv_conf`` in this mount namespace only:
    private propagation first, or the bind mount would reach the machine's."""
    subprocess.run(["mount", "--make-rprivate", "/"], check=True)
    subprocess.run(["mount", "--bind", resolv_conf, "/etc/resolv.conf"], check=True)


def relay(upstream: socket.socket, listener: socket.socket) -> None:
    """Queries get IDs of our own upstream, so concurrent clients' equal IDs
    cannot meet; an answer goes back under the ID its client chose."""
    pending: dict[int, tuple[bytes, tuple[str, int]]] = {}
    serial = 0
    while True:
        ready, _, _ = select.select([upstream, listener], [], [])
        if listener in ready:
            query, client = listener.recvfrom(65535)
            if len(query) >= HEADER:
                serial = (serial + 1) & 0xFFFF
                ours = serial.to_bytes(2, "big")
                pending[serial] = (query[:2], client)
                upstream.send(ours + query[2:])
        if upstream in ready:
            answer = upstream.recv(65535)
            entry = pending.pop(int.from_bytes(answer[:2], "big"), None) if answer else None
            if entry is not None:
                listener.sendto(entry[0] + answer[2:], entry[1])


def main(argv: list[str]) -> int:
    upstream_port, resolv_conf = int(argv[1]), argv[2]
    upstream = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    upstream.connect(("127.0.0.1", upstream_port))  # made before the move: the machine's loopback
    _unshare(CLONE_NEWNET | CLONE_NEWNS)
    _private_resolv_conf(resolv_conf)
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    subprocess.run(["ip", "addr", "add", f"{ADDRESS}/32", "dev", "lo"], check=True)
    listener = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    listener.bind((ADDRESS, 53))
    print("ready", flush=True)
    relay(upstream, listener)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
