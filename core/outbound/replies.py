"""Replies and forwards of a received message: who gets them, their subject,
their threading headers and the quoted original.

Pure functions of the stored inbound row (core/store/messages.inbound_for_agent);
the drafts they help build are checked by core/compose like any other.
"""

from __future__ import annotations

import html
import re
from datetime import datetime
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import format_datetime
from typing import Any

from e2a.core.mail import headers, mimetext
from e2a.core.outbound import compose

FORWARD_SEPARATOR = "---------- Forwarded message ---------"
_REPLY_PREFIX = re.compile(r"\s*re\s*:", re.IGNORECASE)
_FORWARD_PREFIX = re.compile(r"\s*(fwd?|fw)\s*:", re.IGNORECASE)
# Message-IDs we write back into headers: printable ASCII only (see compose).
_SAFE_ID = re.compile(r"<[\x21-\x3b\x3d\x3f-\x7e]+>")

Row = dict[str, Any]


def reply_subject(subject: str) -> str:
    """``Re: <subject>``, without a second Re: when it has one already."""
    subject = compose.one_line(subject)
    if _REPLY_PREFIX.match(subject):
        return subject
    return f"Re: {subject}" if subject else "Re:"


def forward_subject(subject: str) -> str:
    subject = compose.one_line(subject)
    if _FORWARD_PREFIX.match(subject):
        return subject
    return f"Fwd: {subject}" if subject else "Fwd:"


def reply_recipients(inbound: Row, agent_email: str,
                     reply_all: bool) -> tuple[list[str], list[str]]:
    """(to, cc) of a reply: the Reply-To addresses, else the From address;
    with ``reply_all`` also everyone else in the original's To and Cc, but
    never the replying agent itself."""
    to = list(inbound["reply_to"] or []) or ([inbound["sender"]] if inbound["sender"] else [])
    if not reply_all:
        return to, []
    taken = {address.lower() for address in to} | {agent_email.lower()}
    cc: list[str] = []
    for address in [*(inbound["to_recipients"] or []), *(inbound["cc"] or [])]:
        if address.lower() not in taken:
            taken.add(address.lower())
            cc.append(address)
    return to, cc


def threading(inbound: Row) -> tuple[str, tuple[str, ...]]:
    """(In-Reply-To, References) of a reply: the original's Message-ID, and
    its References (or its In-Reply-To when it has none) followed by it."""
    parent = inbound["email_message_id"] or ""
    if not _SAFE_ID.fullmatch(parent):
        return "", ()
    earlier = list(inbound["references_ids"] or [])
    if not earlier and inbound["in_reply_to"]:
        earlier = [inbound["in_reply_to"]]
    chain = [msg_id for msg_id in earlier if _SAFE_ID.fullmatch(msg_id)] + [parent]
    return parent, compose.trimmed_references(chain)


# -- forwarding ---------------------------------------------------------------------


def _parsed(raw: bytes | None) -> EmailMessage | None:
    if not raw:
        return None
    try:
        parsed = BytesParser(policy=policy.default).parsebytes(bytes(raw))
    except Exception:  # a message too broken to parse is forwarded without its body
        return None
    return parsed if isinstance(parsed, EmailMessage) else None


def _shown_header(msg: EmailMessage | None, name: str) -> str:
    """A header of the original as a reader sees it (decoded, one line); ""
    when absent or unreadable."""
    return headers.header_value(msg, name) if msg is not None else ""


def original_text(raw: bytes | None) -> str:
    """Best effort: the original's text/plain body, else its text/html body as
    plain text, else ""."""
    msg = _parsed(raw)
    if msg is None:
        return ""
    try:
        return mimetext.readable_text(msg).strip("\n")
    except Exception:  # a body too broken to decode: forward the headers alone
        return ""


def forwarded_headers(inbound: Row) -> list[tuple[str, str]]:
    """The original's From, Date, Subject, To (and Cc) as the quoted block shows them."""
    msg = _parsed(inbound["raw_message"])
    created: datetime = inbound["created_at"]
    shown = [
        ("From", _shown_header(msg, "From") or inbound["sender"]),
        ("Date", _shown_header(msg, "Date") or format_datetime(created)),
        ("Subject", inbound["subject"]),
        ("To", ", ".join(inbound["to_recipients"] or [])),
    ]
    if inbound["cc"]:
        shown.append(("Cc", ", ".join(inbound["cc"])))
    return shown


def forward_text(comment: str, inbound: Row) -> str:
    """The caller's comment, then the Gmail-style block: the original's
    headers and its body."""
    block = [FORWARD_SEPARATOR, *(f"{name}: {value}" for name, value in
                                  forwarded_headers(inbound)), "", original_text(
                                      inbound["raw_message"])]
    quoted = "\n".join(block).rstrip("\n") + "\n"
    return f"{comment.rstrip()}\n\n{quoted}" if comment.strip() else quoted


def forward_html(comment_html: str, inbound: Row) -> str:
    """The caller's HTML comment, then the same block as forward_text, escaped."""
    lines = [FORWARD_SEPARATOR, *(f"{name}: {value}" for name, value in
                                  forwarded_headers(inbound))]
    head = "<br>\n".join(html.escape(line) for line in lines)
    body = html.escape(original_text(inbound["raw_message"])).replace("\n", "<br>\n")
    return (f"{comment_html}\n<br><br>\n<div class=\"e2a_forward\">{head}<br>\n<br>\n"
            f"{body}</div>\n")


def quoted_history(inbound: Row) -> tuple[str, str]:
    """What a reply with ``quote_history`` appends: "On <date>, <sender>
    wrote:" and the original's text, as ``>``-quoted plain text and as an
    HTML blockquote (escaped: the original is the sender's, not ours)."""
    msg = _parsed(inbound["raw_message"])
    created: datetime = inbound["created_at"]
    when = _shown_header(msg, "Date") or format_datetime(created)
    who = _shown_header(msg, "From") or inbound["sender"]
    intro = f"On {when}, {who} wrote:"
    body = original_text(inbound["raw_message"])
    quoted = "\n".join(f"> {line}" if line else ">" for line in body.split("\n"))
    text = f"{intro}\n{quoted}\n" if body else f"{intro}\n"
    escaped = html.escape(body).replace("\n", "<br>\n")
    markup = (f"<div class=\"e2a_quote\">{html.escape(intro)}<br>\n"
              f"<blockquote style=\"margin:0 0 0 .8ex;border-left:1px solid #ccc;"
              f"padding-left:1ex\">{escaped}</blockquote></div>\n")
    return text, markup
