"""The TXT lookups of one message's checks, each name asked once.

Several DKIM signatures often share a key, and a DMARC record may be wanted
for alignment and policy alike: one message should not send the same query
twice. Everything goes through core.dns, the one configured resolver.
"""

from __future__ import annotations

import dns.exception
import dns.resolver

from e2a.core.net import resolver as our_dns


class DnsTempFail(Exception):
    """The resolver could not answer now (timeout, SERVFAIL): a temperror."""


# A syntactically impossible name (empty label, over 255 octets) has no
# record now or later: it is answered as "no record", not as a temperror.
_TEMPORARY = (dns.exception.Timeout, dns.resolver.NoNameservers)


class Lookups:
    def __init__(self) -> None:
        self._txt: dict[str, list[str] | None] = {}  # None: the lookup failed

    def txt(self, name: str) -> list[str]:
        """TXT strings of ``name``; [] when there are none. Raises DnsTempFail."""
        key = name.lower().rstrip(".")
        if key not in self._txt:
            try:
                self._txt[key] = our_dns.txt(key)
            except _TEMPORARY:
                self._txt[key] = None
            except (dns.exception.DNSException, UnicodeError):
                self._txt[key] = []
        found = self._txt[key]
        if found is None:
            raise DnsTempFail(key)
        return found

    def dkim_key(self, name: bytes, timeout: float = 5) -> bytes | None:
        """dkimpy's ``dnsfunc``: the key record of ``<selector>._domainkey.<d>``.

        A temporary failure raises DnsTempFail, which dkimpy lets through (its
        own lookup turns SERVFAIL into "no key", a permanent failure)."""
        try:
            text = name.decode("ascii")
        except UnicodeDecodeError:
            return None
        found = self.txt(text)
        return found[0].encode() if found else None
