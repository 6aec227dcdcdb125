"""Netstrings (``<length>:<bytes>,``), the framing of Postfix's socketmap."""

from __future__ import annotations

from typing import BinaryIO

from e2a.policy.connections import ProtocolError


class NetstringError(ProtocolError):
    """The peer sent something that is not a netstring we accept; the stream
    cannot be resynchronised, so the connection must be dropped."""


def encode(data: bytes) -> bytes:
    return b"%d:%s," % (len(data), data)


class Reader:
    """One connection's netstrings, fed its bytes as they arrive. A length
    above ``max_length`` fails before anything that large is buffered."""

    def __init__(self, max_length: int) -> None:
        self.max_length = max_length
        # One digit more than max_length has is already too long.
        self._longest = len(str(max_length)) + 1
        self._buffer = bytearray()

    def mid_request(self) -> bool:
        return bool(self._buffer)

    def feed(self, data: bytes) -> list[bytes]:
        self._buffer += data
        done = []
        while self._buffer:
            colon = self._buffer.find(b":", 0, self._longest + 1)
            digits = bytes(self._buffer[:colon if colon >= 0 else self._longest + 1])
            if not digits.isdigit():
                if not digits:
                    raise NetstringError("empty length")
                raise NetstringError(f"bad length byte in {digits[:12]!r}")
            if colon < 0:
                if len(digits) > self._longest:
                    raise NetstringError("length too long")
                return done
            length = int(digits)
            if length > self.max_length:
                raise NetstringError(f"netstring of {length} bytes exceeds {self.max_length}")
            end = colon + 1 + length
            if len(self._buffer) <= end:
                return done
            if self._buffer[end] != ord(","):
                raise NetstringError("netstring not terminated by ','")
            done.append(bytes(self._buffer[colon + 1:end]))
            del self._buffer[:end + 1]
        return done


def read(stream: BinaryIO, max_length: int) -> bytes | None:
    """The next netstring's payload from a blocking stream (a client's side);
    None on a clean end of stream (before its first byte)."""
    reader = Reader(max_length)
    while True:
        byte = stream.read(1)
        if not byte:
            if reader.mid_request():
                raise NetstringError("connection closed inside a netstring")
            return None
        found = reader.feed(byte)
        if found:
            return found[0]
