"""core/compose: the MIME of what agents send, and every refusal."""

from __future__ import annotations

import email
import email.policy
import re
from datetime import UTC, datetime
from email.message import EmailMessage

import pytest

from e2a.core.outbound import compose
from e2a.core.outbound.compose import Attachment, ComposeError, Draft, Mailbox, SendLimits

LIMITS = SendLimits(max_recipients=5, max_attachments=3, max_attachment_bytes=1000,
                max_attachments_total_bytes=2000, max_message_bytes=200_000)
MSG_ID = "msg_0123456789abcdef0123456789abcdef"
DOMAIN = "agents.example.com"
AGENT = Mailbox("bot@agents.example.com", "Support Bot")
NOW = datetime(2026, 6, 1, 12, 0, 0, tzinfo=UTC)


def draft(**overrides: object) -> Draft:
    fields: dict[str, object] = {"sender": AGENT, "to": (Mailbox("alice@example.org"),),
                                 "subject": "Hello", "text": "Hi Alice\n",
                                 "conversation_id": "conv_abc"}
    fields.update(overrides)
    return Draft(**fields)  # type: ignore[arg-type]


def build(**overrides: object) -> compose.Composed:
    return compose.compose(draft(**overrides), message_id=MSG_ID, domain=DOMAIN,
                           limits=LIMITS, now=NOW)


def content(part: EmailMessage) -> str:
    return part.get_content().replace("\r\n", "\n")


def parsed(raw: bytes) -> EmailMessage:
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def header_names(raw: bytes) -> list[str]:
    head = raw.split(b"\r\n\r\n", 1)[0].decode("ascii")
    return [line.split(":", 1)[0] for line in head.split("\r\n") if line[:1] not in " \t"]


# -- what is built ---------------------------------------------------------------


def test_plain_text_message_and_its_headers():
    out = build()
    assert header_names(out.raw) == ["From", "To", "Subject", "Date", "Message-ID",
                                     "X-E2A-Conversation-Id", "Content-Type",
                                     "Content-Transfer-Encoding", "MIME-Version"]
    msg = parsed(out.raw)
    assert msg["From"] == "Support Bot <bot@agents.example.com>"
    assert msg["To"] == "alice@example.org"
    assert msg["Subject"] == "Hello"
    assert msg["Date"] == "Mon, 01 Jun 2026 12:00:00 +0000"
    assert msg["Message-ID"] == f"<{MSG_ID}@{DOMAIN}>" == out.email_message_id
    assert msg["X-E2A-Conversation-Id"] == "conv_abc"
    assert msg.get_content_type() == "text/plain"
    assert content(msg) == "Hi Alice\n"
    assert out.recipients == ["alice@example.org"]


def test_every_line_ends_crlf_and_the_message_is_7bit():
    out = build(text="caf\u00e9 \u2603 " * 40 + "\n" + "x" * 2000, subject="r\u00e9sum\u00e9")
    assert max(out.raw) < 128
    assert b"\n" not in out.raw.replace(b"\r\n", b"")
    assert b"\r" not in out.raw.replace(b"\r\n", b"")
    assert all(len(line) <= 998 for line in out.raw.split(b"\r\n"))
    msg = parsed(out.raw)
    assert msg["Subject"] == "r\u00e9sum\u00e9"
    assert content(msg) == "caf\u00e9 \u2603 " * 40 + "\n" + "x" * 2000 + "\n"


def test_text_and_html_are_alternatives():
    msg = parsed(build(text="plain words", html="<p>rich words</p>").raw)
    assert msg.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in msg.iter_parts()] == ["text/plain", "text/html"]
    assert msg.get_body(("plain",)).get_content().strip() == "plain words"
    assert msg.get_body(("html",)).get_content().strip() == "<p>rich words</p>"


def test_html_alone_is_one_html_part():
    msg = parsed(build(text="", html="<p>only</p>").raw)
    assert msg.get_content_type() == "text/html"


def test_attachments_arrive_intact_next_to_the_bodies():
    files = (Attachment("report.pdf", "application/pdf", b"%PDF-1.7\x00\xff binary"),
             Attachment("\u00fcbersicht \u00e9t\u00e9.txt", "text/plain", b"line\r\n"))
    msg = parsed(build(text="see attached", html="<p>see attached</p>", attachments=files).raw)
    assert msg.get_content_type() == "multipart/mixed"
    body, *attached = list(msg.iter_parts())
    assert body.get_content_type() == "multipart/alternative"
    assert [(a.get_filename(), a.get_content_type(), a.get_payload(decode=True))
            for a in attached] == [(f.filename, f.content_type, f.data) for f in files]
    assert all(a.get_content_disposition() == "attachment" for a in attached)


def test_display_names_are_encoded_and_quoted():
    out = build(sender=Mailbox("bot@agents.example.com", 'B\u00f6t, "the" agent'),
                to=(Mailbox("z@example.org", "Zo\u00eb"), Mailbox("y@example.org")))
    msg = parsed(out.raw)
    assert msg["From"].addresses[0].display_name == 'B\u00f6t, "the" agent'
    assert msg["From"].addresses[0].addr_spec == "bot@agents.example.com"
    assert [(a.display_name, a.addr_spec) for a in msg["To"].addresses] == [
        ("Zo\u00eb", "z@example.org"), ("", "y@example.org")]


def test_an_agent_without_a_name_sends_from_its_bare_address():
    msg = parsed(build(sender=Mailbox("bot@agents.example.com")).raw)
    assert msg["From"] == "bot@agents.example.com"


def test_bcc_is_an_envelope_recipient_and_never_a_header():
    out = build(cc=(Mailbox("carol@example.org"),),
                bcc=(Mailbox("secret@example.org"), Mailbox("ALICE@example.org")))
    assert b"secret@example.org" not in out.raw
    assert "Bcc" not in header_names(out.raw)
    assert parsed(out.raw)["Cc"] == "carol@example.org"
    # Alice twice (To and Bcc, other case): one RCPT.
    assert out.recipients == ["alice@example.org", "carol@example.org", "secret@example.org"]


def test_threading_headers():
    msg = parsed(build(in_reply_to="<b@example.org>",
                       references=("<a@example.org>", "<b@example.org>")).raw)
    assert msg["In-Reply-To"] == "<b@example.org>"
    assert msg["References"].split() == ["<a@example.org>", "<b@example.org>"]


def test_no_conversation_header_without_an_id():
    assert "X-E2A-Conversation-Id" not in header_names(build(conversation_id="").raw)


def test_subject_whitespace_runs_become_one_space():
    out = build(subject="  many   spaces\u00a0 here ")
    assert out.subject == "many spaces here"
    assert parsed(out.raw)["Subject"] == "many spaces here"


def test_long_subject_and_many_recipients_fold():
    long_subject = " ".join(["word"] * 150)
    many = tuple(Mailbox(f"person{n}@example.org", f"Person Number {n}") for n in range(5))
    out = compose.compose(draft(subject=long_subject, to=many), message_id=MSG_ID,
                          domain=DOMAIN, limits=LIMITS)
    assert all(len(line) <= 78 for line in out.raw.split(b"\r\n\r\n")[0].split(b"\r\n"))
    msg = parsed(out.raw)
    assert msg["Subject"] == long_subject
    assert [a.addr_spec for a in msg["To"].addresses] == [m.address for m in many]


def test_limits_come_from_the_configuration(cfg):
    limits = SendLimits.of(cfg)
    assert limits == SendLimits(max_recipients=cfg.mail.max_recipients, max_attachments=10,
                            max_attachment_bytes=10_000_000,
                            max_attachments_total_bytes=25_000_000,
                            max_message_bytes=cfg.mail.max_message_bytes)


def test_drafts_and_attachments_keep_their_contents_out_of_repr():
    secret = "the body nobody may log"
    item = Attachment("a.bin", "application/octet-stream", secret.encode())
    shown = repr(draft(text=secret, html=secret, attachments=(item,))) + repr(item)
    assert secret not in shown
    assert "attachments=1" in shown and f"{len(secret)} bytes" in shown


# -- reading caller input --------------------------------------------------------


@pytest.mark.parametrize(("given", "expected"), [
    ("alice@example.org", Mailbox("alice@example.org")),
    ("  alice@example.org ", Mailbox("alice@example.org")),
    ("Alice <alice@example.org>", Mailbox("alice@example.org", "Alice")),
    ('"Smith, Alice" <alice@example.org>', Mailbox("alice@example.org", "Smith, Alice")),
    ("<alice@example.org>", Mailbox("alice@example.org")),
])
def test_mailbox_forms(given, expected):
    assert compose.mailbox(given, "to") == expected


@pytest.mark.parametrize("given", [
    "", "alice", "alice@", "@example.org", "alice@localhost", "a b@example.org",
    "alice@example.org\r\nBcc: x@evil.example", "alice@example.org\n",
    "Alice <alice@example.org>, Bob <bob@example.org>", "a..b@example.org", ".a@example.org",
    "a.@example.org", "al\u00efce@example.org", "alice@ex\u00e4mple.org", "Alice\n <a@example.org>",
    "a@example.org>", "<<a@example.org>>", 'x"y@example.org', "a@example.org\x00",
    "x" * 250 + "@example.org",
])
def test_mailbox_refuses(given):
    with pytest.raises(ComposeError) as refused:
        compose.mailbox(given, "cc")
    assert refused.value.field == "cc"


def test_mailbox_refuses_what_is_not_a_string():
    with pytest.raises(ComposeError):
        compose.mailbox(["a@example.org"], "to")


# -- refusals --------------------------------------------------------------------

HEADER_BREAKERS = ["\r", "\n", "\r\n", "\x00", "\t", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e",
                   "\x7f", "\x85", "\u2028", "\u2029", "\ud800"]


@pytest.mark.parametrize("char", HEADER_BREAKERS)
@pytest.mark.parametrize(("where", "make"), [
    ("subject", lambda c: {"subject": f"Hello{c}Bcc: victim@example.org"}),
    ("from", lambda c: {"sender": Mailbox("bot@agents.example.com", f"Bot{c}Bcc: x@y.org")}),
    ("to", lambda c: {"to": (Mailbox("a@example.org", f"A{c}X-Evil: 1"),)}),
    ("cc", lambda c: {"cc": (Mailbox("c@example.org", f"C{c}"),)}),
    ("attachments[0].filename", lambda c: {"attachments": (
        Attachment(f"a{c}.txt", "text/plain", b"x"),)}),
    ("conversation_id", lambda c: {"conversation_id": f"conv_1{c}X-Evil: 1"}),
    ("in_reply_to", lambda c: {"in_reply_to": f"<a@b>{c}X-Evil: 1"}),
    ("references", lambda c: {"references": (f"<a@b{c}>",)}),
])
def test_control_characters_in_any_header_field_are_refused(char, where, make):
    with pytest.raises(ComposeError) as refused:
        build(**make(char))
    assert refused.value.field == where


@pytest.mark.parametrize(("overrides", "field"), [
    ({"to": ()}, "to"),
    ({"to": tuple(Mailbox(f"p{n}@example.org") for n in range(4)),
      "cc": (Mailbox("c1@example.org"),), "bcc": (Mailbox("b1@example.org"),)}, "to"),
    ({"text": "", "html": ""}, "body"),
    ({"text": "nul \x00 byte"}, "body"),
    ({"html": "\ud83d broken"}, "html_body"),
    ({"text": "x" * 200_001}, "body"),
    ({"sender": Mailbox("not an address")}, "from"),
    ({"bcc": (Mailbox("bad@@example.org"),)}, "bcc"),
    ({"subject": "s" * 999}, "subject"),
    ({"conversation_id": "with space"}, "conversation_id"),
    ({"conversation_id": "c" * 201}, "conversation_id"),
    ({"conversation_id": "conv_\u00e9"}, "conversation_id"),
    ({"conversation_id": "=?utf-8?q?x?="}, "conversation_id"),
    ({"in_reply_to": "<=?utf-8?q?x?=@example.org>"}, "in_reply_to"),
    ({"in_reply_to": "no-brackets@example.org"}, "in_reply_to"),
    ({"references": ("<ok@example.org>", "<two@ids> <in@one>")}, "references"),
    ({"attachments": tuple(Attachment(f"{n}.txt", "text/plain", b"x") for n in range(4))},
     "attachments"),
    ({"attachments": (Attachment("big.bin", "", b"x" * 1001),)}, "attachments[0].data"),
    ({"attachments": (Attachment("a.bin", "", b"x" * 1000), Attachment("b.bin", "", b"x" * 1000),
                      Attachment("c.bin", "", b"x"))}, "attachments"),
    ({"attachments": (Attachment("  ", "text/plain", b"x"),)}, "attachments[0].filename"),
    ({"attachments": (Attachment("n" * 256, "text/plain", b"x"),)}, "attachments[0].filename"),
    ({"attachments": (Attachment("a.txt", "text", b"x"),)}, "attachments[0].content_type"),
    ({"attachments": (Attachment("a.txt", "text/plain; charset=x", b"x"),)},
     "attachments[0].content_type"),
    ({"attachments": (Attachment("a.txt", "text/plain\r\nX-Evil: 1", b"x"),)},
     "attachments[0].content_type"),
    ({"attachments": (Attachment("a.eml", "message/rfc822", b"x"),)},
     "attachments[0].content_type"),
    ({"attachments": (Attachment("a", "multipart/mixed", b"x"),)}, "attachments[0].content_type"),
])
def test_refusals_name_the_field(overrides, field):
    with pytest.raises(ComposeError) as refused:
        build(**overrides)
    assert refused.value.field == field
    assert str(refused.value).startswith(f"{field}: ")


def test_recipients_are_counted_once_each():
    # Five distinct addresses across To, Cc and Bcc (one repeated): at the limit.
    out = build(to=tuple(Mailbox(f"p{n}@example.org") for n in range(4)),
                cc=(Mailbox("P0@example.org"),), bcc=(Mailbox("b@example.org"),))
    assert len(out.recipients) == 5


def test_attachments_exactly_at_the_limits_pass():
    files = (Attachment("a.bin", "", b"a" * 1000), Attachment("b.bin", "", b"b" * 1000))
    msg = parsed(build(attachments=files).raw)
    attached = [p for p in msg.iter_attachments()]
    assert [p.get_content_type() for p in attached] == ["application/octet-stream"] * 2
    assert [p.get_payload(decode=True) for p in attached] == [f.data for f in files]


def test_a_message_bigger_than_postfix_takes_is_refused():
    small = SendLimits(max_recipients=5, max_attachments=3, max_attachment_bytes=100_000,
                   max_attachments_total_bytes=200_000, max_message_bytes=compose.SIZE_HEADROOM
                   + 50_000)
    big = (Attachment("a.bin", "", bytes(range(256)) * 200),)  # 51 200 bytes, 68 KiB base64
    with pytest.raises(ComposeError) as refused:
        compose.compose(draft(attachments=big), message_id=MSG_ID, domain=DOMAIN,
                        limits=small)
    assert refused.value.field == "message"
    assert re.search(r"at most 50000\b", str(refused.value))


# -- references ------------------------------------------------------------------


def test_references_keep_the_first_and_the_newest():
    ids = [f"<{n}@example.org>" for n in range(100)]
    kept = compose.trimmed_references(ids)
    assert len(kept) == compose.MAX_REFERENCES
    assert kept[0] == ids[0] and kept[1:] == tuple(ids[-(compose.MAX_REFERENCES - 1):])
    assert compose.trimmed_references(["<a@b>", "<a@b>", "<c@d>"]) == ("<a@b>", "<c@d>")
