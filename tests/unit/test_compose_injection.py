"""Property: whatever text a caller puts in the fields that become headers
(subject, display names, addresses, file names, conversation and message
ids), compose either refuses it (ComposeError) or writes a message whose
header section holds exactly the fields we put there, each value reading
back as given, with CRLF line ends only and no byte above 127."""

from __future__ import annotations

import email
import email.policy
import re
from email.message import EmailMessage

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from e2a.core.outbound import compose
from e2a.core.outbound.compose import Attachment, ComposeError, Draft, Limits, Mailbox

LIMITS = Limits(max_recipients=50, max_attachments=10, max_attachment_bytes=10_000,
                max_attachments_total_bytes=50_000, max_message_bytes=1_000_000)
SETTINGS = settings(max_examples=1000, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])
FIELD_NAME = re.compile(rb"[\x21-\x39\x3b-\x7e]+")

# Text of every kind, with the characters that break headers made likely.
_BREAKERS = st.sampled_from(["\r", "\n", "\r\n", "\x00", "\x85", "\u2028", "\x0b", "\t",
                             ": ", "Bcc: evil@example.org", "=?utf-8?q?x?=", "<", ">", "\"",
                             ",", ";", "@", " ", "\u00e9", "\u2603", "\U0001f600", "\ud800"])
TEXT = st.lists(st.one_of(st.text(max_size=12), _BREAKERS), max_size=8).map("".join)
ADDRESS = st.one_of(
    st.builds(lambda local, domain: f"{local}@{domain}.example",
              st.from_regex(r"[a-z0-9.+_-]{1,12}", fullmatch=True),
              st.from_regex(r"[a-z0-9-]{1,12}", fullmatch=True)),
    TEXT.map(lambda t: f"a{t}@example.org"), TEXT)


def header_section(raw: bytes) -> list[bytes]:
    return raw.split(b"\r\n\r\n", 1)[0].split(b"\r\n")


def field_names(lines: list[bytes]) -> list[str]:
    names = []
    for line in lines:
        if line[:1] in (b" ", b"\t"):
            continue  # a folded continuation
        name, colon, _ = line.partition(b":")
        assert colon and FIELD_NAME.fullmatch(name), line
        names.append(name.decode())
    return names


def same_phrase(parsed: str, given: str) -> bool:
    """A display name read back equals the one given, up to whitespace: a
    long name is folded into several encoded words, and Python 3.11's parser
    keeps the folding space between two of them in a display name (RFC 2047
    says to drop it; its Subject parser does)."""
    return "".join(parsed.split()) == "".join(given.split())


def assert_well_formed(raw: bytes) -> EmailMessage:
    assert max(raw) < 128
    assert b"\n" not in raw.replace(b"\r\n", b"") and b"\r" not in raw.replace(b"\r\n", b"")
    assert all(len(line) <= 998 for line in raw.split(b"\r\n"))
    # No folded line holds only blanks (a header ending there reads as ended).
    assert all(line.strip() for line in header_section(raw))
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


BENIGN = {"subject": "Hello", "sender_name": "Bot", "to_name": "Alice",
          "cc_address": "carol@example.org", "conversation_id": "conv_1",
          "in_reply_to": "<parent@example.org>", "filename": "notes.txt"}


def check_one_draft(fields: dict[str, str]) -> None:
    draft = Draft(
        sender=Mailbox("bot@agents.example.com", fields["sender_name"]),
        to=(Mailbox("alice@example.org", fields["to_name"]),),
        cc=(Mailbox(fields["cc_address"]),), bcc=(Mailbox("hidden@example.org"),),
        subject=fields["subject"], text="body",
        attachments=(Attachment(fields["filename"] or "f", "text/plain", b"data"),),
        conversation_id=fields["conversation_id"], in_reply_to=fields["in_reply_to"])
    try:
        out = compose.compose(draft, message_id="msg_" + "a" * 32, domain="agents.example.com",
                              limits=LIMITS)
    except ComposeError as exc:
        event(f"refused: {exc.field}")
        return
    event("composed")
    msg = assert_well_formed(out.raw)
    expected = ["From", "To", "Cc", "Subject", "Date", "Message-ID"]
    expected += ["In-Reply-To"] if fields["in_reply_to"] else []
    expected += ["X-E2A-Conversation-Id"] if fields["conversation_id"] else []
    expected += ["MIME-Version", "Content-Type"]  # multipart: no transfer encoding
    assert field_names(header_section(out.raw)) == expected
    assert b"hidden@example.org" not in out.raw
    assert msg["Subject"] == compose.one_line(fields["subject"])
    [sender] = msg["From"].addresses
    assert sender.addr_spec == "bot@agents.example.com"
    assert same_phrase(sender.display_name, fields["sender_name"])
    [to] = msg["To"].addresses
    assert to.addr_spec == "alice@example.org"
    assert same_phrase(to.display_name, fields["to_name"])
    assert [a.addr_spec for a in msg["Cc"].addresses] == [fields["cc_address"]]
    if fields["conversation_id"]:
        assert msg["X-E2A-Conversation-Id"] == fields["conversation_id"]
    if fields["in_reply_to"]:
        assert msg["In-Reply-To"] == fields["in_reply_to"]
    [attached] = list(msg.iter_attachments())
    assert attached.get_filename() == compose.one_line(fields["filename"] or "f")
    assert attached.get_payload(decode=True) == b"data"


@SETTINGS
@given(name=st.sampled_from(sorted(BENIGN)), value=st.one_of(TEXT, ADDRESS))
def test_no_header_injection_through_any_one_field(name, value):
    check_one_draft({**BENIGN, name: value})


@SETTINGS
@given(subject=TEXT, sender_name=TEXT, to_name=TEXT, cc_address=ADDRESS,
       conversation_id=TEXT, in_reply_to=TEXT, filename=TEXT)
def test_no_header_injection_through_all_fields_at_once(subject, sender_name, to_name,
                                                         cc_address, conversation_id,
                                                         in_reply_to, filename):
    check_one_draft({"subject": subject, "sender_name": sender_name, "to_name": to_name,
                     "cc_address": cc_address, "conversation_id": conversation_id,
                     "in_reply_to": in_reply_to, "filename": filename})


@SETTINGS
@given(given_value=TEXT)
def test_mailbox_gives_a_checked_address_or_refuses(given_value):
    try:
        box = compose.mailbox(given_value, "to")
    except ComposeError as exc:
        assert exc.field == "to"
        return
    try:
        compose.check(Draft(sender=Mailbox("bot@agents.example.com"), to=(box,), text="x"),
                      LIMITS)
    except ComposeError as exc:  # only the display name may still be refused (too long)
        assert exc.field == "to" and "at most" in str(exc)
