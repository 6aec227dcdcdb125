"""Auto-generated mail: the label and the reason."""

from __future__ import annotations

import pytest

from e2a.core.protection.autoreply import AutoMail, classify
from e2a.core.protection.parts import parse


def msg(headers: str, subject: str = "hello", ctype: str = "text/plain") -> bytes:
    return (f"From: a@example.com\r\nTo: agent@agents.example\r\nSubject: {subject}\r\n"
            f"Content-Type: {ctype}\r\n{headers}\r\nbody\r\n").encode()


@pytest.mark.parametrize(("headers", "label"), [
    ("Auto-Submitted: auto-replied\r\n", "auto_reply"),
    ("Auto-Submitted: auto-generated\r\n", "auto_generated"),
    ("Auto-Submitted: auto-notified; owner-email=x@y\r\n", "auto_generated"),
    ("X-Autoreply: yes\r\n", "auto_reply"),
    ("X-Autorespond: vacation\r\n", "auto_reply"),
    ("X-Auto-Response-Suppress: All\r\n", "auto_generated"),
    ("X-MS-Exchange-Generated-Message-Source: Mailbox Rules Agent\r\n", "auto_generated"),
    ("X-MS-Exchange-Inbox-Rules-Loop: agent@agents.example\r\n", "auto_generated"),
    ("Precedence: bulk\r\n", "bulk"),
    ("Precedence: junk\r\n", "bulk"),
    ("Precedence: list\r\n", "list"),
    ("List-Id: <dev.lists.example>\r\n", "list"),
    ("List-Unsubscribe: <mailto:u@x.example>\r\n", "bulk"),
])
def test_headers(headers, label):
    found = classify(parse(msg(headers)), "a@example.com")
    assert found is not None and found.label == label and found.reason


def test_null_sender_and_reports():
    assert classify(parse(msg("")), "") == AutoMail("bounce", "null sender (MAIL FROM:<>)")
    assert classify(parse(msg("")), "<>") is not None
    report = classify(parse(msg("", ctype="multipart/report; report-type=delivery-status; "
                                "boundary=x")), "mailer@example.com")
    assert report == AutoMail("bounce", "delivery report (delivery-status)")


def test_vacation_subjects():
    for subject in ("Automatic reply: Q4", "Out of Office: back Monday", "Auto-Reply: hi",
                    "R\u00e9ponse automatique : absent"):
        found = classify(parse(msg("", subject=subject)), "a@example.com")
        assert found == AutoMail("auto_reply", "vacation reply subject"), subject


def test_ordinary_mail_is_not_automatic():
    assert classify(parse(msg("Auto-Submitted: no\r\n")), "a@example.com") is None
    assert classify(parse(msg("", subject="Re: out of the office plans")), "a@x.example") is None
    assert classify(parse(msg("")), None) is None  # no envelope given: headers only
