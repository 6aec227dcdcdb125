"""DKIM results that the golden messages do not show: signatures and keys that
cannot be used as written, and the per-message lookup memory."""

from __future__ import annotations

import hashlib
import time
from typing import Any

import dkim as dkimpy
import dns.exception
import dns.resolver
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa, utils
from dkim import crypto as dkimpy_crypto
from mailworld import dkim_record, eml

from e2a.core.mailauth import dkim
from e2a.core.mailauth.lookups import DnsTempFail, Lookups
from e2a.core.net import resolver as core_dns

GOOD_KEY = dkim_record("dkim1")


class KeyZone(Lookups):
    """Lookups whose DNS is a dict."""

    def __init__(self, records: dict[str, str]) -> None:
        super().__init__()
        self.records = records

    def txt(self, name: str) -> list[str]:
        name = name.rstrip(".")
        return [self.records[name]] if name in self.records else []


def results(raw: bytes, records: dict[str, str]) -> list[str]:
    return [r.result for r in dkim.check(raw, KeyZone(records))]


def test_the_golden_signature_passes_with_the_published_key() -> None:
    assert results(eml("dkim_pass"), {"sel1._domainkey.good.example": GOOD_KEY}) == ["pass"]


def test_a_signature_with_syntax_errors_is_neutral() -> None:
    raw = b"DKIM-Signature: v=1; this is not a tag list\r\n" + eml("spf_pass")
    assert results(raw, {}) == ["neutral"]


def test_a_key_that_cannot_be_used_is_permerror() -> None:
    raw = eml("dkim_pass")
    assert results(raw, {"sel1._domainkey.good.example": "v=DKIM1; k=rsa; p=bm90IGEga2V5"}) \
        == ["permerror"]
    assert results(raw, {}) == ["permerror"]  # no key published


def test_a_signature_missing_a_required_tag_fails() -> None:
    raw = eml("dkim_pass").replace(b" bh=", b" xx=", 1)
    outcome = dkim.check(raw, KeyZone({"sel1._domainkey.good.example": GOOD_KEY}))
    assert [(r.result, r.domain, r.selector) for r in outcome] == [
        ("fail", "good.example", "sel1")]


def test_summary_is_the_best_outcome() -> None:
    def of(*words: str) -> str:
        return dkim.summary([dkim.DkimResult(w, "d.example", "s") for w in words])

    assert of() == "none"
    assert of("fail", "pass") == "pass"
    assert of("permerror", "temperror") == "temperror"
    assert of("neutral", "fail") == "fail"


def test_lookups_ask_each_name_once_and_remember_temporary_failures(monkeypatch) -> None:
    asked: list[str] = []

    def answer(name: str) -> list[str]:
        asked.append(name)
        if name.startswith("slow."):
            raise dns.exception.Timeout()
        if name.startswith("servfail."):
            raise dns.resolver.NoNameservers()
        if name.startswith("bad-name."):
            raise dns.name.EmptyLabel()
        return ["v=spf1 -all"]

    monkeypatch.setattr(core_dns, "txt", answer)
    lookups = Lookups()
    assert lookups.txt("A.example.") == lookups.txt("a.example") == ["v=spf1 -all"]
    for name in ("slow.example", "servfail.example"):
        for _ in range(2):
            with pytest.raises(DnsTempFail):
                lookups.txt(name)
    # A name that cannot exist has no record; no temperror for it.
    assert lookups.txt("bad-name.example") == []
    assert asked == ["a.example", "slow.example", "servfail.example", "bad-name.example"]
    assert lookups.dkim_key(b"s._domainkey.a.example") == b"v=spf1 -all"
    assert lookups.dkim_key(b"\xff._domainkey.a.example") is None


def signed_many(count: int) -> bytes:
    raw = eml("dkim_pass")
    signature = raw[:raw.index(b"\r\nFrom:") + 2]
    return signature * (count - 1) + raw


def test_at_most_max_signatures_are_verified_the_rest_reported_as_policy() -> None:
    asked: list[str] = []

    class Counting(KeyZone):
        def txt(self, name: str) -> list[str]:
            asked.append(name)
            return super().txt(name)

    outcome = dkim.check(signed_many(2000), Counting({"sel1._domainkey.good.example": GOOD_KEY}))
    assert dkim.MAX_SIGNATURES == 5
    assert [r.result for r in outcome] == ["pass"] * 5 + ["policy"]
    assert outcome[-1].reason == "1995 more signatures not verified (at most 5 are)"
    assert asked == ["sel1._domainkey.good.example."] * 5
    assert dkim.summary(outcome) == "pass"
    assert dkim.summary([outcome[-1]]) == "policy"


@pytest.mark.usefixtures("own_heap")
def test_two_thousand_signatures_cost_well_under_a_second() -> None:
    raw = signed_many(2000)
    started = time.thread_time()
    dkim.check(raw, KeyZone({"sel1._domainkey.good.example": GOOD_KEY}))
    assert time.thread_time() - started < 1.0


def test_one_verifier_serves_signatures_with_and_without_a_key() -> None:
    good = eml("dkim_pass")
    signature = good[:good.index(b"\r\nFrom:") + 2]
    raw = signature + signature.replace(b"s=sel1", b"s=gone", 1) + good
    outcome = dkim.check(raw, KeyZone({"sel1._domainkey.good.example": GOOD_KEY}))
    assert [(r.result, r.selector) for r in outcome] == [
        ("pass", "sel1"), ("permerror", "gone"), ("pass", "sel1")]


def test_the_linear_header_selection_is_dkimpys() -> None:
    headers = [[b"From", b"biz"], [b"Foo", b"bar"], [b"from", b"baz"], [b"Subject", b"x"]]
    wanted = [b"from", b"subject", b"to", b"from", b"from"]
    assert dkim._select_headers(headers, wanted) == [
        [b"from", b"baz"], [b"Subject", b"x"], [b"From", b"biz"]]
    assert dkim._split(b"A: 1\r\n 2\r\n\t3\r\nB:x\r\n\r\nbody\nline\r\n") == (
        [[b"A", b" 1\r\n 2\r\n\t3\r\n"], [b"B", b"x\r\n"]], b"body\r\nline\r\n")


def test_rsa_is_verified_by_openssl_not_dkimpys_arithmetic(monkeypatch) -> None:
    def pure_python(*args: object) -> bytes:
        raise AssertionError("dkimpy's pure-Python RSA was used")

    monkeypatch.setattr(dkimpy_crypto, "rsa_encrypt", pure_python)
    assert results(eml("dkim_pass"), {"sel1._domainkey.good.example": GOOD_KEY}) == ["pass"]
    assert results(eml("dkim_body_tampered"),
                   {"sel1._domainkey.good.example": GOOD_KEY}) == ["fail"]


@pytest.fixture(scope="module")
def small_key() -> rsa.RSAPrivateKey:
    # Small for speed: a test key, and the smallest dkimpy accepts.
    return rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505


def _signed(key: rsa.RSAPrivateKey, algorithm: str, text: bytes) -> tuple[Any, bytes]:
    digest = hashlib.new(algorithm, text)
    # rsa-sha1 is still a DKIM algorithm verifiers must judge (RFC 8301).
    chosen = hashes.SHA256() if algorithm == "sha256" else hashes.SHA1()  # noqa: S303
    return digest, key.sign(digest.digest(), padding.PKCS1v15(), utils.Prehashed(chosen))


@pytest.mark.parametrize("algorithm", ["sha256", "sha1"])
def test_openssl_answers_as_dkimpy_for_every_kind_of_signature(small_key, algorithm) -> None:
    numbers = small_key.public_key().public_numbers()
    public = {"modulus": numbers.n, "publicExponent": numbers.e}
    size = (numbers.n.bit_length() + 7) // 8
    digest, good = _signed(small_key, algorithm, b"the message")
    serial = 0
    while True:  # one whose first byte is 0: dkimpy reads it without the byte too
        serial += 1
        short_digest, short = _signed(small_key, algorithm, b"message %d" % serial)
        if short[0] == 0:
            break
    wrapped = (int.from_bytes(good, "big") + numbers.n).to_bytes(size + 1, "big").lstrip(b"\0")
    cases = [
        (digest, good), (hashlib.new(algorithm, b"another"), good),
        (digest, good[:-1] + bytes([good[-1] ^ 1])), (short_digest, short),
        (short_digest, short[1:]), (digest, b"\0" + good), (digest, wrapped), (digest, b""),
    ]
    for hashed, signature in cases:
        assert dkim._rsa_verify(hashed, signature, public) \
            == dkimpy_crypto.RSASSA_PKCS1_v1_5_verify(hashed, signature, public)
    assert dkim._rsa_verify(digest, good, public)
    assert dkim._rsa_verify(short_digest, short[1:], public)
    assert not dkim._rsa_verify(hashlib.new(algorithm, b"another"), good, public)
    # A key OpenSSL will not load (even exponent): dkimpy's arithmetic decides.
    even = {"modulus": numbers.n, "publicExponent": 4}
    assert dkim._rsa_verify(digest, good, even) \
        == dkimpy_crypto.RSASSA_PKCS1_v1_5_verify(digest, good, even)


def test_a_key_record_is_parsed_once_for_every_message_it_verifies(monkeypatch) -> None:
    parsed: list[bytes] = []
    real = dkimpy.parse_public_key

    def counting(data: bytes) -> Any:
        parsed.append(data)
        return real(data)

    monkeypatch.setattr(dkimpy, "parse_public_key", counting)
    zone = {"sel1._domainkey.good.example": GOOD_KEY}
    assert results(eml("dkim_pass"), zone) == ["pass"]
    assert results(eml("dkim_two_good"), {**zone, "sel2._domainkey.other.example":
                                          dkim_record("dkim2")}) == ["pass", "pass"]
    assert results(eml("dkim_pass"), {"sel1._domainkey.good.example": "v=DKIM1; p="}) \
        == ["permerror"]
    assert len(parsed) == len(set(parsed)), parsed  # each key at most once


def test_an_unsigned_message_is_not_split_for_dkim(monkeypatch) -> None:
    def split(raw: bytes) -> Any:
        raise AssertionError("split for no signature")

    monkeypatch.setattr(dkim, "_split", split)
    assert dkim.check(eml("spf_pass"), KeyZone({})) == []
