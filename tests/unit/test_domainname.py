"""Domain names as users type them -> the stored form, or a reason for refusal."""

from __future__ import annotations

import pytest

from e2a.core.accounts.domainname import DomainNameError, is_within, normalize


@pytest.mark.parametrize(("given", "stored"), [
    ("example.com", "example.com"),
    ("  Example.COM. ", "example.com"),
    ("mail-1.sub.example.co.uk", "mail-1.sub.example.co.uk"),
    ("ab--cd.example", "ab--cd.example"),  # legal in ASCII, though IDNA 2008 forbids it
    ("Bücher.example", "xn--bcher-kva.example"),
    ("xn--bcher-kva.example", "xn--bcher-kva.example"),
    ("a" * 63 + ".example", "a" * 63 + ".example"),
])
def test_accepted(given, stored):
    assert normalize(given) == stored


@pytest.mark.parametrize("given", [
    "", ".", "localhost", "com", "example..com", ".example.com", "-bad.example",
    "bad-.example", "under_score.example", "space d.example", "a" * 64 + ".example",
    ".".join(["a" * 60] * 5),  # > 253
    "10.0.0.1", "[::1]", "::1", "0x7f.1", "2130706433", "127.1", "169.254.169.254",
    "example.123", "xn--zz.example", "\u2603.example", "e\nxample.com",
    "bücher." * 200 + "example",
])
def test_refused(given):
    with pytest.raises(DomainNameError):
        normalize(given)


def test_is_within():
    assert is_within("agents.example", "agents.example")
    assert is_within("x.agents.example", "agents.example")
    assert not is_within("xagents.example", "agents.example")
    assert not is_within("agents.example", "")
