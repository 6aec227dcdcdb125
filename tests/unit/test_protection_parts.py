"""What the scanners read of a message: decoded parts, names, caps."""

from __future__ import annotations

import base64

from e2a.core.protection import parts
from e2a.core.protection.parts import parse


def mime(*leaves: bytes) -> bytes:
    body = b"".join(b"--b\r\n" + leaf + b"\r\n" for leaf in leaves)
    return (b"From: a@example.com\r\nSubject: =?utf-8?q?caf=C3=A9_menu?=\r\nMIME-Version: 1.0"
            b"\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n" + body + b"--b--\r\n")


def test_decoding_and_names():
    msg = parse(mime(
        b"Content-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: "
        b"quoted-printable\r\n\r\nCaf=E9 au lait",
        b"Content-Type: text/html; charset=utf-8\r\n\r\n<p>Hello <b>world</b></p>",
        b"Content-Type: application/octet-stream\r\nContent-Disposition: attachment; "
        b"filename*=utf-8''r%C3%A9sum%C3%A9.env\r\nContent-Transfer-Encoding: base64\r\n\r\n" +
        base64.encodebytes(b"A=1\nB=2\n"),
        b"Content-Type: image/png; name=\"logo.png\"\r\nContent-Transfer-Encoding: base64\r\n"
        b"\r\n" + base64.encodebytes(b"\x89PNG\r\n\x1a\n\x00\x00"),
        b"Content-Type: text/plain; charset=no-such-charset\r\n\r\nplain words",
        b"Content-Type: text/plain; charset=idna\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
        b"\xff\xfe broken",
    ))
    found = parts.text_parts(msg)
    assert [(p.where, p.text) for p in found] == [
        ("subject", "caf\u00e9 menu"),
        ("body", "Caf\u00e9 au lait"),
        ("html", "Hello world"),
        ("attachment r\u00e9sum\u00e9.env", "A=1\nB=2\n"),
        ("body", "plain words"),
        ("body", "\ufffd\ufffd broken"),
    ]
    assert found[2].html == "<p>Hello <b>world</b></p>"
    assert [(a.filename, a.content_type) for a in parts.attachments(msg)] == [
        ("r\u00e9sum\u00e9.env", "application/octet-stream"), ("logo.png", "image/png")]


def test_a_forwarded_message_is_read_too():
    inner = b"From: x@example.com\r\nSubject: inner\r\n\r\nforwarded words\r\n"
    msg = parse(mime(b"Content-Type: text/plain\r\n\r\nsee below",
                     b"Content-Type: message/rfc822\r\n\r\n" + inner))
    assert [p.text for p in parts.text_parts(msg)][-1].startswith("forwarded words")


def test_broken_base64_is_read_leniently():
    msg = parse(b"From: a@example.com\r\nContent-Transfer-Encoding: base64\r\n\r\naGVsbG8gd29ybGQ"
                b"\r\n")
    assert [p.text for p in parts.text_parts(msg)] == ["hello world"]
