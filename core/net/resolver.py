"""The one DNS resolver every lookup of ours goes through.

pyspf, dkimpy and authheaders all resolve through dnspython's module-level
default resolver, so configuring that one object routes SPF, DKIM, DMARC and
our own domain checks to the configured server (the test zones in tests).
"""

from __future__ import annotations

import dns.resolver

from e2a.core.config import Config
from e2a.core.net.addresses import InetAddress
from e2a.core.net.addresses import parse as parse_address


def configure(cfg: Config, *, cache: bool = False) -> dns.resolver.Resolver:
    """``cache``: keep answers for their TTL, negative ones included (the
    milter; not the API, whose domain checks must see a record at once)."""
    if cfg.dns.resolver:
        resolver = dns.resolver.Resolver(configure=False)
        address = parse_address(cfg.dns.resolver)
        if not isinstance(address, InetAddress):
            raise ValueError(f"dns.resolver must be host:port, not {cfg.dns.resolver!r}")
        resolver.nameservers = [address.host]
        resolver.port = address.port
    else:
        resolver = dns.resolver.Resolver()
    resolver.lifetime = cfg.dns.timeout
    resolver.timeout = min(cfg.dns.timeout, 2.0)
    if cache:
        # Mail from one sender asks the same SPF, DKIM and DMARC names again
        # and again, and each query costs the milter ~0.4 ms of CPU under the
        # GIL (measured). Thread-safe, bounded.
        resolver.cache = dns.resolver.LRUCache(50_000)
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


def mx(name: str) -> list[str]:
    """Exchange hosts of ``name``'s MX records, lowercase without the final
    dot; [] when none. Timeouts and server failures raise, as for txt()."""
    try:
        answer = dns.resolver.resolve(name, "MX")
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
        return []
    return [r.exchange.to_text(omit_final_dot=True).lower() for r in answer]


def addresses(name: str) -> list[str]:
    """IPv4 then IPv6 addresses of ``name`` (A and AAAA, CNAMEs followed); []
    when it has none. Timeouts and server failures raise, as for txt()."""
    found: list[str] = []
    for rdtype in ("A", "AAAA"):
        try:
            answer = dns.resolver.resolve(name, rdtype)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            continue
        found += [r.address for r in answer]
    return found
