"""The authentication evidence of a stored inbound message, structured for
the /v1 API's ``authentication`` object: read back from the
Authentication-Results header our milter wrote (core/mailauth/verdict.py)
into the stored bytes, so one record serves the legacy X-E2A-Auth-* view and
this one. A message without our header (stored before it existed, or
loaded by hand) falls back to the three results kept in its row."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from e2a.core.mailauth.orgdomain import org_domain

_HEADER_END = re.compile(rb"\r?\n\r?\n")
_PROPERTY = re.compile(r'([A-Za-z0-9_.-]+)=("(?:[^"\\]|\\.)*"|[^\s;()]+)')
_COMMENT = re.compile(r"\(([^)]*)\)")
SPF_STATUSES = ("pass", "fail", "none", "neutral", "softfail", "temperror", "permerror")
DKIM_STATUSES = ("pass", "fail", "none", "neutral", "policy", "temperror", "permerror")
DMARC_STATUSES = ("pass", "fail", "none", "temperror", "permerror")
DMARC_POLICIES = ("none", "quarantine", "reject")


@dataclass
class _Method:
    result: str
    props: dict[str, str] = field(default_factory=dict)
    comment: str = ""


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return re.sub(r"\\(.)", r"\1", value[1:-1])
    return value


def _split(value: str) -> list[str]:
    """The header's ``;``-separated parts; a ``;`` inside quotes is text."""
    parts, current, quoted, escaped = [], [], False, False
    for ch in value:
        if escaped:
            escaped = False
        elif ch == "\\" and quoted:
            escaped = True
        elif ch == '"':
            quoted = not quoted
        elif ch == ";" and not quoted:
            parts.append("".join(current))
            current = []
            continue
        current.append(ch)
    parts.append("".join(current))
    return [p.strip() for p in parts]


def _our_header(raw: bytes, authserv_id: str) -> str | None:
    match = _HEADER_END.search(raw)
    head = (raw[:match.start()] if match else raw).decode("utf-8", "replace")
    unfolded = re.sub(r"\r?\n[ \t]+", " ", head)
    for line in unfolded.splitlines():
        name, _, value = line.partition(":")
        if name.strip().lower() != "authentication-results":
            continue
        value = value.strip()
        if _split(value)[0].lower() == authserv_id.lower():
            return value
    return None


def _methods(value: str) -> dict[str, list[_Method]]:
    found: dict[str, list[_Method]] = {}
    for part in _split(value)[1:]:
        name, _, rest = part.partition("=")
        result, _, tail = rest.strip().partition(" ")
        comment = _COMMENT.search(tail)
        found.setdefault(name.strip().lower(), []).append(_Method(
            result=result.strip().lower(),
            props={k.lower(): _unquote(v) for k, v in _PROPERTY.findall(_COMMENT.sub("", tail))},
            comment=comment.group(1) if comment else ""))
    return found


def _domain_of(identity: str) -> str:
    return identity.rpartition("@")[2].lower()


def _aligned(status: str, domain: str, from_domain: str, has_record: bool) -> bool | None:
    # Only a pass under a published DMARC record is judged; relaxed
    # alignment (the organizational domains agree), DMARC's default.
    if status != "pass" or not has_record or not domain or not from_domain:
        return None
    return org_domain(domain) == org_domain(from_domain)


def _one_of(value: str, allowed: tuple[str, ...]) -> str:
    return value if value in allowed else "none"


def authentication(raw: bytes | None, authserv_id: str, row: dict[str, Any]) -> dict[str, Any]:
    """``{spf, dkim[], dmarc}`` for one inbound message. ``row`` supplies
    ``spf``, ``dkim``, ``dmarc``, ``verified`` and ``envelope_sender``."""
    header = _our_header(raw, authserv_id) if raw else None
    methods = _methods(header) if header else {}
    spf_m = (methods.get("spf") or [_Method(row["spf"] or "none")])[0]
    dmarc_m = (methods.get("dmarc") or [_Method(row["dmarc"] or "none")])[0]
    dkim_ms = [m for m in methods.get("dkim", []) if m.result != "none"]
    if not header and row["dkim"] not in ("", "none"):
        dkim_ms = [_Method(row["dkim"])]
    from_domain = dmarc_m.props.get("header.from", "").lower()
    dmarc_status = _one_of(dmarc_m.result, DMARC_STATUSES)
    has_record = dmarc_status not in ("none",)
    policy = dmarc_m.comment.partition("p=")[2].strip() if "p=" in dmarc_m.comment else ""
    spf_identity = spf_m.props.get("smtp.mailfrom") or spf_m.props.get("smtp.helo") \
        or row.get("envelope_sender", "")
    spf_domain = _domain_of(spf_identity) if spf_identity else ""
    spf_status = _one_of(spf_m.result, SPF_STATUSES)
    spf = {"status": spf_status, "domain": spf_domain or None,
           "aligned": _aligned(spf_status, spf_domain, from_domain, has_record)}
    dkim = []
    for m in dkim_ms:
        status = _one_of(m.result, DKIM_STATUSES)
        domain = m.props.get("header.d", "").lower()
        dkim.append({"status": status, "domain": domain or None,
                     "selector": m.props.get("header.s") or None,
                     "aligned": _aligned(status, domain, from_domain, has_record)})
    aligned_by: list[str] = []
    if dmarc_status == "pass":
        if spf["aligned"]:
            aligned_by.append("spf")
        if any(d["aligned"] for d in dkim):
            aligned_by.append("dkim")
    return {"spf": spf, "dkim": dkim,
            "dmarc": {"status": dmarc_status, "domain": from_domain or None,
                      "policy": policy if policy in DMARC_POLICIES else None,
                      "aligned_by": aligned_by}}


def verified_domain(row: dict[str, Any], auth: dict[str, Any] | None = None) -> str | None:
    """The From domain, only when DMARC passed aligned (what ``verified``
    means): the one DMARC evaluated when ``auth`` is known, else the domain
    of the stored From address."""
    if row.get("direction") != "inbound" or not row.get("verified"):
        return None
    domain = auth["dmarc"]["domain"] if auth else None
    return domain or _domain_of(row.get("sender", "")) or None
