"""Runs the checks in order and writes the RFC 8601 Authentication-Results."""

from __future__ import annotations

from dataclasses import dataclass

from e2a.core.mailauth import dkim, dmarc, spf


@dataclass(frozen=True)
class Verdict:
    """The mail-authentication outcome for one message."""

    spf: str = "none"
    dkim: str = "none"
    dmarc: str = "none"
    aligned: bool = False  # a DMARC-aligned SPF or DKIM pass
    header: str = ""  # our Authentication-Results value (without the name)

    @property
    def domain_check(self) -> str:
        return f"spf={self.spf}; dkim={self.dkim}; dmarc={self.dmarc}"


@dataclass(frozen=True)
class Identity:
    """What the SMTP session told us about the sender."""

    client_addr: str
    helo: str
    mail_from: str
    from_domain: str


def _ptype(value: str) -> str:
    # RFC 8601 property values are tokens; anything odd is quoted.
    return value if value and all(c.isalnum() or c in ".-_@+" for c in value) else f'"{value}"'


def authenticate(raw: bytes, who: Identity, authserv_id: str) -> Verdict:
    spf_result = spf.check(who.client_addr, who.mail_from, who.helo)
    dkim_results = dkim.check(raw)
    dmarc_result = dmarc.check(who.from_domain, spf_result, dkim_results)
    parts = [authserv_id]
    parts.append(f"spf={spf_result.result} smtp.{spf_result.scope}="
                 f"{_ptype(spf_result.identity if spf_result.scope == 'mailfrom' else who.helo)}")
    if dkim_results:
        parts += [f"dkim={d.result} header.d={_ptype(d.domain)} header.s={_ptype(d.selector)}"
                  for d in dkim_results]
    else:
        parts.append("dkim=none")
    parts.append(f"dmarc={dmarc_result.result}"
                 + (f" (p={dmarc_result.policy})" if dmarc_result.policy else "")
                 + f" header.from={_ptype(who.from_domain)}")
    return Verdict(spf=spf_result.result, dkim=dkim.summary(dkim_results),
                   dmarc=dmarc_result.result, aligned=dmarc_result.aligned,
                   header=";\r\n\t".join(parts))
