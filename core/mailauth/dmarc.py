"""DMARC (RFC 7489): alignment of the SPF/DKIM passes with the From domain and
the published policy, organizational domains by the public suffix list."""

from __future__ import annotations

import re
from dataclasses import dataclass

from e2a.core.mailauth.dkim import DkimResult
from e2a.core.mailauth.lookups import DnsTempFail, Lookups
from e2a.core.mailauth.orgdomain import org_domain
from e2a.core.mailauth.spf import SpfResult

_VERSION = re.compile(r"v\s*=\s*DMARC1\s*(;|$)")
_POLICIES = ("none", "quarantine", "reject")


@dataclass(frozen=True)
class DmarcResult:
    result: str  # pass fail none temperror permerror
    policy: str  # the policy that applies (p, or sp for a subdomain); "" without one
    from_domain: str  # the RFC5322.From domain checked; "" when there is none
    spf_aligned: bool
    dkim_aligned: bool

    @property
    def aligned(self) -> bool:
        """An SPF or DKIM pass for the From domain: what `verified` attests."""
        return self.spf_aligned or self.dkim_aligned


@dataclass(frozen=True)
class Record:
    tags: dict[str, str]
    domain: str  # where it was published: the From domain or its organization


def _parse(text: str) -> dict[str, str]:
    tags = {}
    for part in text.split(";"):
        key, sep, value = part.partition("=")
        if sep:
            tags.setdefault(key.strip().lower(), value.strip())
    return tags


def discover(from_domain: str, lookups: Lookups) -> Record | None:
    """Policy discovery (RFC 7489 6.6.3): the record of the From domain, else of
    its organizational domain. Raises DnsTempFail."""
    for name in dict.fromkeys((from_domain, org_domain(from_domain))):
        found = [t for t in lookups.txt(f"_dmarc.{name}") if _VERSION.match(t.lstrip())]
        if len(found) > 1:
            return None  # several records: DMARC does not apply
        if found:
            return Record(_parse(found[0]), name)
    return None


def _aligned(identifier: str, from_domain: str, strict: bool) -> bool:
    if not identifier:
        return False
    if strict:
        return identifier == from_domain
    return org_domain(identifier) == org_domain(from_domain)


def _policy(record: Record, from_domain: str) -> str:
    policy = record.tags.get("p", "").lower()
    if record.domain != from_domain:
        # Found at the organizational domain: sp= governs its subdomains.
        sub = record.tags.get("sp", "").lower()
        policy = sub if sub in _POLICIES else policy
    return policy if policy in _POLICIES else ""


def check(from_domains: list[str], spf: SpfResult, dkims: list[DkimResult],
          lookups: Lookups) -> DmarcResult:
    """``from_domains``: the distinct domains of the From header's addresses."""
    if len(from_domains) != 1:
        # None to check, or several authors: nothing single to vouch for.
        return DmarcResult("none" if not from_domains else "permerror", "", "",
                           False, False)
    from_domain = from_domains[0].lower().rstrip(".")
    try:
        record = discover(from_domain, lookups)
    except DnsTempFail:
        record, unknown = None, True
    else:
        unknown = False
    tags = record.tags if record else {}
    # Without the record (a temperror) the modes are unknown: only strict
    # alignment is sure to hold under either.
    strict_spf = unknown or tags.get("aspf", "r").lower() == "s"
    strict_dkim = unknown or tags.get("adkim", "r").lower() == "s"
    # For the null sender the SPF identity is the HELO domain (RFC 7208 2.4).
    spf_aligned = spf.result == "pass" and _aligned(spf.domain, from_domain, strict_spf)
    dkim_aligned = any(d.result == "pass" and _aligned(d.domain, from_domain, strict_dkim)
                       for d in dkims)
    policy = _policy(record, from_domain) if record else ""
    if unknown:
        result = "temperror"
    elif record is None:
        result = "none"
    elif not policy:
        result = "permerror"  # no valid p=: the record cannot be applied
    else:
        result = "pass" if spf_aligned or dkim_aligned else "fail"
    return DmarcResult(result, policy, from_domain, spf_aligned, dkim_aligned)
