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


def test_a_key_asked_for_every_message_is_derived_once(monkeypatch) -> None:
    """The VERP key (milter, filter) and the reinjection login's key
    (filter) are asked for every message: HKDF runs once per key."""
    derived: list[bytes] = []
    real = keys.HKDF

    def counted(**kwargs):
        derived.append(kwargs["info"])
        return real(**kwargs)

    monkeypatch.setattr(keys, "HKDF", counted)
    secret = SECRET + "-once"
    first = [keys.derive(secret, keys.VERP), keys.derive(secret, keys.REINJECT_LOGIN)]
    again = [keys.derive(secret, keys.VERP), keys.derive(secret, keys.REINJECT_LOGIN)]
    assert first == again
    assert len(derived) == 2
