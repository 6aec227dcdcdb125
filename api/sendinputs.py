"""The JSON bodies of the sending endpoints (SendEmailRequest,
ReplyToMessageRequest, ForwardMessageRequest), read into core/compose values.

JSON null counts as absent, as some clients send every field. A wrong type
or value raises ComposeError naming the field; ``refusals()`` turns it into
a 400 with ``details.param``.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from e2a.api import errors
from e2a.core.outbound import compose
from e2a.core.outbound.compose import Attachment, ComposeError, Mailbox


@contextmanager
def refusals() -> Iterator[None]:
    try:
        yield
    except ComposeError as exc:
        raise errors.bad_request(str(exc), param=exc.field) from None


def text(body: dict[str, Any], name: str, where: str = "") -> str:
    value = body.get(name)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ComposeError(where + name, "must be a string")
    return value


def flag(body: dict[str, Any], name: str) -> bool:
    value = body.get(name)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise ComposeError(name, "must be true or false")
    return value


def mailboxes(body: dict[str, Any], name: str) -> tuple[Mailbox, ...]:
    """A list of addresses; a single string is taken as a list of one, as
    clients written for other mail APIs send it so."""
    value = body.get(name)
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        raise ComposeError(name, "must be an array of email addresses")
    return tuple(compose.mailbox(item, name) for item in value)


def _decoded_size_bound(max_bytes: int) -> int:
    """Characters of base64 (with some line breaks) that can still decode
    to at most ``max_bytes``: longer data is refused before it is decoded."""
    return (max_bytes + 2) // 3 * 4 + max_bytes // 16 + 4


def attachments(body: dict[str, Any], limits: compose.SendLimits) -> tuple[Attachment, ...]:
    value = body.get("attachments")
    if value is None:
        return ()
    if not isinstance(value, list):
        raise ComposeError("attachments", "must be an array of {filename, content_type, data}")
    if len(value) > limits.max_attachments:
        raise ComposeError("attachments", f"{len(value)} files; at most "
                                          f"{limits.max_attachments}")
    found = []
    for n, item in enumerate(value):
        where = f"attachments[{n}]"
        if not isinstance(item, dict):
            raise ComposeError(where, "must be an object {filename, content_type, data}")
        filename = text(item, "filename", f"{where}.")
        content_type = text(item, "content_type", f"{where}.")
        data = text(item, "data", f"{where}.")
        if len(data) > _decoded_size_bound(limits.max_attachment_bytes):
            raise ComposeError(f"{where}.data", f"more than {limits.max_attachment_bytes} "
                                                "bytes per file")
        try:
            decoded = base64.b64decode("".join(data.split()), validate=True)
        except (binascii.Error, ValueError):
            raise ComposeError(f"{where}.data", "not valid base64") from None
        found.append(Attachment(filename=filename, content_type=content_type, data=decoded))
    return tuple(found)
