"""Per-domain DKIM keys: generation, encryption at rest, and a real signature
made with a decrypted key that dkimpy verifies against the published record."""

from __future__ import annotations

import secrets
from types import SimpleNamespace

import dkim
import pytest

from e2a.core.accounts import dkimkeys, domains
from e2a.core.accounts import registration as accounts
from e2a.core.db import single_connection
from e2a.core.store import agents as agent_store

MESSAGE = (b"From: bot@keys.example\r\nTo: alice@example.org\r\nSubject: signed\r\n"
           b"Message-ID: <k1@keys.example>\r\n\r\nHello, signed world.\r\n")


@pytest.fixture(scope="module")
def pair():
    return dkimkeys.generate()


def fake_cfg(hmac_secret="h" * 40, encryption_key=""):
    return SimpleNamespace(secrets=SimpleNamespace(hmac_secret=hmac_secret,
                                                   encryption_key=encryption_key))


def test_generated_pair_is_rsa_2048_in_dkimpy_forms(pair):
    assert pair.selector == dkimkeys.SELECTOR
    assert pair.private_pem.startswith(b"-----BEGIN RSA PRIVATE KEY-----")
    record = dkimkeys.public_record(pair.public_key)
    assert record == f"v=DKIM1; k=rsa; p={pair.public_key}"
    assert dkimkeys.published_key(record) == pair.public_key
    # 2048-bit modulus: a 294-byte SubjectPublicKeyInfo, 392 base64 characters.
    assert len(pair.public_key) == 392
    assert "PRIVATE" not in repr(pair) and pair.public_key not in repr(pair)


def test_round_trip_and_what_does_not_decrypt(pair):
    key = dkimkeys.encryption_key(fake_cfg())
    blob = dkimkeys.encrypt(key, "keys.example", pair.private_pem)
    assert pair.private_pem not in blob and b"PRIVATE" not in blob
    assert blob[:1] == dkimkeys.FORMAT_V1
    assert dkimkeys.decrypt(key, "keys.example", blob) == pair.private_pem
    # Fresh nonce each time: the same key never seals to the same bytes.
    assert dkimkeys.encrypt(key, "keys.example", pair.private_pem) != blob

    with pytest.raises(dkimkeys.DkimKeyError):  # copied onto another domain's row
        dkimkeys.decrypt(key, "other.example", blob)
    with pytest.raises(dkimkeys.DkimKeyError):  # another deployment secret
        dkimkeys.decrypt(dkimkeys.encryption_key(fake_cfg("x" * 40)), "keys.example", blob)
    tampered = blob[:-1] + bytes([blob[-1] ^ 1])
    with pytest.raises(dkimkeys.DkimKeyError):
        dkimkeys.decrypt(key, "keys.example", tampered)
    with pytest.raises(dkimkeys.DkimKeyError):
        dkimkeys.decrypt(key, "keys.example", b"\x02" + blob[1:])


def test_encryption_key_comes_from_encryption_key_else_hmac_secret():
    derived = dkimkeys.encryption_key(fake_cfg("h" * 40))
    assert len(derived) == 32
    assert derived != b"h" * 32  # derived, not the secret itself
    assert dkimkeys.encryption_key(fake_cfg("h" * 40)) == derived
    own = dkimkeys.encryption_key(fake_cfg("h" * 40, encryption_key="e" * 40))
    assert own != derived
    assert own == dkimkeys.encryption_key(fake_cfg("z" * 40, encryption_key="e" * 40))


def test_published_key_reads_what_dns_hands_back(pair):
    spaced = f"v=DKIM1;  k=rsa;\tp={pair.public_key[:100]} {pair.public_key[100:]}"
    assert dkimkeys.published_key(spaced) == pair.public_key
    assert dkimkeys.published_key(f"p={pair.public_key}") == pair.public_key  # v, k optional
    assert dkimkeys.published_key("v=DKIM1; k=ed25519; p=abc") is None
    assert dkimkeys.published_key("v=DKIM1; k=rsa; p=") is None  # a revoked key
    assert dkimkeys.published_key("v=spf1 -all") is None


def test_a_decrypted_key_signs_what_the_public_record_verifies(pair):
    key = dkimkeys.encryption_key(fake_cfg())
    pem = dkimkeys.decrypt(key, "keys.example",
                           dkimkeys.encrypt(key, "keys.example", pair.private_pem))
    signature = dkim.sign(MESSAGE, pair.selector.encode(), b"keys.example", pem,
                          include_headers=[b"from", b"to", b"subject"])
    signed = signature + MESSAGE
    record = dkimkeys.public_record(pair.public_key).encode()

    def dnsfunc(name, timeout=5):
        return record if name == b"e2a._domainkey.keys.example." else None

    assert dkim.verify(signed, dnsfunc=dnsfunc)
    assert not dkim.verify(signed.replace(b"Hello", b"Jello"), dnsfunc=dnsfunc)
    other = dkimkeys.public_record(dkimkeys.generate().public_key).encode()
    assert not dkim.verify(signed, dnsfunc=lambda name, timeout=5: other)


def test_registered_domain_key_is_stored_encrypted_and_loads(cfg):
    name = f"k{secrets.token_hex(4)}.example"
    with single_connection(cfg) as conn:
        user = accounts.create_user(conn, f"keys-{secrets.token_hex(4)}@example.net")
        row = domains.register(conn, cfg, user["id"], name)
        assert b"PRIVATE KEY" not in bytes(row["dkim_private_key_enc"])
        loaded = dkimkeys.load_private_key(conn, cfg, name)
        assert dkimkeys.load_private_key(conn, cfg, "nobody.example") is None
    assert loaded is not None
    assert (loaded.domain, loaded.selector) == (name, "e2a")
    assert "PRIVATE" not in repr(loaded)
    signed = dkim.sign(MESSAGE, b"e2a", name.encode(), loaded.private_pem) + MESSAGE
    record = dkimkeys.public_record(row["dkim_public_key"]).encode()
    assert dkim.verify(signed, dnsfunc=lambda n, timeout=5: record)


def test_shared_domain_gets_a_key_once(cfg):
    with single_connection(cfg) as conn:
        accounts.seed_shared_domain(conn, cfg)
        first = agent_store.domain_by_name(conn, cfg.mail.shared_domain)
        accounts.seed_shared_domain(conn, cfg)
        again = agent_store.domain_by_name(conn, cfg.mail.shared_domain)
        loaded = dkimkeys.load_private_key(conn, cfg, cfg.mail.shared_domain)
    assert first["dkim_public_key"]
    assert again["dkim_public_key"] == first["dkim_public_key"]  # never replaced
    assert loaded is not None and loaded.private_pem.startswith(b"-----BEGIN RSA")


def test_a_new_key_on_the_row_is_the_one_loaded_next(cfg):
    """Decryption is cached by ciphertext: a key replaced on the row (a
    rotation) is used from the next message on, never the old one."""
    name = f"r{secrets.token_hex(4)}.example"
    with single_connection(cfg) as conn:
        user = accounts.create_user(conn, f"rotate-{secrets.token_hex(4)}@example.net")
        domains.register(conn, cfg, user["id"], name)
        first = dkimkeys.load_private_key(conn, cfg, name)
        assert dkimkeys.load_private_key(conn, cfg, name) == first
        rotated = dkimkeys.generate("e2a2")
        conn.execute("UPDATE domains SET dkim_selector = %s, dkim_private_key_enc = %s "
                     "WHERE domain = %s",
                     (rotated.selector, dkimkeys.sealed(cfg, name, rotated), name))
        second = dkimkeys.load_private_key(conn, cfg, name)
    assert first is not None and second is not None
    assert (second.selector, second.private_pem) == ("e2a2", rotated.private_pem)
    assert second.private_pem != first.private_pem


def test_a_ciphertext_that_does_not_decrypt_fails_every_time(pair):
    blob = dkimkeys.encrypt(dkimkeys.encryption_key(fake_cfg()), "keys.example",
                            pair.private_pem)
    wrong = dkimkeys.encryption_key(fake_cfg(hmac_secret="w" * 40))
    for _ in range(2):  # a failure is not remembered as anything else
        with pytest.raises(dkimkeys.DkimKeyError):
            dkimkeys.decrypt(wrong, "keys.example", blob)
