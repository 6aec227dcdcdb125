"""What a user's domain publishes in DNS for us, and whether it does.

Three records are asked for at registration:

- MX: ``<domain>`` -> ``mail.hostname`` (priority 10), so mail reaches us.
- Ownership TXT: ``_e2a.<domain>`` = ``e2a-verification=<token>``. Kept off
  the domain's own name, where SPF and other TXT records live.
- DKIM: ``<selector>._domainkey.<domain>`` = ``v=DKIM1; k=rsa; p=<key>``.

The probe (``POST /domains/{domain}/verify``) looks them up through our
resolver (core.dns) and reports:

- ownership: the TXT token is published. This alone decides ``verified``.
- mx ``found`` iff an MX record of the domain names ``mail.hostname``.
- spf ``found`` iff a TXT record of the domain starting ``v=spf1`` holds a
  term that authorizes our host ``H = mail.hostname``: ``include:H``,
  ``a:H`` or ``redirect=H``, or a bare ``mx`` when the MX probe found us
  (then the domain's MX host is our host). Qualifiers ``-``, ``~`` and ``?``
  authorize nothing, so such terms do not count; names compare without case.
  The operator publishes the sending addresses in ``H``'s own SPF record.
- dkim ``found`` iff a DKIM key record at the selector carries exactly the
  public key stored for the domain; ``deferred`` when none is stored.

A lookup that times out or fails at the server is neither found nor missing:
the whole probe raises DnsUnavailable and changes nothing but the check time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import dns.exception

from e2a.core.accounts import dkimkeys
from e2a.core.config import Config
from e2a.core.net import resolver as ourdns

OWNERSHIP_LABEL = "_e2a"
OWNERSHIP_PREFIX = "e2a-verification="
MX_PRIORITY = 10
FOUND, MISSING, DEFERRED = "found", "missing", "deferred"


class DnsUnavailable(Exception):
    """DNS did not answer; try again later."""


@dataclass(frozen=True)
class Probe:
    owned: bool  # the ownership token is published
    mx: str
    spf: str
    dkim: str

    def verifies(self, *, need_mx: bool = False) -> bool:
        return self.owned and (not need_mx or self.mx == FOUND)


def ownership_host(domain: str) -> str:
    return f"{OWNERSHIP_LABEL}.{domain}"


def ownership_value(token: str) -> str:
    return OWNERSHIP_PREFIX + token


def records(cfg: Config, row: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The records to publish, as the API's DNSRecords (a DNSRecord each)."""
    domain = row["domain"]
    dkim = {"host": "", "value": "", "priority": 0}
    if row["dkim_public_key"]:
        dkim = {"host": dkimkeys.record_host(domain, row["dkim_selector"]),
                "value": dkimkeys.public_record(row["dkim_public_key"]), "priority": 0}
    return {
        "mx": {"host": domain, "value": cfg.mail.hostname, "priority": MX_PRIORITY},
        "txt": {"host": ownership_host(domain),
                "value": ownership_value(row["verification_token"]), "priority": 0},
        "dkim": dkim,
    }


def probe(cfg: Config, row: dict[str, Any]) -> Probe:
    domain = row["domain"]
    ours = cfg.mail.hostname.lower().rstrip(".")
    try:
        expected = ownership_value(row["verification_token"])
        owned = any(t.strip() == expected for t in ourdns.txt(ownership_host(domain)))
        mx_found = ours in ourdns.mx(domain)
        spf_found = any(spf_authorizes(t, ours, mx_found) for t in ourdns.txt(domain))
        dkim = DEFERRED
        if row["dkim_public_key"]:
            published = ourdns.txt(dkimkeys.record_host(domain, row["dkim_selector"]))
            dkim = FOUND if any(dkimkeys.published_key(t) == row["dkim_public_key"]
                                for t in published) else MISSING
    except dns.exception.DNSException as exc:
        raise DnsUnavailable(f"DNS lookup for {domain} failed: {type(exc).__name__}") from None
    return Probe(owned, FOUND if mx_found else MISSING, FOUND if spf_found else MISSING, dkim)


def spf_authorizes(record: str, host: str, mx_is_ours: bool) -> bool:
    """Whether this TXT value is an SPF record that lets ``host`` send (see the
    module doc for the exact terms)."""
    terms = record.split()
    if not terms or terms[0].lower() != "v=spf1":
        return False
    wanted = {f"include:{host}", f"a:{host}", f"redirect={host}"}
    for term in terms[1:]:
        term = term.lower()
        if term[:1] in "-~?":
            continue
        term = term.removeprefix("+")
        if term in wanted or (mx_is_ours and term == "mx"):
            return True
    return False
