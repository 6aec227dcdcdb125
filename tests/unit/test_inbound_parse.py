"""The header section the milter reads: every field as text, whatever the
MIME parameters say, in time linear in its size."""

from __future__ import annotations

import time
from email.parser import BytesParser

import pytest

from e2a.core.mail import headers


def test_a_parameter_in_a_charset_no_codec_decodes_is_just_text() -> None:
    msg = headers.parse(b"From: a@b.example\r\nSubject: =?utf-8?q?caf=C3=A9?=\r\n"
                        b"Content-Type: text/plain; charset*=idna''abc\r\n\r\nbody\r\n")
    assert headers.header_value(msg, "Content-Type") == "text/plain; charset*=idna''abc"
    assert headers.header_value(msg, "Subject") == "caf\u00e9"
    assert headers.from_address(msg) == "a@b.example"


@pytest.mark.usefixtures("own_heap")
def test_a_hundred_kilobytes_of_parameters_parse_quickly() -> None:
    value = b" ".join([b"text/plain; a*0*=x''y;"] * 4300)
    started = time.thread_time()
    msg = headers.parse(b"From: a@b.example\r\nContent-Type: " + value + b"\r\n\r\n")
    headers.header_value(msg, "Content-Type")
    assert time.thread_time() - started < 0.5


def test_a_header_section_the_parser_trips_over_is_read_as_none(monkeypatch) -> None:
    def trips(self: BytesParser, data: bytes, headersonly: bool = False) -> None:
        raise UnicodeError("a parser bug")

    monkeypatch.setattr(BytesParser, "parsebytes", trips)
    msg = headers.parse(b"From: a@b.example\r\n\r\n")
    assert headers.from_address(msg) == "" and list(msg.keys()) == []
