"""Postfix's SMTP access policy delegation protocol, on the wire.

A request is ``name=value`` lines ended by an empty line; the answer is one
``action=...`` line and an empty line. Postfix keeps the connection open for
the next request. Limits keep a hostile or broken client from growing a
request without bound: Postfix itself sends about 30 short attributes.
"""

from __future__ import annotations

from typing import BinaryIO

MAX_LINE = 4096  # bytes per attribute line, newline included
MAX_ATTRIBUTES = 64  # lines per request


class ProtocolError(Exception):
    """The client broke the protocol; the connection cannot continue."""


def read_request(stream: BinaryIO) -> dict[str, str] | None:
    """The next request's attributes, or None when the client closed cleanly
    between requests. Socket timeouts propagate as OSError."""
    attrs: dict[str, str] = {}
    lines = 0
    while True:
        line = stream.readline(MAX_LINE + 1)
        if not line:
            if lines:
                raise ProtocolError("connection closed in the middle of a request")
            return None
        if not line.endswith(b"\n"):
            if len(line) > MAX_LINE:
                raise ProtocolError(f"attribute line longer than {MAX_LINE} bytes")
            raise ProtocolError("connection closed in the middle of a line")
        # Postfix sends LF; tolerate CRLF from hand-typed test clients.
        line = line.rstrip(b"\r\n")
        if not line:
            return attrs
        lines += 1
        if lines > MAX_ATTRIBUTES:
            raise ProtocolError(f"more than {MAX_ATTRIBUTES} attributes in one request")
        name, sep, value = line.partition(b"=")
        if not sep or not name:
            raise ProtocolError("attribute line without name=value")
        attrs[name.decode("ascii", "replace")] = value.decode("utf-8", "replace")


def encode_action(action: str) -> bytes:
    if "\n" in action or "\r" in action:
        raise ValueError("an action is one line")
    return f"action={action}\n\n".encode()
