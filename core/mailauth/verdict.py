"""Runs the checks in order and writes the RFC 8601 Authentication-Results."""

from __future__ import annotations

import re
from dataclasses import dataclass

from e2a.core.mailauth import dkim, dmarc, spf
from e2a.core.mailauth.lookups import Lookups


@dataclass(frozen=True)
class Verdict:
    """The mail-authentication outcome for one message."""

    spf: str = "none"
    dkim: str = "none"
    dmarc: str = "none"
    aligned: bool = False  # a DMARC-aligned SPF or DKIM pass
    dkim_aligned: bool = False  # a DMARC-aligned DKIM pass (SPF plays no part)
    header: str = ""  # our Authentication-Results value (without the name)

    @property
    def domain_check(self) -> str:
        return f"spf={self.spf}; dkim={self.dkim}; dmarc={self.dmarc}"


@dataclass(frozen=True)
class Identity:
    """What the SMTP session and the From header tell us about the sender."""

    client_addr: str
    helo: str
    mail_from: str
    from_domains: tuple[str, ...]  # distinct domains of the From addresses


_TOKEN = re.compile(r"[A-Za-z0-9.\-_@+]+")
_UNSAFE = re.compile(r"[\x00-\x1f\x7f]")


def _ptype(value: str) -> str:
    """An RFC 8601 property value: a token, else a quoted-string."""
    # Lone surrogates stand for 8-bit junk the client sent: shown as "?".
    value = _UNSAFE.sub("?", value.encode("utf-8", "replace").decode("utf-8"))
    if _TOKEN.fullmatch(value):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _dkim_part(result: dkim.DkimResult) -> str:
    if result.reason:  # signatures not checked: no one signature to name
        return f"dkim={result.result} reason={_ptype(result.reason)}"
    return (f"dkim={result.result} header.d={_ptype(result.domain)}"
            f" header.s={_ptype(result.selector)}")


def authenticate(raw: bytes, who: Identity, authserv_id: str) -> Verdict:
    """``raw``: the message exactly as the client sent it (DKIM needs the bytes)."""
    lookups = Lookups()
    spf_result = spf.check(who.client_addr, who.mail_from, who.helo)
    dkim_results = dkim.check(raw, lookups)
    dmarc_result = dmarc.check(list(who.from_domains), spf_result, dkim_results, lookups)
    parts = [authserv_id]
    checked = spf_result.identity if spf_result.scope == "mailfrom" else who.helo
    parts.append(f"spf={spf_result.result} smtp.{spf_result.scope}={_ptype(checked)}")
    if dkim_results:
        parts += [_dkim_part(d) for d in dkim_results]
    else:
        parts.append("dkim=none")
    dmarc_part = f"dmarc={dmarc_result.result}"
    if dmarc_result.policy:
        dmarc_part += f" (p={dmarc_result.policy})"
    if dmarc_result.from_domain:
        dmarc_part += f" header.from={_ptype(dmarc_result.from_domain)}"
    parts.append(dmarc_part)
    return Verdict(spf=spf_result.result, dkim=dkim.summary(dkim_results),
                   dmarc=dmarc_result.result, aligned=dmarc_result.aligned,
                   dkim_aligned=dmarc_result.dkim_aligned,
                   header=";\r\n\t".join(parts))
