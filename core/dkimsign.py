"""DKIM-signing outbound mail with the sending domain's key (dkimpy).

relaxed/relaxed: the signature survives the header refolding and the
whitespace changes relays make. It covers the headers a reader trusts or a
thread depends on, those present in the message; From is signed once more
than it occurs, so a second From added on the way breaks the signature
instead of being shown to the reader as the author.
"""

from __future__ import annotations

import dkim

from e2a.core.dkimkeys import SigningKey

SIGNED_HEADERS = (
    "from", "sender", "reply-to", "to", "cc", "subject", "date", "message-id",
    "in-reply-to", "references", "mime-version", "content-type",
    "content-transfer-encoding",
)
OVERSIGNED = ("from",)


def header_names(raw: bytes) -> set[str]:
    """The names of the header fields of ``raw`` (lowercase)."""
    head = raw.split(b"\r\n\r\n", 1)[0]
    names = set()
    for line in head.split(b"\r\n"):
        if line[:1] not in (b" ", b"\t") and b":" in line:
            names.add(line.split(b":", 1)[0].strip().lower().decode("ascii", "replace"))
    return names


def sign(raw: bytes, key: SigningKey) -> bytes:
    """``raw`` with a DKIM-Signature for ``key``'s domain on top."""
    present = header_names(raw)
    include = [h for h in SIGNED_HEADERS if h in present]
    include += [h for h in OVERSIGNED if h in present]
    signature = dkim.sign(raw, key.selector.encode("ascii"), key.domain.encode("ascii"),
                          key.private_pem, canonicalize=(b"relaxed", b"relaxed"),
                          include_headers=[h.encode("ascii") for h in include])
    return signature + raw
