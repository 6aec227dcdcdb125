"""Reading a message's header, for both directions: parsing (every field as
text, within fixed limits), addresses, ids, the thread references, the
content digest that recognises a retried delivery, and prepending a field
to the raw bytes.

The milter reads received mail with it, the content filter and release read
outgoing mail with it; nothing here knows about agents or the database."""

from __future__ import annotations

import functools
import hashlib
import logging
import re
from email import policy
from email.headerregistry import HeaderRegistry, UnstructuredHeader
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import getaddresses
from typing import Any

log = logging.getLogger("e2a.inbound")

_MSGID = re.compile(r"<[^<>\s]+>")
# Headers a relay adds or rewrites on the way: left out of the dedupe key so a
# retried delivery (new Received line, new queue id) is recognised as the same.
_TRANSIT_HEADERS = frozenset({"received", "return-path", "authentication-results",
                              "x-original-to", "delivered-to"})


# What the milter takes into its header parsers (the email package, dkimpy,
# the Authentication-Results reader), one limit for all of them; a message
# over it is refused for good (552 5.3.4). Real mail has a few dozen fields
# (Postfix bounces it after 50 Received); Postfix's header_size_limit
# (102400) truncates longer fields, so behind a stock Postfix no field
# reaches the byte limit.
MAX_HEADER_FIELDS = 1000
MAX_HEADER_BYTES = 131072  # one field, name and folds included

# Field values up to this many characters are parsed once and remembered
# (header_addresses, _TextFields): one inbound message has its From read
# five times (authentication, sender identities, screening, storing), each
# ~10 us in the email package's address parser (measured).
_REMEMBERED_VALUES = 2048


# Every field read as unstructured text (RFC 2047 words decoded): what we read
# is addresses (from the raw values), ids and the subject, never the MIME
# structure. The email package's structured parsers raise on some fields
# (Content-Type: text/plain; charset*=idna''abc) and take seconds on others
# (100 KB of RFC 2231 parameters); the parser asks for Content-Type itself.
# policy.default records defects instead of raising, so malformed input
# still yields the fields we can read.
class _TextFields(policy.EmailPolicy):
    """Each (name, value) read once: the inbound path asks for its Subject and
    Content-Type twice or more (autoreply's classification, storing), each
    ~15 us in the email package (measured). Header objects are immutable strings, so
    one serves every reader."""

    def header_fetch_parse(self, name: str, value: str) -> Any:
        if type(value) is str and len(value) <= _REMEMBERED_VALUES:
            return _fetched(self, name, value)
        return super().header_fetch_parse(name, value)


@functools.lru_cache(maxsize=1024)
def _fetched(fields: _TextFields, name: str, value: str) -> Any:
    return policy.EmailPolicy.header_fetch_parse(fields, name, value)


_FIELDS_AS_TEXT = _TextFields(header_factory=HeaderRegistry(
    default_class=UnstructuredHeader, use_default_map=False))


def parse(raw: bytes) -> EmailMessage:
    """The header section only: everything we read is there, and a body of
    malformed MIME (or 10 MiB of it) is then never parsed at all."""
    if raw.startswith(b"\r\n"):
        head = b""  # no header fields at all
    else:
        end = raw.find(b"\r\n\r\n")
        head = raw if end < 0 else raw[:end + 4]
    try:
        return BytesParser(policy=_FIELDS_AS_TEXT).parsebytes(head, headersonly=True)
    except Exception:  # no known input gets here; what cannot be read stays unread
        log.warning("header section unreadable: stored without its fields", exc_info=True)
        return EmailMessage(policy=_FIELDS_AS_TEXT)


def text(value: str) -> str:
    """A string PostgreSQL takes. The parser keeps 8-bit bytes as lone
    surrogates: UTF-8 among them is restored, other junk becomes U+FFFD; NUL,
    which text columns refuse, goes."""
    try:
        data = value.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # surrogates no byte stands for (a decoded word)
        data = value.encode("utf-8", "replace")
    return data.decode("utf-8", "replace").replace("\x00", "")


def _raw_values(msg: EmailMessage, name: str) -> list[str]:
    return [str(v) for k, v in msg.raw_items() if k.lower() == name.lower()]


def header_value(msg: EmailMessage, name: str) -> str:
    try:
        value = msg.get(name)
    except Exception:
        # A header too broken for the parser (it has raised more than ValueError
        # on odd input): fall back to the raw text.
        raw = _raw_values(msg, name)
        value = raw[0] if raw else None
    return text(" ".join(str(value).split())) if value is not None else ""


def header_addresses(msg: EmailMessage, name: str) -> list[str]:
    # The raw values: only the addr-specs are kept, and they need no decoding.
    values = tuple(_raw_values(msg, name))
    if sum(map(len, values)) > _REMEMBERED_VALUES:
        return list(_addr_specs.__wrapped__(values))
    return list(_addr_specs(values))


@functools.lru_cache(maxsize=1024)
def _addr_specs(values: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(text(addr) for _, addr in getaddresses(values) if "@" in addr)


def from_address(msg: EmailMessage) -> str:
    found = header_addresses(msg, "From")
    return found[0] if found else ""


def author_domains(msg: EmailMessage) -> tuple[str, ...]:
    """The distinct domains of the From addresses, for DMARC."""
    return tuple(dict.fromkeys(a.rpartition("@")[2].lower() for a in header_addresses(msg, "From")))


def message_ids(value: str) -> list[str]:
    return _MSGID.findall(value)


def content_digest(raw: bytes) -> bytes:
    """What stays the same when a client retries the message: everything but
    the headers relays add on the way."""
    head, _, body = raw.partition(b"\r\n\r\n")
    digest = hashlib.sha256()
    for line in _unfold(head):
        name = line.split(b":", 1)[0].strip().lower()
        if name.decode("ascii", "replace") not in _TRANSIT_HEADERS:
            digest.update(line + b"\n")
    digest.update(b"\0" + body)
    return digest.digest()


def _unfold(head: bytes) -> list[bytes]:
    # Lists joined once: growing a field by concatenation is quadratic in its
    # fold lines.
    fields: list[list[bytes]] = []
    for line in head.split(b"\r\n"):
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1].append(line)
        else:
            fields.append([line])
    return [b"\r\n".join(lines) for lines in fields]


def prepend_header(raw: bytes, name: str, value: str) -> bytes:
    return f"{name}: {value}\r\n".encode() + raw


def thread_refs(msg: EmailMessage) -> list[str]:
    """The Message-IDs a reply names (In-Reply-To, then References): the
    agents' lookup finds the conversation among them (agents_by_emails)."""
    return (message_ids(header_value(msg, "In-Reply-To"))
            + message_ids(header_value(msg, "References")))
