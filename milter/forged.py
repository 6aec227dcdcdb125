"""Headers a sender wrote in our name: an Authentication-Results that claims
our authserv-id (RFC 8601 section 5: a border MTA must delete those) and any
X-E2A-Auth-* attestation, which only we sign and only the API carries."""

from __future__ import annotations

AR = b"authentication-results"
ATTESTATION_PREFIX = b"x-e2a-auth-"
_WSP = b" \t\r\n\x0b\x0c"
_QUOTE, _BACKSLASH, _OPEN, _CLOSE, _SEMICOLON = b'"\\();'


def authserv_id(value: bytes) -> bytes:
    """The authserv-id an Authentication-Results value starts with, as a
    reader downstream would compare it: lowercase, unquoted, without a
    trailing dot; b"" when there is none.

    One pass over the value (RFC 8601 2.2: ``[CFWS] authserv-id``, the id a
    token or a quoted-string, comments nested and holding quoted-pairs):
    CPU grows with its length only, however the parentheses nest. The
    milter caps that length (core.inbound.MAX_HEADER_BYTES)."""
    i, end = 0, len(value)
    depth = 0
    while i < end:  # CFWS before the id
        byte = value[i]
        if depth:
            if byte == _BACKSLASH:
                i += 1  # quoted-pair: the next byte is text, even a parenthesis
            elif byte == _OPEN:
                depth += 1
            elif byte == _CLOSE:
                depth -= 1
        elif byte == _OPEN:
            depth = 1
        elif byte not in _WSP:
            break
        i += 1
    if i >= end:
        return b""
    out = bytearray()
    if value[i] == _QUOTE:
        i += 1
        while i < end and value[i] != _QUOTE:
            if value[i] == _BACKSLASH:
                i += 1
            if i < end:
                out.append(value[i])
            i += 1
    else:
        while i < end and value[i] not in _WSP and value[i] not in (_OPEN, _SEMICOLON, _QUOTE):
            out.append(value[i])
            i += 1
    # Folding inside a quoted id and a root-anchored name mean the same host.
    return b"".join(bytes(out).split()).lower().rstrip(b".")


def claims_ours(name: bytes, value: bytes, our_authserv_id: str) -> bool:
    key = name.strip().lower()
    if key.startswith(ATTESTATION_PREFIX):
        return True
    ours = our_authserv_id.strip().lower().rstrip(".").encode()
    return key == AR and authserv_id(value) == ours


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
