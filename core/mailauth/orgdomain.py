"""Organizational domains (RFC 7489 section 3.2) by the public suffix list.

The list is read with publicsuffix2, the parser authheaders uses, from the
copy authheaders points at: on Debian the system's /usr/share/publicsuffix
(kept current by the ``publicsuffix`` package), elsewhere the copy authheaders
ships. It is parsed once per process; authheaders' own get_org_domain parses
it on every call (~45 ms each, measured) and, for a TLD missing from the list
(.test, .example, a gTLD newer than the list), answers the bare TLD, which
would make every domain under it one organization and align them all.
"""

from __future__ import annotations

import functools
import importlib.resources

from publicsuffix2 import PublicSuffixList


@functools.cache
def _suffix_list() -> PublicSuffixList:
    try:
        from authheaders.findpsl import location  # Debian's build of authheaders

        with open(location, encoding="utf-8") as system_copy:
            return PublicSuffixList(system_copy)
    except (ImportError, OSError):
        bundled = importlib.resources.files("authheaders") / "public_suffix_list.txt"
        with bundled.open(encoding="utf-8") as fallback:
            return PublicSuffixList(fallback)


@functools.lru_cache(maxsize=4096)
def org_domain(domain: str) -> str:
    """The public suffix of ``domain`` plus one label; the domain itself when
    it is no longer than that."""
    domain = domain.lower().strip().rstrip(".")
    labels = domain.split(".")
    # A TLD the list does not know still is a public suffix: the list's
    # implicit "*" rule.
    suffix = _suffix_list().get_tld(domain, strict=True) or labels[-1]
    keep = suffix.count(".") + 2
    return ".".join(labels[-keep:]) if len(labels) > keep else domain
