"""Netstrings (``<length>:<bytes>,``), the framing of Postfix's socketmap."""

from __future__ import annotations

from typing import BinaryIO


class NetstringError(Exception):
    """The peer sent something that is not a netstring we accept; the stream
    cannot be resynchronised, so the connection must be dropped."""


def encode(data: bytes) -> bytes:
    return b"%d:%s," % (len(data), data)


def read(stream: BinaryIO, max_length: int) -> bytes | None:
    """The next netstring's payload; None on a clean end of stream (before
    its first byte). A length above ``max_length`` fails before anything
    that large is read."""
    digits = b""
    # One digit more than max_length has is already too long.
    longest = len(str(max_length)) + 1
    while True:
        byte = stream.read(1)
        if not byte:
            if digits:
                raise NetstringError("connection closed inside a length")
            return None
        if byte == b":":
            break
        if not byte.isdigit():
            raise NetstringError(f"bad length byte {byte!r}")
        digits += byte
        if len(digits) > longest:
            raise NetstringError("length too long")
    if not digits:
        raise NetstringError("empty length")
    length = int(digits)
    if length > max_length:
        raise NetstringError(f"netstring of {length} bytes exceeds {max_length}")
    data = _read_exactly(stream, length + 1)
    if data[-1:] != b",":
        raise NetstringError("netstring not terminated by ','")
    return data[:-1]


def _read_exactly(stream: BinaryIO, size: int) -> bytes:
    chunks: list[bytes] = []
    left = size
    while left:
        chunk = stream.read(left)
        if not chunk:
            raise NetstringError("connection closed inside a netstring")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)
