"""The policy protocol's framing and limits, on byte streams."""

from __future__ import annotations

import io

import pytest

from e2a.policy import protocol


def read_all(data: bytes) -> list[dict[str, str] | None]:
    stream = io.BytesIO(data)
    out = []
    while True:
        request = protocol.read_request(stream)
        out.append(request)
        if request is None:
            return out


def test_requests_end_at_empty_lines_and_eof_ends_cleanly():
    got = read_all(b"request=smtpd_access_policy\nprotocol_state=RCPT\nrecipient=a@b.example\n\n"
                   b"protocol_state=DATA\nsender=\n\n")
    assert got == [
        {"request": "smtpd_access_policy", "protocol_state": "RCPT", "recipient": "a@b.example"},
        {"protocol_state": "DATA", "sender": ""},
        None,
    ]


def test_value_may_hold_equals_signs_and_crlf_is_tolerated():
    assert read_all(b"policy_context=a=b\r\n\r\n")[0] == {"policy_context": "a=b"}


@pytest.mark.parametrize("data, problem", [
    (b"recipient=a@b.example\n", "middle of a request"),
    (b"recipient=a@b", "middle of a line"),
    (b"no equals sign\n\n", "name=value"),
    (b"=value\n\n", "name=value"),
    (b"x=" + b"a" * protocol.MAX_LINE + b"\n\n", "longer than"),
    (b"".join(b"a%d=1\n" % i for i in range(protocol.MAX_ATTRIBUTES + 1)) + b"\n",
     "more than"),
])
def test_broken_requests_raise(data, problem):
    with pytest.raises(protocol.ProtocolError, match=problem):
        read_all(data)


def test_a_line_at_the_limit_is_fine():
    line = b"x=" + b"a" * (protocol.MAX_LINE - 3) + b"\n"
    assert len(line) == protocol.MAX_LINE
    assert read_all(line + b"\n")[0] == {"x": "a" * (protocol.MAX_LINE - 3)}


def test_encode_action():
    assert protocol.encode_action("DUNNO") == b"action=DUNNO\n\n"
    with pytest.raises(ValueError):
        protocol.encode_action("DUNNO\naction=OK")
