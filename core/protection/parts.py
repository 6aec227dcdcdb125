"""The text a scanner reads from a message, bounded.

Every leaf part that holds text is read: text/* bodies (decoded by the
project's MIME text reader), and attachments whose decoded bytes are
readable text whatever their declared type (a .env sent as
application/octet-stream is still a list of secrets). HTML keeps its markup
beside its text so the hidden-text rules can see styles.

Bounds, so one message costs at most a few milliseconds whatever its size:
``MAX_PART_CHARS`` of text per part (the rest is not scanned: a finding in
the first 256 Ki characters is what a reader of an agent's mail sees first,
and a secret pasted past that is a known gap, stated in the report),
``MAX_PARTS`` parts per message, ``MAX_ATTACHMENT_BYTES`` of a binary
attachment looked at to decide whether it is text.
"""

from __future__ import annotations

from dataclasses import dataclass
from email import policy
from email.message import EmailMessage, Message
from email.parser import BytesParser

# House (the restructuring branch) moves the MIME text reader to core/mail;
# either location is the same two functions, so this module merges with it.
try:
    from e2a.core.mail.mimetext import html_to_text, part_text  # type: ignore[import-not-found]
except ImportError:
    from e2a.core.mimetext import html_to_text, part_text

MAX_PART_CHARS = 256 * 1024
MAX_PARTS = 64
MAX_ATTACHMENT_BYTES = 1024 * 1024
# Types whose parts are read as text though not text/*.
_TEXTUAL_TYPES = frozenset({"application/json", "application/xml", "application/x-sh",
                            "application/x-yaml", "application/yaml", "application/toml",
                            "application/x-pem-file", "application/javascript",
                            "application/sql", "application/x-env"})


@dataclass(frozen=True)
class Part:
    where: str  # "body", "html", "attachment NAME", "subject"
    text: str  # plain text, at most MAX_PART_CHARS
    html: str = ""  # the markup of a text/html part, at most MAX_PART_CHARS
    filename: str = ""
    content_type: str = ""
    attachment: bool = False


@dataclass(frozen=True)
class Attachment:
    filename: str
    content_type: str
    size: int  # bytes of the (encoded) payload as carried


def parse(raw: bytes) -> EmailMessage:
    """The message as the scanners expect it (policy.default)."""
    msg = BytesParser(policy=policy.default).parsebytes(raw)
    assert isinstance(msg, EmailMessage)
    return msg


def _readable(data: bytes) -> str | None:
    """The bytes as text when they are text: valid UTF-8 (or Latin-1 without
    control bytes) with almost no control characters."""
    if not data or b"\x00" in data[:4096]:
        return None
    try:
        decoded = data.decode("utf-8")
    except UnicodeDecodeError:
        decoded = data.decode("latin-1")
    sample = decoded[:4096]
    controls = sum(1 for ch in sample if ord(ch) < 32 and ch not in "\t\r\n\f")
    return decoded if controls <= len(sample) // 100 else None


def _filename(part: Message) -> str:
    try:
        name = part.get_filename()
    except (TypeError, ValueError, LookupError):  # a broken RFC 2231 name
        return ""
    return str(name or "")


def leaves(msg: Message) -> list[Message]:
    out: list[Message] = []
    for part in msg.walk():
        if part.is_multipart():
            continue
        out.append(part)
        if len(out) >= MAX_PARTS:
            break
    return out


def attachments(msg: Message) -> list[Attachment]:
    found: list[Attachment] = []
    for part in leaves(msg):
        name = _filename(part)
        if not name and part.get_content_disposition() != "attachment":
            continue
        payload = part.get_payload()
        size = len(payload) if isinstance(payload, str | bytes) else 0
        found.append(Attachment(name, part.get_content_type(), size))
    return found


def text_parts(msg: Message) -> list[Part]:
    """What there is to read in the message, bounded (see the module)."""
    found: list[Part] = []
    subject = str(msg.get("subject", "") or "")
    if subject:
        found.append(Part("subject", subject[:MAX_PART_CHARS]))
    for part in leaves(msg):
        ctype = part.get_content_type()
        name = _filename(part)
        attached = bool(name) or part.get_content_disposition() == "attachment"
        where = f"attachment {name or ctype}" if attached else "body"
        if part.get_content_maintype() == "text":
            try:
                content = part_text(part)
            except Exception:  # noqa: S112 - a part too broken to decode is not read, not fatal
                continue
        elif attached or ctype in _TEXTUAL_TYPES:
            payload = part.get_payload(decode=True)
            if not isinstance(payload, bytes):
                continue
            readable = _readable(payload[:MAX_ATTACHMENT_BYTES])
            if readable is None:
                continue
            content = readable.replace("\r\n", "\n")
        else:
            continue
        content = content[:MAX_PART_CHARS]
        if part.get_content_subtype() == "html" and part.get_content_maintype() == "text":
            found.append(Part("html" if not attached else where, html_to_text(content),
                              html=content, filename=name, content_type=ctype,
                              attachment=attached))
        else:
            found.append(Part(where, content, filename=name, content_type=ctype,
                              attachment=attached))
    return found
