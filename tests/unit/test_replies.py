"""core/replies: recipients, subjects, threading and the quoted original of
replies and forwards, from a stored inbound row."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from e2a.core.outbound import replies

AGENT = "bot@agents.example.com"


def inbound(**overrides: object) -> dict[str, object]:
    row: dict[str, object] = {
        "id": "msg_1", "sender": "alice@example.org", "reply_to": [],
        "to_recipients": [AGENT, "bob@example.org"], "cc": ["carol@example.org"],
        "subject": "Quarterly report", "email_message_id": "<m3@example.org>",
        "in_reply_to": "<m2@example.org>",
        "references_ids": ["<m1@example.org>", "<m2@example.org>"],
        "conversation_id": "conv_thread", "raw_message": None,
        "created_at": datetime(2026, 6, 1, 12, 0, tzinfo=UTC),
    }
    row.update(overrides)
    return row


@pytest.mark.parametrize(("subject", "expected"), [
    ("Quarterly report", "Re: Quarterly report"),
    ("Re: Quarterly report", "Re: Quarterly report"),
    ("RE: shouting", "RE: shouting"),
    ("re : spaced", "re : spaced"),
    ("  padded   subject ", "Re: padded subject"),
    ("Fwd: something", "Re: Fwd: something"),
    ("Regarding x", "Re: Regarding x"),
    ("", "Re:"),
])
def test_reply_subject_is_not_doubled(subject, expected):
    assert replies.reply_subject(subject) == expected


@pytest.mark.parametrize(("subject", "expected"), [
    ("Report", "Fwd: Report"), ("Fwd: Report", "Fwd: Report"), ("FW: Report", "FW: Report"),
    ("Re: Report", "Fwd: Re: Report"), ("", "Fwd:"),
])
def test_forward_subject(subject, expected):
    assert replies.forward_subject(subject) == expected


def test_reply_goes_to_the_sender():
    assert replies.reply_recipients(inbound(), AGENT, False) == (["alice@example.org"], [])


def test_reply_to_wins_over_from():
    row = inbound(reply_to=["list@example.org", "alice.private@example.org"])
    assert replies.reply_recipients(row, AGENT, False) == (
        ["list@example.org", "alice.private@example.org"], [])


def test_reply_all_copies_everyone_but_the_agent_and_the_addressees():
    row = inbound(to_recipients=["BOT@agents.example.com", "bob@example.org", "Alice@example.org"],
                  cc=["carol@example.org", "bob@example.org"])
    assert replies.reply_recipients(row, AGENT, True) == (
        ["alice@example.org"], ["bob@example.org", "carol@example.org"])


def test_no_sender_no_recipient():
    assert replies.reply_recipients(inbound(sender=""), AGENT, False) == ([], [])


def test_threading_extends_the_references_chain():
    assert replies.threading(inbound()) == (
        "<m3@example.org>", ("<m1@example.org>", "<m2@example.org>", "<m3@example.org>"))


def test_threading_falls_back_to_in_reply_to():
    row = inbound(references_ids=[], in_reply_to="<m2@example.org>")
    assert replies.threading(row) == ("<m3@example.org>",
                                      ("<m2@example.org>", "<m3@example.org>"))


def test_threading_without_a_message_id_or_with_unsafe_ids():
    assert replies.threading(inbound(email_message_id="")) == ("", ())
    row = inbound(references_ids=["<\u00e9@example.org>", "<ok@example.org>"], in_reply_to="")
    assert replies.threading(row) == ("<m3@example.org>",
                                      ("<ok@example.org>", "<m3@example.org>"))


RAW_PLAIN = (b"From: Alice Example <alice@example.org>\r\nTo: bot@agents.example.com\r\n"
             b"Date: Mon, 01 Jun 2026 11:59:00 +0000\r\nSubject: Quarterly report\r\n"
             b"Content-Type: text/plain; charset=utf-8\r\n\r\nNumbers are up.\r\nCheers\r\n")
RAW_HTML_ONLY = (b"From: alice@example.org\r\nSubject: x\r\nMIME-Version: 1.0\r\n"
                 b"Content-Type: text/html; charset=utf-8\r\n\r\n"
                 b"<html><head><style>p{}</style></head><body><p>First &amp; foremost</p>"
                 b"<script>alert(1)</script><div>second<br>third</div></body></html>\r\n")
RAW_ALTERNATIVE = (b"From: alice@example.org\r\nSubject: x\r\nMIME-Version: 1.0\r\n"
                   b"Content-Type: multipart/alternative; boundary=b\r\n\r\n"
                   b"--b\r\nContent-Type: text/html\r\n\r\n<p>html version</p>\r\n"
                   b"--b\r\nContent-Type: text/plain; charset=iso-8859-1\r\n"
                   b"Content-Transfer-Encoding: quoted-printable\r\n\r\ncaf=E9 plain\r\n--b--\r\n")


@pytest.mark.parametrize(("raw", "expected"), [
    (RAW_PLAIN, "Numbers are up.\nCheers"),
    (RAW_HTML_ONLY, "First & foremost\n\nsecond\nthird"),
    (RAW_ALTERNATIVE, "caf\u00e9 plain"),
    (b"From: a@example.org\r\nContent-Type: text/plain; charset=no-such-charset\r\n\r\n"
     b"caf\xc3\xa9\r\n", "caf\u00e9"),
    (b"not a message at all", "not a message at all"),  # no header: all body
    (None, ""),
    (b"Content-Type: multipart/mixed; boundary=z\r\n\r\n--z\r\nContent-Type: image/png\r\n"
     b"\r\nPNG\r\n--z--\r\n", ""),
])
def test_original_text_best_effort(raw, expected):
    assert replies.original_text(raw) == expected


def test_forward_text_is_the_comment_then_the_gmail_style_block():
    row = inbound(raw_message=RAW_PLAIN, cc=[])
    assert replies.forward_text("FYI, see below.", row) == (
        "FYI, see below.\n\n"
        "---------- Forwarded message ---------\n"
        "From: Alice Example <alice@example.org>\n"
        "Date: Mon, 01 Jun 2026 11:59:00 +0000\n"
        "Subject: Quarterly report\n"
        f"To: {AGENT}, bob@example.org\n"
        "\n"
        "Numbers are up.\nCheers\n")


def test_forward_without_a_comment_or_raw_falls_back_to_the_row():
    text = replies.forward_text("  ", inbound())
    assert text == ("---------- Forwarded message ---------\n"
                    "From: alice@example.org\n"
                    "Date: Mon, 01 Jun 2026 12:00:00 +0000\n"
                    "Subject: Quarterly report\n"
                    f"To: {AGENT}, bob@example.org\n"
                    "Cc: carol@example.org\n")


def test_forward_html_escapes_the_original():
    raw = RAW_PLAIN.replace(b"Numbers are up.", b"<script>x</script> & more")
    out = replies.forward_html("<p>FYI</p>", inbound(raw_message=raw))
    assert out.startswith("<p>FYI</p>")
    assert "---------- Forwarded message ---------<br>" in out
    assert "From: Alice Example &lt;alice@example.org&gt;" in out
    assert "&lt;script&gt;x&lt;/script&gt; &amp; more" in out
    assert "<script>" not in out
