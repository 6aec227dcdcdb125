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

import re
from dataclasses import dataclass
from email import policy
from email.header import decode_header, make_header
from email.message import EmailMessage, Message
from email.parser import BytesParser

# House (the restructuring branch) moves the MIME text reader to core/mail
# and text() with it; either location has the same functions, so this module
# merges with it.
try:
    from e2a.core.mail.headers import text  # type: ignore[import-not-found]
    from e2a.core.mail.mimetext import html_to_text  # type: ignore[import-not-found]
except ImportError:
    from e2a.core.inbound import text
    from e2a.core.mimetext import html_to_text

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
    size: int  # decoded bytes (the API's attachments[].size_bytes)


def parse(raw: bytes) -> EmailMessage:
    """The message as the scanners expect it (policy.default)."""
    msg = BytesParser(policy=policy.default).parsebytes(raw)
    assert isinstance(msg, EmailMessage)
    return msg


def _readable(data: bytes, charset: str = "utf-8") -> str | None:
    """The bytes as text when they are text: decodable (the declared charset,
    else UTF-8, else Latin-1) with almost no control characters."""
    if not data or b"\x00" in data[:4096]:
        return None
    decoded = _decode(data, charset)
    sample = decoded[:4096]
    controls = sum(1 for ch in sample if ord(ch) < 32 and ch not in "\t\r\n\f")
    return decoded if controls <= len(sample) // 100 else None


def _decode(data: bytes, charset: str) -> str:
    """As core/mimetext.part_text reads a lying or unknown charset: what
    UTF-8 can read of it."""
    try:
        return data.decode(charset or "utf-8")
    except (LookupError, UnicodeError, ValueError):  # idna and friends raise UnicodeError
        return data.decode("utf-8", "replace")


# The stdlib's structured header parsers (policy.default) cost about three
# quarters of a scan when every part's Content-Type, Content-Disposition and
# Content-Transfer-Encoding is asked for through them (measured with
# bench/protection). One pass over the raw fields with these patterns reads
# what the scan needs; RFC 2231 and RFC 2047 file names, the rare case, go
# to the stdlib.
_TYPE = re.compile(r"\s*([!#$%&'*+.^`|~\w-]+)\s*/\s*([!#$%&'*+.^`|~\w-]+)")
_CHARSET = re.compile(r";\s*charset\s*=\s*\"?([^\s\";]{1,40})", re.IGNORECASE)
_NAME = re.compile(r";\s*(?:file)?name\s*=\s*(?:\"([^\"]{0,500})\"|([^\s\";]{1,500}))",
                   re.IGNORECASE)
_DISPOSITION = re.compile(r"\s*([\w-]+)")


@dataclass(frozen=True)
class _Head:
    content_type: str
    charset: str
    filename: str
    disposition: str


def _head(part: Message) -> _Head:
    fields: dict[str, str] = {}
    for name, value in part.raw_items():
        fields.setdefault(name.lower(), str(value)[:4096])
    raw_type = fields.get("content-type", "")
    match = _TYPE.match(raw_type)
    ctype = f"{match.group(1)}/{match.group(2)}".lower() if match else "text/plain"
    charset = _CHARSET.search(raw_type)
    raw_disposition = fields.get("content-disposition", "")
    disposition = _DISPOSITION.match(raw_disposition)
    raw_names = raw_disposition + ";" + raw_type
    if "*=" in raw_names or "=?" in raw_names:
        filename = _filename(part)
    else:
        named = _NAME.search(raw_disposition) or _NAME.search(raw_type)
        filename = (named.group(1) or named.group(2) or "") if named else ""
    return _Head(ctype, charset.group(1).lower() if charset else "utf-8", filename,
                 disposition.group(1).lower() if disposition else "")


def _filename(part: Message) -> str:
    try:
        name = part.get_filename()
    except (TypeError, ValueError, LookupError):  # a broken RFC 2231 name
        return ""
    return str(name or "")


def _payload(part: Message) -> bytes:
    """The part's decoded bytes (base64 read leniently, quoted-printable,
    uuencode, or as carried). Not get_payload() without decode: on 8-bit
    content that one decodes with the declared charset, and an exotic
    charset (idna) raises there."""
    try:
        payload = part.get_payload(decode=True)
    except (ValueError, LookupError, UnicodeError):
        return b""
    return payload if isinstance(payload, bytes) else b""


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
        head = _head(part)
        if not head.filename and head.disposition != "attachment":
            continue
        found.append(Attachment(head.filename, head.content_type, len(_payload(part))))
    return found


def subject(msg: Message) -> str:
    raw = next((str(v) for k, v in msg.raw_items() if k.lower() == "subject"), "")
    if "=?" not in raw:
        return " ".join(raw.split())
    try:
        return str(make_header(decode_header(raw)))
    except (LookupError, ValueError, UnicodeError):
        return raw


def text_parts(msg: Message) -> list[Part]:
    """What there is to read in the message, bounded (see the module)."""
    found: list[Part] = []
    title = subject(msg)
    if title:
        found.append(Part("subject", title[:MAX_PART_CHARS]))
    for part in leaves(msg):
        head = _head(part)
        ctype, name = head.content_type, head.filename
        attached = bool(name) or head.disposition == "attachment"
        where = f"attachment {name or ctype}" if attached else "body"
        data = _payload(part)
        if ctype.startswith("text/"):
            content = text(_decode(data[: MAX_PART_CHARS * 4], head.charset))
        elif attached or ctype in _TEXTUAL_TYPES:
            readable = _readable(data[:MAX_ATTACHMENT_BYTES], head.charset)
            if readable is None:
                continue
            content = text(readable)
        else:
            continue
        content = content.replace("\r\n", "\n")[:MAX_PART_CHARS]
        if ctype == "text/html":
            found.append(Part("html" if not attached else where, html_to_text(content),
                              html=content, filename=name, content_type=ctype,
                              attachment=attached))
        else:
            found.append(Part(where, content, filename=name, content_type=ctype,
                              attachment=attached))
    return found
