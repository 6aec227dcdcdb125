"""What a stored message holds, for readers: its text and HTML bodies and
its attachments' metadata (index, decoded size, name, type, Content-ID)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from typing import Any

from e2a.core.mail.mimetext import part_text

log = logging.getLogger("e2a.mailparts")


@dataclass(frozen=True)
class Parts:
    text: str | None = None
    html: str | None = None
    attachments: list[dict[str, Any]] = field(default_factory=list)


def _attachment(index: int, part: EmailMessage) -> dict[str, Any]:
    payload = part.get_payload(decode=True) or b""
    meta: dict[str, Any] = {"index": index, "size_bytes": len(payload)}
    if part.get_filename():
        meta["filename"] = part.get_filename()
    meta["content_type"] = part.get_content_type()
    if part.get("Content-ID"):
        meta["content_id"] = str(part.get("Content-ID")).strip().strip("<>")
    return meta


def _attached(msg: EmailMessage) -> list[tuple[int, EmailMessage]]:
    """The attachments with the index /v1 gives them (the fetch key)."""
    return [(n, part) for n, part in enumerate(msg.iter_attachments())
            if isinstance(part, EmailMessage)]


def attachments(raw: bytes | None) -> list[tuple[dict[str, Any], bytes]]:
    """Every attachment of ``raw`` (numbered as ``split`` numbers them): its
    metadata and decoded bytes; none for unreadable MIME."""
    if not raw:
        return []
    try:
        msg = BytesParser(policy=policy.default).parsebytes(raw)
        assert isinstance(msg, EmailMessage)
        return [(_attachment(n, part), part.get_payload(decode=True) or b"")
                for n, part in _attached(msg)]
    except Exception:  # hostile MIME, as in split: no attachment to serve
        log.warning("message structure unreadable; no attachment served", exc_info=True)
        return []


def attachment(raw: bytes | None, index: int) -> tuple[dict[str, Any], bytes] | None:
    """Attachment ``index`` of ``raw``; None when there is no such attachment."""
    found = [a for a in attachments(raw) if a[0]["index"] == index]
    return found[0] if found else None


def split(raw: bytes | None) -> Parts:
    """The bodies and attachments of ``raw``; empty for no bytes. Never
    raises on malformed MIME: what can be read is returned."""
    if not raw:
        return Parts()
    try:
        msg = BytesParser(policy=policy.default).parsebytes(raw)
        assert isinstance(msg, EmailMessage)
        plain = msg.get_body(preferencelist=("plain",))
        html = msg.get_body(preferencelist=("html",))
        attachments = [_attachment(n, part) for n, part in _attached(msg)]
    except Exception:  # hostile MIME (tests/fixtures/mail/fuzz): the raw bytes still serve
        log.warning("message structure unreadable; served without parts", exc_info=True)
        return Parts()
    return Parts(text=part_text(plain) if plain is not None else None,
                 html=part_text(html) if html is not None else None,
                 attachments=attachments)
