"""Postfix's SMTP access policy delegation protocol, on the wire.

A request is ``name=value`` lines ended by an empty line; the answer is one
``action=...`` line and an empty line. Postfix keeps the connection open for
the next request. Limits keep a hostile or broken client from growing a
request without bound: Postfix itself sends about 30 short attributes.

What Postfix cannot have sent (a line over the limit or without ``=``, a
NUL, no ``request=smtpd_access_policy``) is trouble: SMTPD_POLICY_README
says a policy server then logs a warning and disconnects, sending no
reply (Postfix would retry, then apply its default action). What Postfix
does send is answered, however odd: 8-bit bytes (an address without
SMTPUTF8) are decoded with U+FFFD for what is not UTF-8, which no agent
address contains.
"""

from __future__ import annotations

from e2a.policy.connections import ProtocolError

MAX_LINE = 4096  # bytes per attribute line, newline included
MAX_ATTRIBUTES = 64  # lines per request
REQUEST = "smtpd_access_policy"

__all__ = ["MAX_ATTRIBUTES", "MAX_LINE", "ProtocolError", "RequestReader", "encode_action"]


class RequestReader:
    """One connection's requests, fed its bytes as they arrive (in pieces of
    any size: the work is linear in the bytes, however they are split)."""

    def __init__(self) -> None:
        self._partial = bytearray()  # a line not ended yet
        self._attrs: dict[str, str] = {}
        self._lines = 0

    def mid_request(self) -> bool:
        return bool(self._lines or self._partial)

    def feed(self, data: bytes) -> list[dict[str, str]]:
        """The requests ``data`` completes, each checked; raises ProtocolError."""
        done = []
        start = 0
        while True:
            end = data.find(b"\n", start)
            if end < 0:
                self._partial += data[start:]
                if len(self._partial) > MAX_LINE:
                    raise ProtocolError(f"attribute line longer than {MAX_LINE} bytes")
                return done
            line = bytes(self._partial) + data[start:end + 1]
            self._partial.clear()
            start = end + 1
            if len(line) > MAX_LINE:
                raise ProtocolError(f"attribute line longer than {MAX_LINE} bytes")
            request = self._line(line)
            if request is not None:
                done.append(request)

    def _line(self, line: bytes) -> dict[str, str] | None:
        # Postfix sends LF; tolerate CRLF from hand-typed test clients.
        line = line.rstrip(b"\r\n")
        if not line:
            attrs, self._attrs, self._lines = self._attrs, {}, 0
            if attrs.get("request") != REQUEST:
                raise ProtocolError(f"a request without request={REQUEST}")
            return attrs
        self._lines += 1
        if self._lines > MAX_ATTRIBUTES:
            raise ProtocolError(f"more than {MAX_ATTRIBUTES} attributes in one request")
        name, sep, value = line.partition(b"=")
        if not sep or not name:
            raise ProtocolError("attribute line without name=value")
        if b"\x00" in line:
            raise ProtocolError("NUL in an attribute")
        self._attrs[name.decode("utf-8", "replace")] = value.decode("utf-8", "replace")
        return None


def encode_action(action: str) -> bytes:
    if "\n" in action or "\r" in action:
        raise ValueError("an action is one line")
    return f"action={action}\n\n".encode()
