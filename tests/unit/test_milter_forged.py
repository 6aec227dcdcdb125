"""Authentication-Results forged in our name, in every RFC 8601 spelling a
reader downstream would take for ours, and the cost of reading them."""

from __future__ import annotations

import resource

import pytest

from e2a.milter import forged

OURS = "mx.test.example"


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_THREAD)
    return usage.ru_utime + usage.ru_stime


@pytest.mark.parametrize("value", [
    b" mx.test.example; spf=pass",
    b" MX.Test.EXAMPLE; spf=pass",  # case
    b' "mx.test.example"; spf=pass',  # a quoted-string id
    b' "mx.test\\.example" 1; spf=pass',  # with a quoted-pair, and a version
    b" mx.test.example.; spf=pass",  # root-anchored
    b' "mx.test.example." ; spf=pass',
    b"\n\t mx.test.example\n\t;spf=pass",  # folded
    b"mx.test.example;spf=pass",  # no space at all
    b" \t (we (really) vouch \\) for it) mx.test.example; dkim=pass",  # comments first
    b" (a)(b)mx.test.example(c) 1; spf=pass",
    b" mx.test.example; none",
])
def test_every_spelling_of_our_id_is_ours(value: bytes) -> None:
    assert forged.claims_ours(b"Authentication-Results", value, OURS)
    assert forged.claims_ours(b"authentication-results ", value, OURS.upper() + ".")


@pytest.mark.parametrize("value", [
    b" relay.other.example; spf=pass smtp.mailfrom=mx.test.example",
    b" mx.test.example.evil; spf=pass",
    b" (mx.test.example) relay.other.example; spf=pass",  # ours only in a comment
    b" (unclosed mx.test.example; spf=pass",  # all of it a comment
    b' "mx.test example"x; spf=pass',
    b"",
])
def test_other_ids_are_not_ours(value: bytes) -> None:
    assert not forged.claims_ours(b"Authentication-Results", value, OURS)


def test_attestation_headers_are_always_forged() -> None:
    assert forged.claims_ours(b"X-E2A-Auth-Verified", b" true", OURS)
    assert not forged.claims_ours(b"Received", b" from mx.test.example", OURS)


@pytest.mark.parametrize("value", [
    b" " + b"(" * 50_000 + b")" * 50_000 + b" mx.test.example; spf=pass",
    b" " + b"(a" * 50_000 + b" mx.test.example; spf=pass",  # never closed
    b" " + b"(\\(" * 33_000 + b")" * 33_000 + b" mx.test.example; spf=pass",
])
def test_reading_the_id_is_linear_in_the_header_length(value: bytes) -> None:
    started = cpu()
    forged.authserv_id(value)
    assert cpu() - started < 0.5
