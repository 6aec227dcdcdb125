"""Outbound mail: what an agent sends, checked, then put into MIME.

Every value that ends up in a header field (subject, display names,
addresses, attachment file names, conversation and message ids) is checked
before anything is built: a CR or LF, or any other control character, in one
of them would let the caller write header fields of its own (a Bcc:, a second
From:). The email package folds and encodes what passes (RFC 2047 words for
non-ASCII names and subjects, RFC 2231 for file names), and the message is
7-bit clean (quoted-printable or base64 bodies) so that no relay converts it
and breaks its DKIM signature.

A Draft that breaks a rule raises ComposeError naming the field; nothing is
built or sent then.
"""

from __future__ import annotations

import base64
import re
import unicodedata
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime

from e2a.core.accounts.registration import valid_email
from e2a.core.config import Config

# 7-bit: every body is quoted-printable or base64 where it is not plain ASCII.
# refold_source "none": the address and message id fields are folded here
# (folded) and the email package must write them as they are. Its own folder
# drops the quotes of a long quoted display name (Python 3.11), turning
# '"x Bcc: evil@example.org" <a@b>' into a group that holds evil@example.org,
# and RFC 2047-encodes a message id longer than a line.
POLICY = policy.SMTP.clone(cte_type="7bit", refold_source="none")
MAX_SUBJECT = 998
MAX_NAME = 200
MAX_FILENAME = 255
MAX_CONVERSATION_ID = 200  # what core/inbound/inbox.py keeps of an incoming one
MAX_MESSAGE_ID = 250
# References of a reply: the thread's first id and its most recent ones, as
# RFC 5322 section 3.6.4 allows trimming; a long thread must not grow the
# header without end.
MAX_REFERENCES = 30
# Room for what Postfix adds on the way (Received lines, the DKIM signature)
# under its message_size_limit, which is mail.max_message_bytes.
SIZE_HEADROOM = 16 * 1024
DEFAULT_CONTENT_TYPE = "application/octet-stream"
# RFC 5322 2.1.1: lines SHOULD stay within 78 characters.
FOLD_AT = 78
# A word this long still fits a line of 998 after "Subject: ".
_LONGEST_WORD = 980
# Bytes of UTF-8 per RFC 2047 "B" word: =?utf-8?b?...?= stays within 75 characters.
_EW_BYTES = 45

_CONVERSATION_ID = re.compile(rf"[\x21-\x7e]{{1,{MAX_CONVERSATION_ID}}}")
_MESSAGE_ID = re.compile(rf"<[\x21-\x3b\x3d\x3f-\x7e]{{1,{MAX_MESSAGE_ID}}}>")
_MIME_NAME = r"[A-Za-z0-9!#$&^_.+-]{1,127}"  # RFC 6838 restricted-name
_CONTENT_TYPE = re.compile(rf"({_MIME_NAME})/({_MIME_NAME})")
_NAME_ADDR = re.compile(r"(.*)<([^<>]*)>\s*", re.DOTALL)
# The shape of an RFC 2047 encoded word. The email package decodes one found
# in a value it is given, so "=?utf-8?q?=0D=0ABcc...?=" would reach readers as
# other text than the caller's (and, decoded, can put specials such as @ into
# an unquoted display name): refused, the caller sends the text itself.
_ENCODED_WORD = re.compile(r"=\?[^?]*\?[^?]*\?[^?]*\?=")
# RFC 5322 atext: a display name made only of such words needs no quoting.
_ATOM = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+")


class ComposeError(ValueError):
    """The draft breaks a rule; ``field`` names the input at fault."""

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(f"{field_name}: {message}")
        self.field = field_name


@dataclass(frozen=True)
class SendLimits:
    max_recipients: int
    max_attachments: int
    max_attachment_bytes: int
    max_attachments_total_bytes: int
    max_message_bytes: int

    @classmethod
    def of(cls, cfg: Config) -> SendLimits:
        return cls(max_recipients=cfg.mail.max_recipients,
                   max_attachments=cfg.send.max_attachments,
                   max_attachment_bytes=cfg.send.max_attachment_bytes,
                   max_attachments_total_bytes=cfg.send.max_attachments_total_bytes,
                   max_message_bytes=cfg.mail.max_message_bytes)


@dataclass(frozen=True)
class Mailbox:
    address: str  # addr-spec
    name: str = ""  # display name

    def __str__(self) -> str:
        return self.address


@dataclass(frozen=True)
class Attachment:
    filename: str
    content_type: str
    data: bytes

    def __repr__(self) -> str:  # contents never land in a log line
        return (f"Attachment(filename={self.filename!r}, content_type={self.content_type!r}, "
                f"{len(self.data)} bytes)")


@dataclass(frozen=True)
class Draft:
    sender: Mailbox
    to: tuple[Mailbox, ...]
    cc: tuple[Mailbox, ...] = ()
    bcc: tuple[Mailbox, ...] = ()  # envelope only: never written into the message
    subject: str = ""
    text: str = ""
    html: str = ""
    attachments: tuple[Attachment, ...] = ()
    conversation_id: str = ""
    in_reply_to: str = ""
    references: tuple[str, ...] = ()
    # Managed unsubscribe (core/outbound/unsubscribe.py): the one-click URL
    # for List-Unsubscribe and the footer; "" for none.
    unsubscribe_url: str = ""
    unsubscribe_mailto: str = ""  # its mailto: address beside the URL; "" for none

    def __repr__(self) -> str:  # bodies never land in a log line
        return (f"Draft(sender={self.sender.address!r}, to={len(self.to)}, cc={len(self.cc)}, "
                f"bcc={len(self.bcc)}, attachments={len(self.attachments)})")


@dataclass(frozen=True)
class Composed:
    raw: bytes  # CRLF line ends, as submitted
    email_message_id: str  # the Message-ID header's value, <...@agent's domain>
    draft: Draft = field(repr=False)
    subject: str = ""  # as written into the header (whitespace runs made one space)

    @property
    def recipients(self) -> list[str]:
        """The envelope recipients: To, Cc and Bcc, each address once."""
        return unique_addresses([*self.draft.to, *self.draft.cc, *self.draft.bcc])


def unique_addresses(boxes: list[Mailbox]) -> list[str]:
    """Each address once (compared without regard to case), first spelling kept."""
    seen: dict[str, str] = {}
    for box in boxes:
        seen.setdefault(box.address.lower(), box.address)
    return list(seen.values())


# -- reading caller input -------------------------------------------------------


def mailbox(value: object, field_name: str) -> Mailbox:
    """``addr@example.com`` or ``Name <addr@example.com>``."""
    if not isinstance(value, str):
        raise ComposeError(field_name, "each address must be a string")
    header_text(value, field_name, MAX_NAME + 256)
    found = _NAME_ADDR.fullmatch(value)
    name, address = (found.group(1), found.group(2)) if found else ("", value)
    address = address.strip()
    name = name.strip()
    if len(name) >= 2 and name[0] == name[-1] == '"':
        name = name[1:-1]
    if "<" in name or ">" in name:  # two addresses in one string, or worse
        raise ComposeError(field_name, f"one address per entry, not {value!r}")
    if '"' in name:  # a quoted part inside the name: readers drop or join its quotes
        raise ComposeError(field_name, f"a name may only be quoted as a whole, not {value!r}")
    checked_address(address, field_name)
    return Mailbox(address, name)


def checked_address(address: str, field_name: str) -> str:
    """A plain ASCII addr-spec that the email package writes back unchanged
    (no dots at the ends of the local part or two in a row, which it refuses)."""
    try:
        written = valid_email(address) and Address(addr_spec=address).addr_spec
    except (ValueError, IndexError):
        written = False
    if written != address:
        raise ComposeError(field_name, f"not an email address: {address!r}")
    return address


def header_text(value: str, field_name: str, max_length: int) -> str:
    """``value`` if it may go into a header field: no control character (CR
    and LF above all, also the other characters Python treats as line
    breaks), no lone surrogate, no encoded word, at most ``max_length``
    characters."""
    if len(value) > max_length:
        raise ComposeError(field_name, f"at most {max_length} characters")
    for char in value:
        if unicodedata.category(char) in ("Cc", "Cs") or char in "\u2028\u2029":
            raise ComposeError(field_name, f"control character U+{ord(char):04X} not allowed")
    if _ENCODED_WORD.search(value):
        raise ComposeError(field_name, "RFC 2047 encoded words (=?...?=) are not allowed; "
                                       "send the text itself")
    return value


def one_line(value: str) -> str:
    """Runs of whitespace made one space, none at the ends: folding then never
    leaves a line of blanks (Python 3.11's folder can, for trailing spaces)."""
    return " ".join(value.split())


def body_text(value: str, field_name: str, max_bytes: int) -> str:
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:
        raise ComposeError(field_name, "not valid Unicode text (lone surrogate)") from None
    if "\x00" in value:
        raise ComposeError(field_name, "NUL characters are not allowed")
    if size > max_bytes:
        raise ComposeError(field_name, f"{size} bytes; at most {max_bytes}")
    return value


def content_type(value: str, field_name: str) -> tuple[str, str]:
    """(maintype, subtype) of an attachment's content type; multipart and
    message types are refused (their bodies cannot be base64 data)."""
    found = _CONTENT_TYPE.fullmatch(value.strip() or DEFAULT_CONTENT_TYPE)
    if not found:
        raise ComposeError(field_name, f"not a content type such as application/pdf: {value!r}")
    maintype, subtype = found.group(1).lower(), found.group(2).lower()
    if maintype in ("multipart", "message"):
        raise ComposeError(field_name, f"{maintype}/* attachments are not supported; "
                                       "send them as application/octet-stream")
    return maintype, subtype


# -- checking a draft -----------------------------------------------------------


def check(draft: Draft, limits: SendLimits) -> None:
    """Every rule a draft must keep; raises ComposeError at the first broken one."""
    for name, boxes in (("from", (draft.sender,)), ("to", draft.to), ("cc", draft.cc),
                        ("bcc", draft.bcc)):
        for box in boxes:
            checked_address(box.address, name)
            header_text(box.name, name, MAX_NAME)
    if not draft.to:
        raise ComposeError("to", "at least one recipient is required")
    count = len(unique_addresses([*draft.to, *draft.cc, *draft.bcc]))
    if count > limits.max_recipients:
        raise ComposeError("to", f"{count} recipients (to, cc and bcc); at most "
                                 f"{limits.max_recipients}")
    header_text(draft.subject, "subject", MAX_SUBJECT)
    if draft.conversation_id and not (_CONVERSATION_ID.fullmatch(draft.conversation_id)
                                      and not _ENCODED_WORD.search(draft.conversation_id)):
        raise ComposeError("conversation_id", "printable ASCII without spaces or encoded "
                                              f"words, at most {MAX_CONVERSATION_ID} "
                                              "characters")
    for name, ids in (("in_reply_to", (draft.in_reply_to,) if draft.in_reply_to else ()),
                      ("references", draft.references)):
        for msg_id in ids:
            if not _MESSAGE_ID.fullmatch(msg_id) or _ENCODED_WORD.search(msg_id):
                raise ComposeError(name, f"not a message id: {msg_id!r}")
    if not draft.text and not draft.html:
        raise ComposeError("body", "body or html_body is required")
    body_text(draft.text, "body", limits.max_message_bytes)
    body_text(draft.html, "html_body", limits.max_message_bytes)
    _check_attachments(draft.attachments, limits)


def _check_attachments(attachments: tuple[Attachment, ...], limits: SendLimits) -> None:
    if len(attachments) > limits.max_attachments:
        raise ComposeError("attachments", f"{len(attachments)} files; at most "
                                          f"{limits.max_attachments}")
    total = 0
    for n, item in enumerate(attachments):
        where = f"attachments[{n}]"
        if not item.filename.strip():
            raise ComposeError(f"{where}.filename", "required")
        header_text(item.filename, f"{where}.filename", MAX_FILENAME)
        content_type(item.content_type, f"{where}.content_type")
        if len(item.data) > limits.max_attachment_bytes:
            raise ComposeError(f"{where}.data", f"{len(item.data)} bytes; at most "
                                                f"{limits.max_attachment_bytes} per file")
        total += len(item.data)
    if total > limits.max_attachments_total_bytes:
        raise ComposeError("attachments", f"{total} bytes in all; at most "
                                          f"{limits.max_attachments_total_bytes}")


# -- building -------------------------------------------------------------------


def _phrase(name: str) -> list[str]:
    """A display name as the words of an RFC 5322 phrase, a fold allowed
    between any two: atoms as they are; other printable ASCII as one
    quoted-string (a fold inside one is folding white space, so unfolding
    gives the same text back); anything else as RFC 2047 encoded words, in
    which no character of the name is structure to a reader."""
    words = name.split(" ")
    if all(_ATOM.fullmatch(word) for word in words):
        return words
    if name.isascii():  # printable: header_text refused control characters
        quoted = [w.replace("\\", "\\\\").replace('"', '\\"') for w in words]
        quoted[0] = '"' + quoted[0]
        quoted[-1] += '"'
        return quoted
    encoded: list[str] = []
    chunk = b""
    for char in name:
        data = char.encode("utf-8")
        if len(chunk) + len(data) > _EW_BYTES:
            encoded.append(chunk)
            chunk = b""
        chunk += data
    encoded.append(chunk)
    return ["=?utf-8?b?" + base64.b64encode(part).decode("ascii") + "?=" for part in encoded]


def folded(field_name: str, tokens: list[str]) -> str:
    """The value of the field ``field_name`` holding ``tokens`` separated by
    single spaces, folded at FOLD_AT where a space allows (never right after
    the colon: a reader would then see a leading blank), lines joined by CRLF
    and a space. A token longer than a line stays whole, on a line of its own.

    Written here rather than by the email package (see POLICY): its folder
    can split a quoted display name into bare words, and writes a message id
    longer than a line (many mailers' are) as RFC 2047 encoded words, which
    no reader may decode in a msg-id, so threading breaks."""
    lines = [[f"{field_name}:"]]
    width = len(field_name) + 1
    for token in tokens:
        if width + 1 + len(token) > FOLD_AT and len(lines[-1]) > (1 if len(lines) == 1 else 0):
            lines.append([])
            width = 0
        lines[-1].append(token)
        width += 1 + len(token)
    lines[0].pop(0)  # the field name: the email package writes it
    return "\r\n".join(" " + " ".join(line) for line in lines)[1:]


def address_field(field_name: str, boxes: list[Mailbox]) -> str:
    """The value of an address field (From, To, Cc) holding ``boxes``: what a
    reader parses out of it is exactly ``boxes``, however long or odd the
    names."""
    tokens: list[str] = []
    for n, box in enumerate(boxes):
        name = one_line(box.name)
        words = [*_phrase(name), f"<{box.address}>"] if name else [box.address]
        if n < len(boxes) - 1:
            words[-1] += ","
        tokens += words
    return folded(field_name, tokens)


def message_id_for(message_id: str, domain: str) -> str:
    """The RFC 5322 Message-ID of our message ``message_id`` sent from ``domain``."""
    return f"<{message_id}@{domain}>"


def trimmed_references(ids: list[str]) -> tuple[str, ...]:
    """The thread's first id and the newest ones, at most MAX_REFERENCES."""
    ids = list(dict.fromkeys(ids))
    if len(ids) <= MAX_REFERENCES:
        return tuple(ids)
    return (ids[0], *ids[-(MAX_REFERENCES - 1):])


def compose(draft: Draft, *, message_id: str, domain: str, limits: SendLimits,
            now: datetime | None = None, email_message_id: str = "") -> Composed:
    """The message as it is submitted. ``message_id`` (``msg_...``) and the
    sender's ``domain`` make its Message-ID, unless ``email_message_id`` gives
    the one to keep (a held message recomposed after edits: the recipients'
    threads and our row already know it)."""
    check(draft, limits)
    if email_message_id and not _MESSAGE_ID.fullmatch(email_message_id):
        raise ComposeError("message_id", f"not a message id: {email_message_id!r}")
    email_message_id = email_message_id or message_id_for(message_id, domain)
    subject = one_line(draft.subject)
    msg = EmailMessage(policy=POLICY)
    msg.set_raw("From", address_field("From", [draft.sender]))
    msg.set_raw("To", address_field("To", list(draft.to)))
    if draft.cc:
        msg.set_raw("Cc", address_field("Cc", list(draft.cc)))
    words = subject.split(" ") if subject else []
    if subject.isascii() and all(len(word) <= _LONGEST_WORD for word in words):
        # Folded here too: the email package moves a first word longer than
        # the line below a bare "Subject:", and a reader keeps that blank.
        msg.set_raw("Subject", folded("Subject", words))
    else:  # RFC 2047 words, which the package folds anywhere
        msg["Subject"] = subject
    msg["Date"] = format_datetime(now or datetime.now(UTC))
    # Checked above: ids and the conversation id hold no blank, so each is one token.
    msg.set_raw("Message-ID", folded("Message-ID", [email_message_id]))
    if draft.in_reply_to:
        msg.set_raw("In-Reply-To", folded("In-Reply-To", [draft.in_reply_to]))
    if draft.references:
        msg.set_raw("References", folded("References", list(draft.references)))
    if draft.conversation_id:
        msg.set_raw("X-E2A-Conversation-Id",
                    folded("X-E2A-Conversation-Id", [draft.conversation_id]))
    text, html = draft.text, draft.html
    if draft.unsubscribe_url:
        url = _unsubscribe_url(draft.unsubscribe_url)
        # RFC 8058: both fields, both signed (core/mta/dkimsign.SIGNED_HEADERS).
        targets = [f"<{url}>"]
        if draft.unsubscribe_mailto:
            mailto = checked_address(draft.unsubscribe_mailto, "unsubscribe")
            targets = [f"<{url}>,", f"<mailto:{mailto}>"]
        msg.set_raw("List-Unsubscribe", folded("List-Unsubscribe", targets))
        msg.set_raw("List-Unsubscribe-Post", "List-Unsubscribe=One-Click")
        text, html = _with_footer(text, html, url)
    if text and html:
        msg.set_content(text)
        msg.add_alternative(html, subtype="html")
    elif html:
        msg.set_content(html, subtype="html")
    else:
        msg.set_content(text)
    for item in draft.attachments:
        maintype, subtype = content_type(item.content_type, "attachments")
        msg.add_attachment(item.data, maintype=maintype, subtype=subtype,
                           filename=one_line(item.filename))
    raw = msg.as_bytes()
    most = limits.max_message_bytes - SIZE_HEADROOM
    if len(raw) > most:
        raise ComposeError("message", f"the composed message is {len(raw)} bytes; this "
                                      f"server takes at most {most} (mail.max_message_bytes)")
    return Composed(raw=raw, email_message_id=email_message_id, draft=draft, subject=subject)


_URL = re.compile(r"https?://[\x21-\x7e]{1,500}")
FOOTER = "To stop receiving these emails, unsubscribe:"


def _unsubscribe_url(url: str) -> str:
    """Our own URL, checked all the same: it goes into a header between < >."""
    if not _URL.fullmatch(url) or any(c in url for c in "<>\"\\"):
        raise ComposeError("unsubscribe", f"not a usable unsubscribe URL: {url!r}")
    return url


def _with_footer(text: str, html: str, url: str) -> tuple[str, str]:
    """The bodies with the unsubscribe footer (the HTML one escaped by hand:
    the URL is ours and plain, but the body's own markup stays as it was)."""
    if text or not html:
        text = f"{text.rstrip()}\n\n--\n{FOOTER} {url}\n"
    if html:
        html = (f'{html}\n<p style="font-size:small;color:#666">{FOOTER} '
                f'<a href="{url}">{url}</a></p>\n')
    return text, html
