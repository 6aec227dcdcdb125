"""Outbound DKIM: dkimpy signs, OpenSSL does its RSA step; the result must be
the very signature dkimpy's own arithmetic makes, and verify independently."""

from __future__ import annotations

import hashlib

import dkim
import pytest
from dkim import crypto as dkim_crypto

from e2a.core.accounts import dkimkeys
from e2a.core.accounts.dkimkeys import SigningKey
from e2a.core.mailauth import dkim as mail_dkim
from e2a.core.mailauth.lookups import Lookups
from e2a.core.mta import dkimsign

MESSAGE = (b"From: Agent <agent@signer.test>\r\nTo: someone@elsewhere.test\r\n"
           b"Subject: a signed message\r\nDate: Mon, 07 Dec 2026 18:00:00 +0000\r\n"
           b"Message-ID: <one@signer.test>\r\n\r\n" + b"Hello there.\r\n" * 40)


@pytest.fixture(scope="module")
def key() -> tuple[SigningKey, str]:
    pair = dkimkeys.generate("sel")
    return SigningKey("signer.test", "sel", pair.private_pem), pair.public_key


def _dns(record: str):
    def lookup(name: bytes, timeout: int = 5) -> bytes:
        assert name == b"sel._domainkey.signer.test."
        return dkimkeys.public_record(record).encode()
    return lookup


def test_openssl_rsa_gives_dkimpys_own_signature_bytes(key):
    signing_key, _ = key
    dkimsign.use_openssl_rsa()
    parsed = dkim.parse_pem_private_key(signing_key.private_pem)
    for text in (b"one", b"another digest input"):
        h = hashlib.sha256(text)
        assert dkim.RSASSA_PKCS1_v1_5_sign(h, parsed) == \
            dkim_crypto.RSASSA_PKCS1_v1_5_sign(hashlib.sha256(text), parsed)


def test_signed_message_verifies_with_dkimpy_and_tampering_fails(key):
    signing_key, public = key
    signed = dkimsign.sign(MESSAGE, signing_key)
    assert signed.startswith(b"DKIM-Signature:")
    # dkim.verify uses the pure-Python verification path: independent of OpenSSL.
    assert dkim.verify(signed, dnsfunc=_dns(public))
    assert not dkim.verify(signed.replace(b"Hello there.", b"Hello where."),
                           dnsfunc=_dns(public))


def test_our_milters_verifier_passes_it(key):
    signing_key, public = key
    signed = dkimsign.sign(MESSAGE, signing_key)

    class Zone(Lookups):
        def txt(self, name: str) -> list[str]:
            assert name.rstrip(".") == "sel._domainkey.signer.test"
            return [dkimkeys.public_record(public)]

    results = mail_dkim.check(signed, Zone())
    assert [(r.result, r.domain, r.selector) for r in results] == \
        [("pass", "signer.test", "sel")]
