"""The engine's bounds: adversarial inputs cost little CPU (no regex
backtracks catastrophically), text past the per-part cap is not read,
scanning is deterministic, random benign text never blocks, and the engine
is pure core (imports no process package)."""

from __future__ import annotations

import ast
import base64
import resource
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from e2a.core.protection import inbound, outbound, parts
from e2a.core.protection.findings import verdict
from e2a.core.protection.parts import MAX_PART_CHARS, parse

# Generous: a scan of a capped part takes milliseconds; this only has to tell
# linear from quadratic on a machine shared with other test runs.
CPU_BUDGET = 1.5
BIG = MAX_PART_CHARS + 4096

ADVERSARIAL: dict[str, str] = {
    "one letter": "a" * BIG,
    "repeated trigger word": "ignore " * (BIG // 7),
    "trigger words, no ending": "ignore all previous " * (BIG // 20),
    "send your": "send me your " * (BIG // 13),
    "forward all": "forward all the " * (BIG // 16),
    "zero width between letters": "a\u200b" * (BIG // 2),
    "bidi": "\u202e\u2066x" * (BIG // 3),
    "digits": "4" * BIG,
    "digit groups": "4111 " * (BIG // 5),
    "dashed digits": "536-22-" * (BIG // 7),
    "base64 run": "A" * BIG,
    "base64 words": "QUFBQUFBQUFBQUFBQUFBQUFBQUFB " * (BIG // 29),
    "AKIA": "AKIA" * (BIG // 4),
    "pem headers": "-----BEGIN " * (BIG // 11),
    "database url": "postgres://" + "a" * (BIG - 20) + ":",
    "url with colons": "postgres://u:" * (BIG // 13),
    "jwt-like": "eyJ" + "a" * 5000 + ".eyJ" * (BIG // 8),
    "env lines": "API_KEY=abcdefgh12345\n" * (BIG // 22),
    "iban": "DE89 3704 " * (BIG // 10),
    "mixed scripts": "a\u0430" * (BIG // 2),
    "leet": "a1 " * (BIG // 3),
    "encoded words": "=?utf-8?b?" * (BIG // 10),
    "html styles": ("<div style='display:none;height:0;" + "overflow:hidden;" * 60 + "'>x")
                   * (BIG // 1000),
    "nested tags": "<b>" * (BIG // 3),
    "newlines": "\n" * BIG,
    "newlines and hashes": "\n #" * (BIG // 3),
    "many zero heights": ("<div style='" + "height:0;" * 113 + "'>x</div>") * (BIG // 1030),
    "unclosed attribute": "<p style='" + "x" * BIG,
}


def thread_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_THREAD)
    return usage.ru_utime + usage.ru_stime


def cost(call: Callable[[], object]) -> float:
    started = thread_cpu()
    call()
    return thread_cpu() - started


@pytest.mark.parametrize("name", sorted(ADVERSARIAL))
def test_adversarial_text_costs_little_cpu(name):
    text = ADVERSARIAL[name]
    capped = text[:MAX_PART_CHARS]
    spent = cost(lambda: (inbound.scan_text(capped), outbound.scan_text(capped),
                          inbound.scan_part(parts.Part("html", capped, html=capped))))
    assert spent < CPU_BUDGET, f"{name}: {spent:.2f} s of CPU"


@pytest.mark.parametrize("name", ["repeated trigger word", "zero width between letters",
                                  "html styles", "base64 words", "digit groups"])
def test_adversarial_message_costs_little_cpu(name):
    body = ADVERSARIAL[name] * 3  # over the cap: the cap bounds it
    raw = (b"From: a@example.com\r\nSubject: s\r\nContent-Type: text/html; charset=utf-8\r\n"
           b"Content-Transfer-Encoding: base64\r\n\r\n" + base64.encodebytes(body.encode()))
    msg = parse(raw)
    spent = cost(lambda: (inbound.scan_inbound(msg), outbound.scan_outbound(msg)))
    assert spent < 2 * CPU_BUDGET, f"{name}: {spent:.2f} s of CPU"


def test_text_past_the_cap_is_not_read():
    filler = "x " * (MAX_PART_CHARS // 2)
    late = parse(("From: a@example.com\r\nSubject: s\r\n\r\n" + filler +
                  "\nsk_live_" + "a1B2" * 6 + "\r\n").encode())
    early = parse(("From: a@example.com\r\nSubject: s\r\n\r\nsk_live_" + "a1B2" * 6 + "\n" +
                   filler + "\r\n").encode())
    assert all(len(p.text) <= MAX_PART_CHARS for p in parts.text_parts(late))
    assert outbound.scan_outbound(late) == []
    assert [f.rule for f in outbound.scan_outbound(early)] == ["stripe_key"]


def test_parts_are_capped_in_number():
    attachments = "".join(f"--b\r\nContent-Type: text/plain\r\nContent-Disposition: attachment;"
                          f" filename=f{i}.txt\r\n\r\nhello {i}\r\n" for i in range(500))
    msg = parse(("From: a@example.com\r\nSubject: s\r\nMIME-Version: 1.0\r\nContent-Type: "
                 "multipart/mixed; boundary=b\r\n\r\n" + attachments + "--b--\r\n").encode())
    assert len(parts.text_parts(msg)) <= parts.MAX_PARTS + 1  # + the subject


CORPUS = Path(__file__).parent.parent / "fixtures" / "protection"


def test_corpus_scans_are_deterministic():
    for path in sorted(CORPUS.glob("*/*.eml")):
        raw = path.read_bytes()
        assert inbound.scan_inbound(parse(raw)) == inbound.scan_inbound(parse(raw))
        assert outbound.scan_outbound(parse(raw)) == outbound.scan_outbound(parse(raw))


PROPERTY = settings(max_examples=300, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])
BENIGN_WORDS = ["the", "meeting", "is", "on", "tuesday", "please", "find", "attached",
                "invoice", "for", "november", "thanks", "best", "regards", "we", "shipped",
                "your", "order", "can", "you", "review", "draft", "by", "friday", "budget",
                "team", "all", "previous", "notes", "agenda", "project", "update", "send",
                "report", "call", "me", "at", "10:00", "EUR", "42.00", "and", "to", "of",
                "a", "new", "version", "release", "customer", "support", "ticket", "\n", ",",
                "."]


@PROPERTY
@given(st.lists(st.sampled_from(BENIGN_WORDS), max_size=200))
def test_benign_sentences_never_held_at_medium(words):
    text = " ".join(words)
    found = inbound.scan_text(text)
    assert verdict(found, "medium") in ("none", "flag"), found
    assert verdict(outbound.scan_text(text), "medium") in ("none", "flag")


@PROPERTY
@given(st.text(max_size=2000))
def test_random_text_never_blocks_at_medium(text):
    msg = parse((b"From: a@example.com\r\nSubject: s\r\nContent-Type: text/plain; "
                 b"charset=utf-8\r\n\r\n") + text.encode("utf-8", "replace"))
    assert verdict(inbound.scan_inbound(msg), "medium") != "block"
    assert verdict(inbound.scan_text(text), "medium") != "block"


@PROPERTY
@given(st.text(max_size=2000))
def test_scanning_is_deterministic(text):
    assert inbound.scan_text(text) == inbound.scan_text(text)
    assert outbound.scan_text(text) == outbound.scan_text(text)
    assert inbound.hidden_html(text) == inbound.hidden_html(text)


PACKAGE = Path(__file__).parent.parent.parent / "core" / "protection"
PROCESS_PACKAGES = ("milter", "policy", "api", "filter", "worker", "cli")
# The MIME text reader and its text() (core/mail).
READER = ("e2a.core.mail.mimetext", "e2a.core.mail.headers")


def test_engine_imports_no_process_package():
    """Directly: each module's imports are the stdlib, the engine itself and
    the MIME text reader; transitively: importing the engine loads no
    process package."""
    for path in sorted(PACKAGE.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = ([alias.name for alias in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            for name in names:
                if name.startswith("e2a."):
                    assert name in READER or (name + ".").startswith("e2a.core.protection."), (
                        path.name, name)
    probe = ("import sys, e2a.core.protection.inbound, e2a.core.protection.outbound, "
             "e2a.core.protection.gates, e2a.core.protection.autoreply; "
             "print('\\n'.join(sorted(sys.modules)))")
    loaded = subprocess.run([sys.executable, "-P", "-c", probe], capture_output=True,
                            text=True, check=True).stdout.split()
    bad = [name for name in loaded
           if name.split(".")[:2] in [["e2a", process] for process in PROCESS_PACKAGES]]
    assert bad == []
