"""The policy protocol's framing and limits, on bytes as they arrive."""

from __future__ import annotations

import time

import pytest

from e2a.policy import protocol

ASK = b"request=smtpd_access_policy\n"


def read_all(data: bytes, piece: int = 0) -> list[dict[str, str]]:
    reader = protocol.RequestReader()
    if not piece:
        return reader.feed(data)
    return [r for i in range(0, len(data), piece) for r in reader.feed(data[i:i + piece])]


def test_requests_end_at_empty_lines_however_the_bytes_arrive():
    data = (ASK + b"protocol_state=RCPT\nrecipient=a@b.example\n\n" +
            ASK + b"protocol_state=DATA\nsender=\n\n")
    want = [
        {"request": "smtpd_access_policy", "protocol_state": "RCPT", "recipient": "a@b.example"},
        {"request": "smtpd_access_policy", "protocol_state": "DATA", "sender": ""},
    ]
    for piece in (0, 1, 2, 7):
        assert read_all(data, piece) == want


def test_value_may_hold_equals_signs_and_crlf_is_tolerated():
    assert read_all(ASK + b"policy_context=a=b\r\n\r\n")[0]["policy_context"] == "a=b"


def test_bytes_that_are_not_utf8_are_read_as_replacement_characters():
    assert read_all(ASK + b"recipient=caf\xe9@b.example\n\n")[0]["recipient"] \
        == "caf\ufffd@b.example"


def test_an_unfinished_request_is_mid_request():
    reader = protocol.RequestReader()
    assert reader.feed(ASK + b"recipient=a@b") == []
    assert reader.mid_request()
    assert reader.feed(b"\n\n") and not reader.mid_request()


@pytest.mark.parametrize("data, problem", [
    (b"no equals sign\n\n", "name=value"),
    (b"=value\n\n", "name=value"),
    (b"x=" + b"a" * protocol.MAX_LINE + b"\n\n", "longer than"),
    (b"x=" + b"a" * (protocol.MAX_LINE * 3), "longer than"),  # no newline at all
    (b"".join(b"a%d=1\n" % i for i in range(protocol.MAX_ATTRIBUTES + 1)) + b"\n",
     "more than"),
    (ASK + b"recipient=a\x00b@agents.example\n\n", "NUL"),
    (b"protocol_state=RCPT\nrecipient=a@b.example\n\n", "without request="),
    (b"request=something_else\n\n", "without request="),
    (b"\n", "without request="),
])
def test_what_postfix_cannot_have_sent_is_a_protocol_error(data, problem):
    with pytest.raises(protocol.ProtocolError, match=problem):
        read_all(data)


def test_a_line_at_the_limit_is_fine():
    line = b"x=" + b"a" * (protocol.MAX_LINE - 3) + b"\n"
    assert len(line) == protocol.MAX_LINE
    assert read_all(ASK + line + b"\n")[0]["x"] == "a" * (protocol.MAX_LINE - 3)


@pytest.mark.usefixtures("own_heap")
def test_a_request_trickling_in_byte_by_byte_costs_linear_time():
    data = ASK + b"".join(b"a%d=%s\n" % (i, b"v" * 4000) for i in range(60)) + b"\n"
    started = time.thread_time()
    assert len(read_all(data, 1)) == 1
    assert time.thread_time() - started < 2.0


def test_encode_action():
    assert protocol.encode_action("DUNNO") == b"action=DUNNO\n\n"
    with pytest.raises(ValueError):
        protocol.encode_action("DUNNO\naction=OK")
