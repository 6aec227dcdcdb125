"""Listening sockets for the services Postfix connects to (policy, filter)."""

from __future__ import annotations

import contextlib
import grp
import os
import socket
import stat

from e2a.core.net.addresses import Address, InetAddress, UnixAddress


class ListenError(Exception):
    """The socket cannot be set up; str() is the one line to show."""


class ListeningSocket:
    """A bound, listening socket; ``close()`` also removes a unix socket file,
    but only while it is still ours (a newer instance may have replaced it)."""

    def __init__(self, sock: socket.socket, address: Address, inode: int | None = None) -> None:
        self.sock = sock
        self.address = address
        self._inode = inode

    def close(self) -> None:
        self.sock.close()
        if isinstance(self.address, UnixAddress):
            with contextlib.suppress(FileNotFoundError):
                if os.stat(self.address.path).st_ino == self._inode:
                    os.unlink(self.address.path)


def bind(address: Address, backlog: int = 128) -> ListeningSocket:
    try:
        if isinstance(address, UnixAddress):
            return _bind_unix(address.path, backlog)
        return _bind_inet(address, backlog)
    except OSError as exc:
        raise ListenError(f"cannot listen on {address}: {exc.strerror or exc}") from None


def _bind_inet(address: InetAddress, backlog: int) -> ListeningSocket:
    family, type_, proto, _, sockaddr = socket.getaddrinfo(
        address.host, address.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    sock = socket.socket(family, type_, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(sockaddr)
        sock.listen(backlog)
    except OSError:
        sock.close()
        raise
    # Port 0 (tests) becomes the port the kernel picked.
    return ListeningSocket(sock, InetAddress(address.host, sock.getsockname()[1]))


def _bind_unix(path: str, backlog: int) -> ListeningSocket:
    _remove_stale(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(path)
        _let_postfix_connect(path)
        sock.listen(backlog)
        inode = os.stat(path).st_ino
    except OSError:
        sock.close()
        raise
    return ListeningSocket(sock, UnixAddress(path), inode)


def _remove_stale(path: str) -> None:
    """A socket file left by a process that died; refuse to steal a live one."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise ListenError(f"cannot listen on unix:{path}: exists and is not a socket")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
    except (ConnectionRefusedError, FileNotFoundError):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        return
    finally:
        probe.close()
    raise ListenError(f"cannot listen on unix:{path}: another process is serving it")


def _let_postfix_connect(path: str) -> None:
    """Postfix's smtpd runs as user postfix. As root we can hand the socket to
    group postfix (0660); otherwise only a world-writable socket lets it in,
    and the directory it sits in is what guards it."""
    if os.geteuid() == 0:
        try:
            gid = grp.getgrnam("postfix").gr_gid
        except KeyError:
            pass
        else:
            os.chown(path, 0, gid)
            os.chmod(path, 0o660)
            return
    os.chmod(path, 0o666)  # noqa: S103 (the point: Postfix must connect)
