"""DKIM (RFC 6376): every signature verified, each with its own result."""

from __future__ import annotations

import re
from dataclasses import dataclass

import dkim

_SIG = re.compile(rb"^dkim-signature\s*:", re.IGNORECASE | re.MULTILINE)


@dataclass(frozen=True)
class DkimResult:
    result: str  # pass fail neutral temperror permerror
    domain: str  # the d= tag
    selector: str


def signature_count(raw: bytes) -> int:
    head = raw.split(b"\r\n\r\n", 1)[0]
    return len(_SIG.findall(head))


def check(raw: bytes) -> list[DkimResult]:
    results = []
    for idx in range(signature_count(raw)):
        verifier = dkim.DKIM(raw)
        try:
            ok = verifier.verify(idx=idx)
            result = "pass" if ok else "fail"
        except dkim.ValidationError:
            result = "permerror"
        except dkim.KeyFormatError:
            result = "permerror"
        except dkim.DnsTimeoutError:
            result = "temperror"
        except dkim.DKIMException:
            result = "fail"
        except Exception:  # a key or message so broken dkimpy trips over it
            result = "permerror"
        fields = verifier.signature_fields or {}
        results.append(DkimResult(
            result,
            fields.get(b"d", b"").decode("ascii", "replace").lower(),
            fields.get(b"s", b"").decode("ascii", "replace")))
    return results


def summary(results: list[DkimResult]) -> str:
    """One word for the Domain-Check field: the best outcome among signatures."""
    if not results:
        return "none"
    for word in ("pass", "temperror", "fail", "permerror", "neutral"):
        if any(r.result == word for r in results):
            return word
    return results[0].result
