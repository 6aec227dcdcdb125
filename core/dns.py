"""The one DNS resolver every lookup of ours goes through.

pyspf, dkimpy and authheaders all resolve through dnspython's module-level
default resolver, so configuring that one object routes SPF, DKIM, DMARC and
our own domain checks to the configured server (the test zones in tests).
"""

from __future__ import annotations

import dns.resolver

from e2a.core.config import Config


def configure(cfg: Config) -> dns.resolver.Resolver:
    if cfg.dns.resolver:
        resolver = dns.resolver.Resolver(configure=False)
        host, _, port = cfg.dns.resolver.removeprefix("inet:").rpartition(":")
        resolver.nameservers = [host]
        resolver.port = int(port)
    else:
        resolver = dns.resolver.Resolver()
    resolver.lifetime = cfg.dns.timeout
    resolver.timeout = min(cfg.dns.timeout, 2.0)
    dns.resolver.default_resolver = resolver
    return resolver


def txt(name: str) -> list[str]:
    """TXT strings of ``name`` (multi-string records joined); [] when none.
    Timeouts and server failures raise: the caller decides what a temperror means."""
    try:
        answer = dns.resolver.resolve(name, "TXT")
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
        return []
    return [b"".join(r.strings).decode("utf-8", "replace") for r in answer]
