"""The text a person reads in a MIME message: one body part decoded, and the
message's readable text (text/plain, else text/html reduced to plain text).

Shared by whatever shows or quotes a message's words: forwards quote the
original, held messages show their draft, approval replies are read for
their first line. Every result is a string PostgreSQL takes (core/mail/headers.text)
with the line ends a person writes (LF, not the wire's CRLF).
"""

from __future__ import annotations

import re
from email.message import EmailMessage, Message
from html.parser import HTMLParser

from e2a.core.mail.headers import text


def part_text(part: Message) -> str:
    """A text part's content; "" for one that is not text. An unknown or
    lying charset keeps what UTF-8 can read of it."""
    try:
        content = part.get_content()  # type: ignore[attr-defined]
    except (LookupError, UnicodeError, AssertionError):
        payload = part.get_payload(decode=True)
        content = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else ""
    if not isinstance(content, str):
        return ""
    return text(content).replace("\r\n", "\n")


def readable_text(msg: EmailMessage) -> str:
    """The message's text/plain body, else its text/html body as plain text,
    else "". Raises on a body too broken to decode; callers decide what that
    means for them."""
    part = msg.get_body(preferencelist=("plain", "html"))
    if part is None:
        return ""
    content = part_text(part)
    return html_to_text(content) if part.get_content_subtype() == "html" else content


class _TextOfHtml(HTMLParser):
    _BREAKS = frozenset({"br", "p", "div", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6",
                         "blockquote", "pre", "table", "ul", "ol"})
    _HIDDEN = frozenset({"script", "style", "head", "title"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.hidden = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._HIDDEN:
            self.hidden += 1
        elif tag in self._BREAKS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self._HIDDEN:
            self.hidden = max(0, self.hidden - 1)
        elif tag in self._BREAKS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self.hidden:
            self.parts.append(data)


def html_to_text(markup: str) -> str:
    parser = _TextOfHtml()
    parser.feed(markup)
    parser.close()
    lines = (" ".join(line.split()) for line in "".join(parser.parts).split("\n"))
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip("\n")
