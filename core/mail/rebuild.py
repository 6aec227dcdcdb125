"""Rebuild the message bytes exactly as the client sent them.

With SMFIP_HDR_LEADSPC negotiated Postfix passes each header value with its
leading white space and its folds, but joins folded lines with LF while the
body arrives with CRLF. DKIM's ``simple`` canonicalization verifies only on
the exact bytes, so every LF goes back to CRLF.
"""

from __future__ import annotations

import re

_LINE_END = re.compile(rb"\r?\n")


def header_line(name: bytes, value: bytes, leading_space: bool) -> bytes:
    if not leading_space:
        # Without the option the MTA stripped the space after the colon.
        value = b" " + value
    return name + b":" + _LINE_END.sub(b"\r\n", value) + b"\r\n"


def line_size(name: bytes, value: bytes) -> int:
    """len(header_line(...)) without building it: each LF gains a CR."""
    return len(name) + 1 + len(value) + value.count(b"\n") - value.count(b"\r\n") + 2


def message(headers: list[tuple[bytes, bytes]], body: bytes, leading_space: bool) -> bytes:
    head = b"".join(header_line(n, v, leading_space) for n, v in headers)
    return head + b"\r\n" + body
