"""Headers a sender wrote in our name: an Authentication-Results that claims
our authserv-id (RFC 8601 section 5: a border MTA must delete those) and any
X-E2A-Auth-* attestation, which only we sign and only the API carries."""

from __future__ import annotations

import re

AR = b"authentication-results"
ATTESTATION_PREFIX = b"x-e2a-auth-"
_COMMENT = re.compile(rb"\([^()]*\)")


def authserv_id(value: bytes) -> bytes:
    """The authserv-id an Authentication-Results value starts with, lowercase."""
    # CFWS may surround it; comments nest, so strip them innermost first.
    previous = None
    while previous != value:
        previous, value = value, _COMMENT.sub(b" ", value)
    words = value.split(b";", 1)[0].split()
    return words[0].lower() if words else b""


def claims_ours(name: bytes, value: bytes, our_authserv_id: str) -> bool:
    key = name.strip().lower()
    if key.startswith(ATTESTATION_PREFIX):
        return True
    return key == AR and authserv_id(value) == our_authserv_id.lower().encode()


def deletions(headers: list[tuple[bytes, bytes]], forged: list[int]) -> list[tuple[str, int]]:
    """(name, occurrence) for smfi_chgheader to delete the headers at the
    ``forged`` positions. The MTA counts occurrences of a name from 1; the
    list runs from the last one so that each deletion leaves the indexes of
    the ones still to come unchanged."""
    seen: dict[bytes, int] = {}
    out = []
    wanted = set(forged)
    for position, (name, _value) in enumerate(headers):
        key = name.strip().lower()
        seen[key] = seen.get(key, 0) + 1
        if position in wanted:
            out.append((name.strip().decode("ascii", "replace"), seen[key]))
    return out[::-1]
