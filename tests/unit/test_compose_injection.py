"""Property: whatever text a caller puts in the fields that become headers
(subject, display names, addresses, file names, conversation and message
ids), compose refuses it exactly when it breaks a stated rule, naming that
field, and otherwise writes a message whose header section holds exactly the
fields we put there. What a reader makes of the message is what the stdlib's
``email`` parser makes of the bytes: each address field one mailbox per
address we gave, each value reading back as given; CRLF line ends only and
no byte above 127.

The rules a refusal must be explained by are written out here again, from
the documented contract (RFC 5322 address syntax, no control characters, no
RFC 2047 encoded words, length limits), not taken from compose.

Under CI the run is derandomized (tests/conftest.py); the explicit examples
pin inputs that once got through.
"""

from __future__ import annotations

import email
import email.policy
import re
import unicodedata
from email.headerregistry import Address
from email.message import EmailMessage

from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from e2a.core.outbound import compose
from e2a.core.outbound.compose import Attachment, ComposeError, Draft, Mailbox, SendLimits

LIMITS = SendLimits(max_recipients=50, max_attachments=10, max_attachment_bytes=10_000,
                max_attachments_total_bytes=50_000, max_message_bytes=1_000_000)
SETTINGS = settings(max_examples=1000, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])
FIELD_NAME = re.compile(rb"[\x21-\x39\x3b-\x7e]+")

# Text of every kind, with the characters that break headers made likely.
_BREAKERS = st.sampled_from(["\r", "\n", "\r\n", "\x00", "\x85", "\u2028", "\x0b", "\t",
                             ": ", "Bcc: evil@example.org", "=?utf-8?q?x?=", "<", ">", "\"",
                             ",", ";", "@", " ", "\u00e9", "\u2603", "\U0001f600", "\ud800",
                             "\\", "x" * 40])
TEXT = st.lists(st.one_of(st.text(max_size=12), _BREAKERS), max_size=8).map("".join)
ADDRESS = st.one_of(
    st.builds(lambda local, domain: f"{local}@{domain}.example",
              st.from_regex(r"[a-z0-9.+_-]{1,12}", fullmatch=True),
              st.from_regex(r"[a-z0-9-]{1,12}", fullmatch=True)),
    TEXT.map(lambda t: f"a{t}@example.org"), TEXT)

# A display name longer than a line, with a colon and an at sign: the email
# package's folder once wrote it unquoted over two lines, and To: read as a
# group holding evil@example.org.
LONG_NAME_WITH_SPECIALS = "x" * 60 + " Bcc: evil@example.org" + " y" * 5
LONG_NON_ASCII_NAME = "\u00e9" * 30 + " Bcc: evil@example.org, \u2603 " + "z" * 50

# Many mailers' message ids are longer than a line less "In-Reply-To: ".
OUTLOOK_STYLE_ID = ("<DM6PR11MB4235A1B2C3D4E5F6A7B8C9D0E1F2A3B4C5D6E7F8@"
                    "DM6PR11MB4235.namprd11.prod.outlook.com>")

# -- the rules, stated independently of compose ---------------------------------

# RFC 5322 dot-atom local part; a domain of two or more labels.
_ADDR_SPEC = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
                        r"@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+")
_ENCODED_WORD = re.compile(r"=\?[^?]*\?[^?]*\?[^?]*\?=")
_MSG_ID = re.compile(r"<[\x21-\x3b\x3d\x3f-\x7e]{1,250}>")


def bad_text(value: str, most: int) -> bool:
    """Text no header may carry: a control character (a line break above
    all, in any of the spellings Python splits lines at), a lone surrogate,
    an encoded word (readers would decode it into other text), or too long."""
    return (len(value) > most or _ENCODED_WORD.search(value) is not None
            or any(unicodedata.category(c) in ("Cc", "Cs") or c in "\u2028\u2029"
                   for c in value))


def bad_address(value: str) -> bool:
    return not _ADDR_SPEC.fullmatch(value) or len(value) > 254


def bad_id(value: str, shape: re.Pattern[str]) -> bool:
    return bool(value) and (not shape.fullmatch(value) or _ENCODED_WORD.search(value)
                            is not None)


def must_refuse(fields: dict[str, str]) -> str | None:
    """The field compose must name, in the order it checks them; None: it
    must compose the draft."""
    filename = fields["filename"] or "f"
    rules = [("from", bad_text(fields["sender_name"], 200)),
             ("to", bad_text(fields["to_name"], 200)),
             ("cc", bad_address(fields["cc_address"])),
             ("subject", bad_text(fields["subject"], 998)),
             ("conversation_id", bad_id(fields["conversation_id"],
                                        re.compile(r"[\x21-\x7e]{1,200}"))),
             ("in_reply_to", bad_id(fields["in_reply_to"], _MSG_ID)),
             ("attachments[0].filename", not filename.strip() or bad_text(filename, 255))]
    return next((name for name, broken in rules if broken), None)


# -- reading the message back with the stdlib -------------------------------------


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


def raw_field(raw: bytes, name: str) -> str:
    """The field's body as the bytes carry it: unfolded (RFC 5322 2.2.3),
    nothing decoded. Message ids must read so to every reader, not only to
    one that decodes encoded words where RFC 2047 forbids them."""
    head = re.sub(rb"\r\n(?=[ \t])", b"", raw.split(b"\r\n\r\n", 1)[0])
    [value] = [line.partition(b":")[2] for line in head.split(b"\r\n")
               if line.partition(b":")[0].lower() == name.lower().encode()]
    return value.decode("ascii").strip()


def words(text: str) -> str:
    return " ".join(text.split())


def assert_one_mailbox(header: object, address: str, name: str) -> None:
    """The field holds one mailbox, in no group, with ``address`` and ``name``
    (collapsed whitespace: compose writes runs of it as one space). Encoded
    words are compared without whitespace: Python 3.11's parser keeps the
    folding space between two of them in a display name, where RFC 2047
    drops it."""
    groups = header.groups  # type: ignore[attr-defined]
    assert [g.display_name for g in groups] == [None], groups
    [box] = header.addresses  # type: ignore[attr-defined]
    assert box.addr_spec == address
    expected = words(name)
    if expected.isascii():
        assert box.display_name == expected
    else:
        assert "".join(box.display_name.split()) == "".join(expected.split())


def assert_well_formed(raw: bytes) -> EmailMessage:
    assert max(raw) < 128
    assert b"\n" not in raw.replace(b"\r\n", b"") and b"\r" not in raw.replace(b"\r\n", b"")
    assert all(len(line) <= 998 for line in raw.split(b"\r\n"))
    # No folded line holds only blanks (a header ending there reads as ended).
    assert all(line.strip() for line in header_section(raw))
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    for name in ("From", "To", "Cc"):
        assert msg[name] is None or not msg[name].defects, (name, msg[name].defects)
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
    refused_field = must_refuse(fields)
    try:
        out = compose.compose(draft, message_id="msg_" + "a" * 32, domain="agents.example.com",
                              limits=LIMITS)
    except ComposeError as exc:
        event(f"refused: {exc.field}")
        assert exc.field == refused_field, (exc, fields)
        return
    event("composed")
    assert refused_field is None, f"composed although {refused_field} breaks a rule"
    msg = assert_well_formed(out.raw)
    expected = ["From", "To", "Cc", "Subject", "Date", "Message-ID"]
    expected += ["In-Reply-To"] if fields["in_reply_to"] else []
    expected += ["X-E2A-Conversation-Id"] if fields["conversation_id"] else []
    expected += ["MIME-Version", "Content-Type"]  # multipart: no transfer encoding
    assert field_names(header_section(out.raw)) == expected
    assert b"hidden@example.org" not in out.raw
    assert msg["Subject"] == words(fields["subject"])
    assert_one_mailbox(msg["From"], "bot@agents.example.com", fields["sender_name"])
    assert_one_mailbox(msg["To"], "alice@example.org", fields["to_name"])
    assert_one_mailbox(msg["Cc"], fields["cc_address"], "")
    assert raw_field(out.raw, "Message-ID") == "<msg_" + "a" * 32 + "@agents.example.com>"
    if fields["conversation_id"]:
        assert msg["X-E2A-Conversation-Id"] == fields["conversation_id"]
        assert raw_field(out.raw, "X-E2A-Conversation-Id") == fields["conversation_id"]
    if fields["in_reply_to"]:
        assert msg["In-Reply-To"] == fields["in_reply_to"]
        assert raw_field(out.raw, "In-Reply-To") == fields["in_reply_to"]
    [attached] = list(msg.iter_attachments())
    # The header's parameter as the parser reads it: get_filename() unquotes
    # a second time, and reads the file name '""' as ''.
    assert attached["Content-Disposition"].params["filename"] == \
        words(fields["filename"] or "f")
    assert attached.get_payload(decode=True) == b"data"


@SETTINGS
@given(name=st.sampled_from(sorted(BENIGN)), value=st.one_of(TEXT, ADDRESS))
@example(name="to_name", value=LONG_NAME_WITH_SPECIALS)
@example(name="sender_name", value=LONG_NAME_WITH_SPECIALS)
@example(name="to_name", value=LONG_NON_ASCII_NAME)
@example(name="to_name", value='x' * 70 + ' "quoted\\" <evil@example.org>, ' + 'y' * 30)
@example(name="sender_name", value="a" * 200)
@example(name="to_name", value="a" * 201)
@example(name="subject", value="hi\r\nBcc: evil@example.org")
@example(name="cc_address", value="evil@example.org, other@example.org")
# Longer than a line, without a blank: written whole, never encoded or
# preceded by a blank (a reader would keep it).
@example(name="conversation_id", value="0" * 16 + "x" * 40)
@example(name="in_reply_to", value=OUTLOOK_STYLE_ID)
@example(name="filename", value='""')
@example(name="subject", value="aBcc: evil@example.orgBcc: evil@example.orgBcc: "
                               "evil@example.org@example.org")
@example(name="subject", value="x" * 990)
def test_no_header_injection_through_any_one_field(name, value):
    check_one_draft({**BENIGN, name: value})


@SETTINGS
@given(subject=TEXT, sender_name=TEXT, to_name=TEXT, cc_address=ADDRESS,
       conversation_id=TEXT, in_reply_to=TEXT, filename=TEXT)
@example(subject="s", sender_name=LONG_NAME_WITH_SPECIALS, to_name=LONG_NON_ASCII_NAME,
         cc_address="c@example.org", conversation_id="", in_reply_to="", filename="f")
def test_no_header_injection_through_all_fields_at_once(subject, sender_name, to_name,
                                                         cc_address, conversation_id,
                                                         in_reply_to, filename):
    check_one_draft({"subject": subject, "sender_name": sender_name, "to_name": to_name,
                     "cc_address": cc_address, "conversation_id": conversation_id,
                     "in_reply_to": in_reply_to, "filename": filename})


def test_a_long_display_name_with_specials_stays_one_quoted_mailbox():
    draft = Draft(sender=Mailbox("bot@agents.example.com"),
                  to=(Mailbox("alice@example.org", LONG_NAME_WITH_SPECIALS),), text="x")
    raw = compose.compose(draft, message_id="msg_" + "b" * 32, domain="agents.example.com",
                          limits=LIMITS).raw
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert [(a.display_name, a.addr_spec) for a in msg["To"].addresses] == \
        [(LONG_NAME_WITH_SPECIALS, "alice@example.org")]
    assert "evil@example.org" not in [a.addr_spec for a in msg["To"].addresses]
    assert all(len(line) <= compose.FOLD_AT for line in header_section(raw))


@SETTINGS
@given(given_value=st.one_of(TEXT, ADDRESS, st.builds("{} <{}>".format, TEXT, ADDRESS)))
@example(given_value=f'"{LONG_NAME_WITH_SPECIALS}" <alice@example.org>')
@example(given_value="Alice <alice@example.org>")
@example(given_value="alice@example.org")
@example(given_value="a@b.example <c@d.example>, e@f.example")
@example(given_value='0"" <0@0.example>')  # a reader sees the name "0"
def test_mailbox_gives_what_a_reader_parses_or_refuses(given_value):
    """What the stdlib reads as one plain mailbox, compose.mailbox takes as
    the same address and name; whatever it takes, written into a To field,
    reads back as that one mailbox; a refusal names the field."""
    try:
        box = compose.mailbox(given_value, "to")
    except ComposeError as exc:
        assert exc.field == "to"
        event("refused")
        return
    reader = email.policy.default.header_factory("To", given_value)
    plain = (not reader.defects and len(reader.addresses) == 1 and
             [g.display_name for g in reader.groups] == [None])
    if plain:
        [parsed] = reader.addresses
        assert box.address == parsed.addr_spec
        assert words(box.name) == words(parsed.display_name)
        event("same as the stdlib")
    assert not bad_address(box.address)
    assert Address(addr_spec=box.address).addr_spec == box.address
    try:
        out = compose.compose(Draft(sender=Mailbox("bot@agents.example.com"), to=(box,),
                                    text="x"),
                              message_id="msg_" + "c" * 32, domain="agents.example.com",
                              limits=LIMITS)
    except ComposeError as exc:  # only the display name, and only for its stated rules
        assert exc.field == "to" and bad_text(box.name, 200), exc
        return
    msg = assert_well_formed(out.raw)
    assert_one_mailbox(msg["To"], box.address, box.name)


def test_long_message_ids_in_a_reply_are_written_as_they_are():
    """Never RFC 2047-encoded (no reader may decode a msg-id, and threading
    would break), folded only between ids."""
    references = (OUTLOOK_STYLE_ID, "<short@example.org>", OUTLOOK_STYLE_ID.replace("A", "B"))
    draft = Draft(sender=Mailbox("bot@agents.example.com"),
                  to=(Mailbox("alice@example.org"),), text="x",
                  in_reply_to=references[-1], references=references)
    out = compose.compose(draft, message_id="msg_" + "d" * 32, domain="agents.example.com",
                          limits=LIMITS, email_message_id=OUTLOOK_STYLE_ID.replace("A", "C"))
    assert raw_field(out.raw, "Message-ID") == OUTLOOK_STYLE_ID.replace("A", "C")
    assert raw_field(out.raw, "In-Reply-To") == references[-1]
    assert raw_field(out.raw, "References").split() == list(references)
    assert b"=?" not in out.raw.split(b"\r\n\r\n", 1)[0]
    assert all(len(line) <= 998 for line in header_section(out.raw))
