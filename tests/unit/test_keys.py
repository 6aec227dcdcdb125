"""The server's derived keys: one per purpose and owner, none equal to the
deployment secret or to each other."""

from __future__ import annotations

import pytest

from e2a.core.crypto import serverkeys as keys

SECRET = "deployment-secret-0123456789abcdef0123456789"


def test_purposes_and_owners_never_share_key_bytes() -> None:
    made = [keys.derive(SECRET, purpose, owner)
            for purpose in keys.PER_OWNER for owner in ("usr_a", "usr_b")]
    made.append(keys.derive(SECRET, keys.VERP))
    assert len(set(made)) == len(made)
    assert all(len(k) == keys.KEY_BYTES for k in made)
    assert SECRET.encode() not in made
    assert keys.derive(SECRET, keys.MAGIC_LINK, "usr_a") \
        != keys.derive(SECRET + "x", keys.MAGIC_LINK, "usr_a")
    assert keys.derive(SECRET, keys.MAGIC_LINK, "usr_a") \
        == keys.derive(SECRET, keys.MAGIC_LINK, "usr_a")


def test_unknown_purposes_and_missing_owners_are_refused() -> None:
    with pytest.raises(ValueError):
        keys.derive(SECRET, "anything")
    with pytest.raises(ValueError):
        keys.derive(SECRET, keys.MAGIC_LINK)  # a per-owner key needs its owner
    with pytest.raises(ValueError):
        keys.derive(SECRET, keys.VERP, "usr_a")


def test_a_key_is_derived_once_per_process(monkeypatch) -> None:
    derivations = []
    monkeypatch.setattr(keys, "hkdf", lambda *a: derivations.append(a) or b"k" * 32)
    owner = "usr_once"  # asked for nowhere else: not derived yet
    first = keys.derive(SECRET, keys.MAGIC_LINK, owner)
    assert keys.derive(SECRET, keys.MAGIC_LINK, owner) == first
    assert len(derivations) == 1
