"""DMARC policy discovery, alignment and organizational domains (RFC 7489),
with the DNS answers given in place of a resolver."""

from __future__ import annotations

import pytest

from e2a.core.mailauth import dmarc
from e2a.core.mailauth.dkim import DkimResult
from e2a.core.mailauth.lookups import DnsTempFail
from e2a.core.mailauth.orgdomain import org_domain
from e2a.core.mailauth.spf import SpfResult


class Zone:
    """Lookups answering from a dict; names listed in ``broken`` time out."""

    def __init__(self, records: dict[str, list[str]], broken: tuple[str, ...] = ()) -> None:
        self.records = records
        self.broken = broken
        self.asked: list[str] = []

    def txt(self, name: str) -> list[str]:
        self.asked.append(name)
        if name in self.broken:
            raise DnsTempFail(name)
        return self.records.get(name, [])


SPF_FAIL = SpfResult("fail", "someone@elsewhere.example", "mailfrom")


def spf_pass(address: str, scope: str = "mailfrom") -> SpfResult:
    return SpfResult("pass", address, scope)


def dkim_pass(domain: str) -> list[DkimResult]:
    return [DkimResult("pass", domain, "s1")]


@pytest.mark.parametrize(("domain", "org"), [
    ("example.com", "example.com"),
    ("a.b.example.com", "example.com"),
    ("Mail.Example.COM.", "example.com"),
    ("x.co.uk", "x.co.uk"),  # a two-label public suffix
    ("a.b.x.co.uk", "x.co.uk"),
    ("a.b.kawasaki.jp", "a.b.kawasaki.jp"),  # wildcard rule *.kawasaki.jp
    ("www.city.kawasaki.jp", "city.kawasaki.jp"),  # exception rule !city.kawasaki.jp
    ("user.github.io", "user.github.io"),  # the list's private section counts too
    # A TLD missing from the list is still a public suffix (the implicit
    # "*" rule): two registrants under it are two organizations.
    ("mail.bank.example", "bank.example"),
    ("evil.example", "evil.example"),
])
def test_organizational_domain_by_the_public_suffix_list(domain, org) -> None:
    assert org_domain(domain) == org


def test_no_record_is_none_and_alignment_still_counts() -> None:
    zone = Zone({})
    result = dmarc.check(["good.example"], spf_pass("a@mail.good.example"), [], zone)
    assert (result.result, result.policy, result.aligned) == ("none", "", True)
    # The From domain, then its organization (here the same name: asked once).
    assert zone.asked == ["_dmarc.good.example"]


def test_subdomain_falls_back_to_the_organization_and_its_sp() -> None:
    zone = Zone({"_dmarc.parent.example": ["v=DMARC1; p=none; sp=quarantine"]})
    result = dmarc.check(["a.b.parent.example"], SPF_FAIL, [], zone)
    assert (result.result, result.policy) == ("fail", "quarantine")
    assert zone.asked == ["_dmarc.a.b.parent.example", "_dmarc.parent.example"]


def test_a_subdomain_record_of_its_own_uses_its_p_not_the_sp() -> None:
    zone = Zone({"_dmarc.sub.parent.example": ["v=DMARC1; p=reject; sp=none"],
                 "_dmarc.parent.example": ["v=DMARC1; p=none; sp=none"]})
    result = dmarc.check(["sub.parent.example"], SPF_FAIL, [], zone)
    assert (result.result, result.policy) == ("fail", "reject")


def test_the_organization_itself_uses_p() -> None:
    zone = Zone({"_dmarc.parent.example": ["v=DMARC1; p=none; sp=reject"]})
    assert dmarc.check(["parent.example"], SPF_FAIL, [], zone).policy == "none"


def test_relaxed_and_strict_alignment() -> None:
    relaxed = Zone({"_dmarc.org.example": ["v=DMARC1; p=reject"]})
    strict = Zone({"_dmarc.org.example": ["v=DMARC1; p=reject; adkim=s; aspf=s"]})
    for zone, expected in ((relaxed, "pass"), (strict, "fail")):
        via_spf = dmarc.check(["org.example"], spf_pass("b@bounce.org.example"), [], zone)
        via_dkim = dmarc.check(["org.example"], SPF_FAIL, dkim_pass("mail.org.example"), zone)
        assert via_spf.result == via_dkim.result == expected
    # Strict still aligns the exact domain.
    exact = dmarc.check(["org.example"], SPF_FAIL, dkim_pass("org.example"), strict)
    assert (exact.result, exact.dkim_aligned, exact.spf_aligned) == ("pass", True, False)


def test_modes_are_per_identifier() -> None:
    zone = Zone({"_dmarc.org.example": ["v=DMARC1; p=reject; aspf=s"]})
    spf = spf_pass("b@bounce.org.example")
    assert dmarc.check(["org.example"], spf, [], zone).result == "fail"
    assert dmarc.check(["org.example"], SPF_FAIL, dkim_pass("x.org.example"),
                       zone).result == "pass"


def test_unaligned_passes_do_not_verify() -> None:
    zone = Zone({"_dmarc.good.example": ["v=DMARC1; p=reject"]})
    result = dmarc.check(["good.example"], spf_pass("bounce@esp.example"),
                         dkim_pass("esp.example"), zone)
    assert (result.result, result.aligned) == ("fail", False)


def test_only_passing_identifiers_align() -> None:
    zone = Zone({"_dmarc.good.example": ["v=DMARC1; p=reject"]})
    results = [DkimResult("fail", "good.example", "s1"),
               DkimResult("temperror", "good.example", "s2")]
    softfail = SpfResult("softfail", "a@good.example", "mailfrom")
    assert dmarc.check(["good.example"], softfail, results, zone).result == "fail"


def test_null_sender_aligns_through_the_helo_identity() -> None:
    zone = Zone({"_dmarc.good.example": ["v=DMARC1; p=reject"]})
    helo = spf_pass("postmaster@mx.good.example", scope="helo")
    assert dmarc.check(["good.example"], helo, [], zone).result == "pass"


def test_record_lookup_timeout_is_temperror_with_strict_alignment_only() -> None:
    zone = Zone({}, broken=("_dmarc.good.example",))
    relaxed_only = dmarc.check(["good.example"], spf_pass("a@mail.good.example"), [], zone)
    assert (relaxed_only.result, relaxed_only.aligned) == ("temperror", False)
    exact = dmarc.check(["good.example"], spf_pass("a@good.example"), [], zone)
    assert (exact.result, exact.aligned) == ("temperror", True)


def test_several_records_mean_no_dmarc() -> None:
    zone = Zone({"_dmarc.good.example": ["v=DMARC1; p=reject", "v=DMARC1; p=none"],
                 "_dmarc.example": ["v=DMARC1; p=reject"]})
    result = dmarc.check(["good.example"], SPF_FAIL, [], zone)
    assert (result.result, result.policy) == ("none", "")
    assert zone.asked == ["_dmarc.good.example"]  # discovery stops there


def test_other_txt_records_and_lookalikes_are_not_dmarc() -> None:
    zone = Zone({"_dmarc.good.example": ["v=spf1 -all", "v=DMARC10; p=reject",
                                         "p=reject; v=DMARC1", " v = DMARC1 ;p=quarantine"]})
    result = dmarc.check(["good.example"], SPF_FAIL, [], zone)
    assert (result.result, result.policy) == ("fail", "quarantine")


def test_a_record_without_a_valid_policy_is_permerror() -> None:
    zone = Zone({"_dmarc.good.example": ["v=DMARC1; p=block"]})
    assert dmarc.check(["good.example"], spf_pass("a@good.example"), [],
                       zone).result == "permerror"


@pytest.mark.parametrize(("domains", "result"), [((), "none"), (("a.example", "b.example"),
                                                                 "permerror")])
def test_no_single_author_domain(domains, result) -> None:
    zone = Zone({})
    verdict = dmarc.check(list(domains), spf_pass("x@a.example"), dkim_pass("a.example"), zone)
    assert (verdict.result, verdict.aligned, verdict.from_domain) == (result, False, "")
    assert zone.asked == []
