"""Findings, sensitivities and the verdict that maps one to the other.

A finding is one rule's opinion: a category, a score in [0, 1] (how sure the
rule is that the message is what the category names) and a one-line
rationale for a human. Rationales never quote a matched secret: they end up
in hold reasons, notifications and logs.

The verdict is the strongest action whose threshold the message's score
reaches at the agent's sensitivity:

=========== ======= ======= =======
sensitivity flag    review  block
=========== ======= ======= =======
off         never   never   never
low         0.75    0.90    0.98
medium      0.50    0.75    0.92
high        0.30    0.55    0.80
=========== ======= ======= =======

The message's score is its strongest finding's, raised by 0.05 for each
further distinct category at 0.5 or more (independent evidence of the same
intent), capped at 1. Rules score on one scale so the table means the same
for every family: about 0.95+ a near-certain match (a PEM private key, a
verbatim "ignore all previous instructions"), 0.75-0.9 a validated but
context-dependent one (a Luhn-valid card number), 0.3-0.6 a signal that
benign mail also shows (a hidden newsletter preheader).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

Sensitivity = Literal["off", "low", "medium", "high"]
Action = Literal["none", "flag", "review", "block"]

SENSITIVITIES: tuple[Sensitivity, ...] = ("off", "low", "medium", "high")
ACTIONS: tuple[Action, ...] = ("none", "flag", "review", "block")

# (flag, review, block); None: that action never comes from a scan.
THRESHOLDS: dict[str, tuple[float | None, float | None, float | None]] = {
    "off": (None, None, None),
    "low": (0.75, 0.90, 0.98),
    "medium": (0.50, 0.75, 0.92),
    "high": (0.30, 0.55, 0.80),
}
CORROBORATION = 0.05
DETECTOR = "e2a-protection/1"


@dataclass(frozen=True)
class Finding:
    category: str  # e.g. prompt_injection, secret, personal_data
    score: float  # 0..1
    rationale: str  # one line, never the matched secret
    rule: str = ""  # the rule that fired, for tests and metrics
    where: str = ""  # "body", "html", "attachment report.txt", "headers"


def message_score(findings: Iterable[Finding]) -> float:
    best: dict[str, float] = {}
    for finding in findings:
        best[finding.category] = max(best.get(finding.category, 0.0), finding.score)
    if not best:
        return 0.0
    ranked = sorted(best.values(), reverse=True)
    extra = sum(CORROBORATION for score in ranked[1:] if score >= 0.5)
    return min(1.0, round(ranked[0] + extra, 4))


def verdict(findings: Iterable[Finding], sensitivity: str) -> Action:
    """The strongest action the findings warrant at this sensitivity."""
    if sensitivity not in THRESHOLDS:
        raise ValueError(f"unknown sensitivity {sensitivity!r}")
    score = message_score(findings)
    action: Action = "none"
    for name, threshold in zip(("flag", "review", "block"), THRESHOLDS[sensitivity],
                               strict=True):
        if threshold is not None and score >= threshold:
            action = name  # type: ignore[assignment]
    return action


def strongest(findings: Sequence[Finding]) -> Finding | None:
    return max(findings, key=lambda f: (f.score, f.category, f.rule), default=None)


def summary(findings: Sequence[Finding], limit: int = 3) -> str:
    """One line for people: the strongest findings' rationales."""
    ranked = sorted(findings, key=lambda f: (-f.score, f.category, f.rule))
    seen: list[str] = []
    for finding in ranked:
        line = finding.rationale + (f" ({finding.where})" if finding.where else "")
        if line not in seen:
            seen.append(line)
        if len(seen) == limit:
            break
    more = len({(f.rationale, f.where) for f in findings}) - len(seen)
    return "; ".join(seen) + (f"; and {more} more" if more > 0 else "")


def categories(findings: Iterable[Finding]) -> list[dict[str, Any]]:
    best: dict[str, float] = {}
    for finding in findings:
        best[finding.category] = max(best.get(finding.category, 0.0), finding.score)
    return [{"name": name, "score": round(score, 2)}
            for name, score in sorted(best.items(), key=lambda kv: (-kv[1], kv[0]))]


def protection_entry(findings: Sequence[Finding], action: Action) -> dict[str, Any] | None:
    """The MessageView ``protection[]`` item of a scan, None when nothing was found."""
    if not findings:
        return None
    return {"source": "scan", "action": action, "categories": categories(findings),
            "score": round(message_score(findings), 2), "detector": DETECTOR,
            "summary": summary(findings)}


def hold_reason(findings: Sequence[Finding], code: str) -> dict[str, Any]:
    """``hold_reason{type: scan, code, summary, category, confidence}``."""
    top = strongest(findings)
    assert top is not None, "a hold reason needs a finding"
    return {"type": "scan", "code": code, "summary": summary(findings),
            "category": top.category, "confidence": round(message_score(findings), 2)}
