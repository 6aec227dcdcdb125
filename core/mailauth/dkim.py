"""DKIM (RFC 6376): every signature verified, each with its own result."""

from __future__ import annotations

import re
from dataclasses import dataclass

import dkim

from e2a.core.mailauth.lookups import DnsTempFail, Lookups

_SIG = re.compile(rb"^dkim-signature\s*:", re.IGNORECASE | re.MULTILINE)


@dataclass(frozen=True)
class DkimResult:
    result: str  # pass fail neutral temperror permerror
    domain: str  # the d= tag
    selector: str


def signature_count(raw: bytes) -> int:
    head = raw.split(b"\r\n\r\n", 1)[0]
    return len(_SIG.findall(head))


def _verify(raw: bytes, idx: int, lookups: Lookups) -> tuple[str, dict[bytes, bytes]]:
    verifier: dkim.DKIM | None = None
    try:
        verifier = dkim.DKIM(raw)
        ok = verifier.verify(idx=idx, dnsfunc=lookups.dkim_key)
        # dkimpy answers False both for a bad signature and for a key it could
        # not get (missing or unparsable): only the first is a "fail".
        result = "pass" if ok else "fail" if hasattr(verifier, "pk") else "permerror"
    except DnsTempFail:
        result = "temperror"
    except dkim.MessageFormatError:
        # RFC 8601 2.7.1: a signature with syntax errors is "neutral".
        result = "neutral"
    except (dkim.KeyFormatError, dkim.UnknownKeyTypeError, dkim.ParameterError):
        result = "permerror"
    except dkim.DKIMException:
        # ValidationError above all: body hash mismatch, expired signature.
        result = "fail"
    except Exception:  # input so broken dkimpy trips over it: no pass, and no retry helps
        result = "permerror"
    return result, getattr(verifier, "signature_fields", None) or {}


def check(raw: bytes, lookups: Lookups) -> list[DkimResult]:
    results = []
    for idx in range(signature_count(raw)):
        result, fields = _verify(raw, idx, lookups)
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
