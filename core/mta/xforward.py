"""Postfix's XFORWARD SMTP extension: the original client of a message,
handed from Postfix to the filter and from the filter to the reinjection
service, so Postfix's logs after the filter still name the real client.

Values stay xtext-encoded as received: we only pass them on.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from e2a.core.net import addresses

ATTRIBUTES = ("NAME", "ADDR", "PORT", "PROTO", "HELO", "IDENT", "SOURCE")
# xtext: printable ASCII except "=" (and space, which separates attributes).
_VALUE = re.compile(r"[\x21-\x3c\x3e-\x7e]{0,255}")
# Postfix's SMTP command line limit is 512 octets with CRLF.
_MAX_ARGS = 512 - len("XFORWARD \r\n")


class XforwardError(ValueError):
    pass


def parse(arg: str) -> dict[str, str]:
    """The attributes of one XFORWARD command, names upper-cased."""
    attrs: dict[str, str] = {}
    for item in arg.split():
        name, sep, value = item.partition("=")
        name = name.upper()
        if not sep or name not in ATTRIBUTES:
            raise XforwardError(f"unknown XFORWARD attribute {name[:20]!r}")
        if not _VALUE.fullmatch(value):
            raise XforwardError(f"bad XFORWARD value for {name}")
        attrs[name] = value
    if not attrs:
        raise XforwardError("XFORWARD needs attribute=value")
    return attrs


def commands(attrs: Mapping[str, str], supported: Iterable[str]) -> list[str]:
    """Arguments of the XFORWARD commands that pass ``attrs`` on to a server
    announcing ``supported``, each within the command line limit."""
    accepted = {name.upper() for name in supported}
    out: list[str] = []
    current = ""
    for name in ATTRIBUTES:
        if not attrs.get(name) or name not in accepted:
            continue
        item = f"{name}={attrs[name]}"
        if current and len(current) + 1 + len(item) > _MAX_ARGS:
            out.append(current)
            current = item
        else:
            current = f"{current} {item}" if current else item
    if current:
        out.append(current)
    return out


def from_this_host(attrs: Mapping[str, str]) -> bool:
    """Whether the message was submitted on this host: by sendmail (SOURCE=LOCAL)
    or by a client on a loopback address (the API, a local program). Without
    XFORWARD's ADDR (no Postfix in front) it is taken as local too: only this
    host reaches the filter's loopback port."""
    if attrs.get("SOURCE", "").upper() == "LOCAL":
        return True
    return addresses.local_client(attrs.get("ADDR", ""))
