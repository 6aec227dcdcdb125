"""Addresses: the socket addresses of the configuration (``unix:/path``,
``inet:host:port`` or ``host:port``; config checks the syntax, this turns it
into something to bind or connect to), and the one canonical form of a mail
address that every lookup of an agent or sender uses."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass


@dataclass(frozen=True)
class UnixAddress:
    path: str

    def __str__(self) -> str:
        return f"unix:{self.path}"


@dataclass(frozen=True)
class InetAddress:
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


Address = UnixAddress | InetAddress


def parse(value: str) -> Address:
    if value.startswith("unix:"):
        return UnixAddress(value[5:])
    host, sep, port = value.removeprefix("inet:").rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"not unix:/path or host:port: {value!r}")
    # IPv6 literals may come bracketed ([::1]:10025) or bare (::1:10025).
    return InetAddress(host.removeprefix("[").removesuffix("]"), int(port))


def inet(value: str) -> InetAddress:
    """``value`` as host:port; ValueError when it is a unix socket (the
    configuration refuses that already for the keys that must be TCP)."""
    address = parse(value)
    if not isinstance(address, InetAddress):
        raise ValueError(f"{value} is not host:port")
    return address



def local_client(addr: str) -> bool:
    """Whether a client address Postfix reports is this host's own: a
    loopback address, or none at all (``sendmail``, which no network
    client reaches). Postfix writes IPv6 clients as ``IPv6:...`` in XFORWARD."""
    if not addr:
        return True
    addr = addr[5:] if addr[:5].upper() == "IPV6:" else addr
    try:
        return ipaddress.ip_address(addr).is_loopback
    except ValueError:
        return False  # [UNAVAILABLE], or not an address at all


def mailbox(value: str) -> str:
    """The canonical form of a mail address, as an envelope argument
    (``<...>``), a header's addr-spec or a bare address gives it.

    One address has many spellings that Postfix and receivers treat as the
    same mailbox: ``<"hello"@agents.example>``, ``<hello@agents.example.>``,
    ``<HELLO@Agents.Example>``. Every lookup of an agent (policy service,
    milter, content filter) goes through this, so no spelling is an agent to
    one of them and a stranger to another. Quotes around a local part are
    dropped (with their backslash escapes), a trailing dot of the domain
    goes, and the whole address is lowercased (agents' addresses are stored
    lowercase and compared without case). "" for the null sender."""
    value = value.strip()
    if value.startswith("<") and value.endswith(">"):
        value = value[1:-1].strip()
    # Source routes (<@a,@b:user@host>) are obsolete; the mailbox is what counts.
    if value.startswith("@") and ":" in value:
        value = value.split(":", 1)[1]
    local, at, domain = value.rpartition("@")
    if not at:
        return value.lower()
    if len(local) >= 2 and local.startswith('"') and local.endswith('"'):
        local = _unquote(local[1:-1])
    return f"{local}@{domain.rstrip('.')}".lower()


def _unquote(quoted: str) -> str:
    out: list[str] = []
    escaped = False
    for char in quoted:
        if escaped or char != "\\":
            out.append(char)
            escaped = False
        else:
            escaped = True
    return "".join(out)
