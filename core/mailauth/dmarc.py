"""DMARC (RFC 7489): alignment of the SPF/DKIM passes with the From domain and
the published policy, organizational domains by the public suffix list."""

from __future__ import annotations

from dataclasses import dataclass

import dns.exception
from authheaders.dmarc_lookup import get_org_domain

from e2a.core import dns as our_dns
from e2a.core.mailauth.dkim import DkimResult
from e2a.core.mailauth.spf import SpfResult


@dataclass(frozen=True)
class DmarcResult:
    result: str  # pass fail none temperror permerror
    policy: str  # none quarantine reject, "" without a record
    spf_aligned: bool
    dkim_aligned: bool

    @property
    def aligned(self) -> bool:
        return self.spf_aligned or self.dkim_aligned


def org_domain(domain: str) -> str:
    return get_org_domain(domain.lower().rstrip("."))


def record(domain: str) -> dict[str, str] | None:
    """The DMARC record of ``domain``, else of its organizational domain."""
    for name in dict.fromkeys((domain, org_domain(domain))):
        found = [t for t in our_dns.txt(f"_dmarc.{name}") if t.lower().startswith("v=dmarc1")]
        if len(found) == 1:
            tags = {}
            for part in found[0].split(";"):
                key, sep, value = part.partition("=")
                if sep:
                    tags[key.strip().lower()] = value.strip()
            return tags
    return None


def _aligned(a: str, b: str, mode: str) -> bool:
    if not a or not b:
        return False
    if mode == "s":
        return a == b
    return org_domain(a) == org_domain(b)


def check(from_domain: str, spf: SpfResult, dkims: list[DkimResult]) -> DmarcResult:
    from_domain = from_domain.lower()
    try:
        tags = record(from_domain) if from_domain else None
    except (dns.exception.DNSException, OSError):
        tags, temperror = None, True
    else:
        temperror = False
    aspf = (tags or {}).get("aspf", "r")
    adkim = (tags or {}).get("adkim", "r")
    spf_aligned = spf.result == "pass" and spf.scope == "mailfrom" and _aligned(
        spf.domain, from_domain, aspf)
    dkim_aligned = any(d.result == "pass" and _aligned(d.domain, from_domain, adkim)
                       for d in dkims)
    if temperror:
        return DmarcResult("temperror", "", spf_aligned, dkim_aligned)
    if tags is None:
        return DmarcResult("none", "", spf_aligned, dkim_aligned)
    policy = tags.get("p", "").lower()
    if policy not in ("none", "quarantine", "reject"):
        return DmarcResult("permerror", "", spf_aligned, dkim_aligned)
    if from_domain != org_domain(from_domain) and "sp" in tags:
        policy = tags["sp"].lower()
    passed = spf_aligned or dkim_aligned
    return DmarcResult("pass" if passed else "fail", policy, spf_aligned, dkim_aligned)
