"""The golden corpus (tests/fixtures/protection, written by its
make_corpus.py): the confusion matrix of each direction at each
sensitivity, printed (pytest -s shows it) and asserted.

- off: nothing fires, in either direction.
- inbound at medium: no benign message reaches review or block, and every
  malicious one reaches at least the action its manifest entry names.
- outbound: no clean message is held at low or medium, and every planted
  secret, personal datum and risky attachment is held from the sensitivity
  its manifest entry names upward.
"""

from __future__ import annotations

import json
from collections import Counter
from functools import cache
from pathlib import Path

import pytest

from e2a.core.protection import inbound, outbound, parts
from e2a.core.protection.findings import ACTIONS, SENSITIVITIES, Finding, verdict

CORPUS = Path(__file__).parent.parent / "fixtures" / "protection"
MANIFEST = json.loads((CORPUS / "manifest.json").read_text())
RANK = {action: index for index, action in enumerate(ACTIONS)}
LEVEL = {name: index for index, name in enumerate(SENSITIVITIES)}


@cache
def findings(direction: str, name: str) -> tuple[Finding, ...]:
    msg = parts.parse((CORPUS / direction / name).read_bytes())
    scan = inbound.scan_inbound if direction == "inbound" else outbound.scan_outbound
    return tuple(scan(msg))


def matrix(direction: str, sensitivity: str) -> dict[str, Counter[str]]:
    rows: dict[str, Counter[str]] = {}
    for name, expect in MANIFEST[direction].items():
        found = [] if sensitivity == "off" else list(findings(direction, name))
        rows.setdefault(expect["class"], Counter())[verdict(found, sensitivity)] += 1
    return rows


def show(direction: str, sensitivity: str, rows: dict[str, Counter[str]]) -> str:
    lines = [f"{direction} at {sensitivity}:", f"  {'class':14}" +
             "".join(f"{action:>8}" for action in ACTIONS)]
    for cls in sorted(rows):
        lines.append(f"  {cls:14}" + "".join(f"{rows[cls][action]:>8}" for action in ACTIONS))
    return "\n".join(lines)


def test_corpus_size():
    assert len(MANIFEST["inbound"]) >= 40
    assert len(MANIFEST["outbound"]) >= 30
    for direction in ("inbound", "outbound"):
        on_disk = {path.name for path in (CORPUS / direction).glob("*.eml")}
        assert on_disk == set(MANIFEST[direction])


# The class whose messages must never be held at low or medium.
HARMLESS = {"inbound": "benign", "outbound": "clean"}


@pytest.mark.parametrize("direction", ["inbound", "outbound"])
@pytest.mark.parametrize("sensitivity", SENSITIVITIES)
def test_confusion_matrix(direction, sensitivity):
    rows = matrix(direction, sensitivity)
    print("\n" + show(direction, sensitivity, rows))
    if sensitivity == "off":
        assert all(set(row) == {"none"} for row in rows.values())
    if sensitivity in ("low", "medium"):
        harmless = rows[HARMLESS[direction]]
        assert harmless["review"] == harmless["block"] == 0
    if sensitivity == "medium" and direction == "outbound":
        assert rows["secret"]["none"] == rows["secret"]["flag"] == 0


@pytest.mark.parametrize("name", sorted(MANIFEST["inbound"]))
def test_inbound_message(name):
    expect = MANIFEST["inbound"][name]
    found = list(findings("inbound", name))
    medium = verdict(found, "medium")
    if expect["class"] == "benign":
        assert RANK[medium] <= RANK["flag"], found
    else:
        assert RANK[medium] >= RANK[expect["medium"]], found
        assert verdict(found, "high") != "none"
        assert all(f.rationale and "\n" not in f.rationale for f in found)


@pytest.mark.parametrize("name", sorted(MANIFEST["outbound"]))
def test_outbound_message(name):
    expect = MANIFEST["outbound"][name]
    msg = parts.parse((CORPUS / "outbound" / name).read_bytes())
    for sensitivity in SENSITIVITIES:
        reason, _ = outbound.outbound_hold(msg, sensitivity)
        should_hold = (expect["held_from"] != "never"
                       and LEVEL[sensitivity] >= LEVEL[expect["held_from"]])
        if expect["class"] == "clean" and sensitivity == "high":
            continue  # high may hold what looks like a secret: the price of catching more
        assert (reason is not None) == should_hold, (sensitivity, reason)
        if reason is not None:
            assert reason["type"] == "scan" and reason["code"] == "outbound_scan"
            assert reason["summary"]
