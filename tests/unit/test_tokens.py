"""Signed tokens: CONTRACT.md's magic-link vector, tampering, purposes."""

from __future__ import annotations

import pytest

from e2a.core import tokens

SECRET = "e2a-interop-test-secret-0123456789abcdef"
KEY = SECRET.encode()  # the contract's vector: the test secret's bytes as the key
MESSAGE_ID = "msg_0123456789abcdef0123456789abcdef"
EXP = 1780000000
APPROVE = ("bXNnXzAxMjM0NTY3ODlhYmNkZWYwMTIzNDU2Nzg5YWJjZGVmfGFwcHJvdmV8MTc4MDAwMDAwMA"
           ".cLSuNO3PL94coim5thqy0FPlawYxmX3WQtvSklRDN2w")
REJECT = ("bXNnXzAxMjM0NTY3ODlhYmNkZWYwMTIzNDU2Nzg5YWJjZGVmfHJlamVjdHwxNzgwMDAwMDAw"
          ".CWWAS9UOft-5uU-mwT2KapK8BIBEPOM9UzdOtaeU1N8")


def test_magic_link_contract_vector():
    assert tokens.magic_link(KEY, MESSAGE_ID, "approve", EXP) == APPROVE
    assert tokens.magic_link(KEY, MESSAGE_ID, "reject", EXP) == REJECT


@pytest.mark.parametrize(("token", "action"), [(APPROVE, "approve"), (REJECT, "reject")])
def test_magic_link_verifies_until_expiry(token, action):
    link = tokens.verify_magic_link(KEY, token, now=EXP)
    assert link == tokens.MagicLink(MESSAGE_ID, action, EXP)
    with pytest.raises(tokens.TokenExpired):
        tokens.verify_magic_link(KEY, token, now=EXP + 1)


def test_magic_link_is_bound_to_its_action():
    approve_payload = APPROVE.split(".")[0]
    reject_mac = REJECT.split(".")[1]
    with pytest.raises(tokens.TokenError):
        tokens.verify_magic_link(KEY, f"{approve_payload}.{reject_mac}", now=0)


@pytest.mark.parametrize("bad", [
    APPROVE[:-1] + ("A" if APPROVE[-1] != "A" else "B"),  # signature altered
    "x" + APPROVE[1:],  # payload altered
    APPROVE + "=",  # padding is not part of the format
    APPROVE.replace(".", ""),
    "",
    "....",
    "not base64!.abc",
])
def test_magic_link_rejects_tampering(bad):
    with pytest.raises(tokens.TokenError):
        tokens.verify_magic_link(KEY, bad, now=0)


def test_magic_link_rejects_other_secret():
    with pytest.raises(tokens.TokenError) as caught:
        tokens.verify_magic_link(KEY + b"x", APPROVE, now=0)
    assert not isinstance(caught.value, tokens.TokenExpired)


def test_magic_link_refuses_unknown_action():
    with pytest.raises(ValueError):
        tokens.magic_link(KEY, MESSAGE_ID, "delete", EXP)
    forged = tokens.sign(KEY, f"{MESSAGE_ID}|delete|{EXP}".encode())
    with pytest.raises(tokens.TokenError):
        tokens.verify_magic_link(KEY, forged, now=0)


def test_base64url_has_one_spelling():
    assert tokens.b64url(b"\xff\xfe") == "__4"
    assert tokens.b64url_decode("__4") == b"\xff\xfe"
    # "__5" decodes to the same bytes with other leftover bits: refused.
    with pytest.raises(tokens.TokenError):
        tokens.b64url_decode("__5")
    with pytest.raises(tokens.TokenError):
        tokens.b64url_decode("A")  # no byte count ends like this


def test_json_tokens_round_trip_and_are_bound_to_their_purpose():
    token = tokens.sign_json(SECRET, "cursor", {"b": [1, "x"], "a": None})
    assert tokens.verify_json(SECRET, "cursor", token) == {"a": None, "b": [1, "x"]}
    with pytest.raises(tokens.TokenError):
        tokens.verify_json(SECRET, "other", token)
    with pytest.raises(tokens.TokenError):
        tokens.verify_json(SECRET + "x", "cursor", token)
    # A magic link is not a cursor even though one secret backs both.
    with pytest.raises(tokens.TokenError):
        tokens.verify_json(SECRET, "cursor", APPROVE)


def test_json_tokens_must_hold_an_object():
    key = tokens.purpose_key(SECRET, "cursor")
    for payload in (b"[1]", b"not json"):
        with pytest.raises(tokens.TokenError):
            tokens.verify_json(SECRET, "cursor", tokens.sign(key, payload))
