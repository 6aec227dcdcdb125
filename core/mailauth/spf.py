"""SPF (RFC 7208) on MAIL FROM, or on the HELO identity for the null sender."""

from __future__ import annotations

from dataclasses import dataclass

import dns.resolver
import spf


@dataclass(frozen=True)
class SpfResult:
    result: str  # pass fail softfail neutral none temperror permerror
    identity: str  # the checked address (postmaster@helo for the null sender)
    scope: str  # "mailfrom" | "helo"

    @property
    def domain(self) -> str:
        return self.identity.rpartition("@")[2].lower()


def check(client_addr: str, mail_from: str, helo: str) -> SpfResult:
    if mail_from:
        identity, scope = mail_from, "mailfrom"
    else:
        identity, scope = f"postmaster@{helo}", "helo"
    if not client_addr or not identity.rpartition("@")[2]:
        return SpfResult("none", identity, scope)
    # pyspf resolves through dnspython's default resolver (core.dns), but
    # passes its own lifetime: give it the configured one for every lookup
    # (querytime=0), not pyspf's 20 s.
    lifetime = dns.resolver.get_default_resolver().lifetime
    try:
        result, _explanation = spf.check2(i=client_addr, s=identity, h=helo or "unknown",
                                          timeout=lifetime, querytime=0)
    except Exception:  # pyspf raises on some malformed input; that is no pass
        result = "permerror"
    return SpfResult(result or "none", identity, scope)
