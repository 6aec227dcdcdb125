"""The content filter between a real SMTP client (standing in for Postfix's
e2a-filter transport) and a real aiosmtpd server standing in for Postfix's
reinjection service, all on loopback sockets: mail of no agent of ours (the
host's own) passes on exactly as it came."""

from __future__ import annotations

import smtplib
import threading

import pytest
from filtersupport import (
    QUEUED_AS,
    Reinjection,
    ReinjectionController,
    RunningFilter,
    send,
)
from servicesupport import free_port

from e2a.policy.filter import GREETING_NAME

# Every shape of line that SMTP transparency, 8-bit transport or a careless
# rewrite could change: leading dots, a lone dot, trailing blanks, tabs,
# folded headers, UTF-8 and Latin-1 bytes, empty lines, a 998-octet line.
MESSAGE = (
    b"From: Agent <bot@relay.example>\r\n"
    b"To: someone@example.org,\r\n\t other@example.org\r\n"
    b"Subject: =?utf-8?q?gr=C3=BC=C3=9Fe?=   \r\n"
    b"X-Odd:  two  spaces \t\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Content-Transfer-Encoding: 8bit\r\n"
    b"\r\n"
    b".leading dot\r\n"
    b"..two leading dots\r\n"
    b".\r\n"
    b" . \r\n"
    b"Gr\xc3\xbc\xc3\x9fe, na\xefve latin-1 byte\r\n"
    b"\r\n"
    b"\r\n"
    + b"x" * 998 + b"\r\n"
    b"trailing blanks   \r\n"
    b"-- \r\n"
    b"end\r\n"
)




def test_message_passes_byte_identical_with_envelope_and_xforward(running, reinjection):
    handler, _ = reinjection
    with running.client() as smtp:
        # Never the host's own name: Postfix would call that a mail loop.
        assert smtp.ehlo_resp.split(b"\n")[0].decode() == GREETING_NAME != "filter.test"
        assert "xforward" in smtp.esmtp_features
        assert smtp.docmd("XFORWARD", "NAME=client.example ADDR=192.0.2.7 PORT=41000 "
                                      "PROTO=ESMTP HELO=client.example")[0] == 250
        assert smtp.docmd("XFORWARD", "IDENT=3F1C2A SOURCE=REMOTE")[0] == 250
        code, reply = send(smtp, "bot@relay.example",
                           ["someone@example.org", "other@example.org", "Third@Example.NET"],
                           MESSAGE)
    assert code == 250
    assert f"queued as {QUEUED_AS}" in reply  # the reinjection's queue id, for Postfix's log
    [got] = handler.messages
    assert got.data == MESSAGE
    assert got.mail_from == "bot@relay.example"
    assert got.rcpt_tos == ["someone@example.org", "other@example.org", "Third@Example.NET"]
    assert "BODY=8BITMIME" in got.mail_options
    assert f"SIZE={len(MESSAGE)}" in got.mail_options
    forwarded = " ".join(handler.xforward).split()
    assert sorted(forwarded) == sorted(["NAME=client.example", "ADDR=192.0.2.7", "PORT=41000",
                                        "PROTO=ESMTP", "HELO=client.example", "IDENT=3F1C2A",
                                        "SOURCE=REMOTE"])


def test_null_sender_and_several_messages_on_one_connection(running, reinjection):
    handler, _ = reinjection
    with running.client() as smtp:
        smtp.docmd("XFORWARD", "IDENT=FIRST")
        assert send(smtp, "", ["postmaster@example.org"], b"Subject: bounce\r\n\r\nx\r\n")[0] == 250
        # XFORWARD state ends with the message: the second one carries none.
        assert send(smtp, "a@example.org", ["b@example.org"], b"Subject: 2\r\n\r\ny\r\n")[0] == 250
    first, second = handler.messages
    assert first.mail_from == "<>"
    assert first.rcpt_tos == ["postmaster@example.org"]
    assert second.mail_from == "a@example.org"
    assert handler.xforward == ["IDENT=FIRST"]


def test_reinjection_down_is_451_and_the_filter_keeps_serving(cfg, pool, reinjection):
    handler = Reinjection()
    port = free_port()  # nothing listens here yet
    running = RunningFilter(cfg, pool, port)
    try:
        with running.client() as smtp:
            code, reply = send(smtp, "a@example.org", ["b@example.org"], MESSAGE)
        assert code == 451
        assert reply.startswith("4.3.0")
        # Postfix retries later; by then the reinjection service is back.
        controller = ReinjectionController(handler, hostname="127.0.0.1", port=port)
        controller.start()
        try:
            with running.client() as smtp:
                assert send(smtp, "a@example.org", ["b@example.org"], MESSAGE)[0] == 250
        finally:
            controller.stop()
        assert [m.data for m in handler.messages] == [MESSAGE]
    finally:
        running.stop()


@pytest.mark.parametrize(("reply", "answer"), [
    ("452 4.3.1 Insufficient system storage", "451 4.3.0"),
    # Refused for good: Postfix must bounce it now, with the reason.
    ("554 5.7.1 Rejected for the test", "554 5.7.1"),
    ("552 5.3.4 Message size exceeds fixed limit", "552 5.3.4"),
    ("550 no enhanced code", "550 5.3.0"),
])
def test_reinjection_refusing_the_data(running, reinjection, reply, answer):
    handler, _ = reinjection
    handler.data_reply = reply
    with running.client() as smtp:
        code, text = send(smtp, "a@example.org", ["b@example.org"], MESSAGE)
    assert f"{code} {text}".startswith(answer), text
    if code != 451:
        assert reply.partition(" ")[2].split(" ", 1)[-1] in text


def test_one_refused_recipient_tempfails_the_whole_message(running, reinjection):
    handler, _ = reinjection
    handler.refuse_rcpt = {"refused@example.org"}
    with running.client() as smtp:
        code, _ = send(smtp, "a@example.org",
                       ["ok@example.org", "refused@example.org"], MESSAGE)
    assert code == 451
    assert handler.messages == []  # nothing was delivered to the accepted subset


def test_oversize_message_is_552_5_3_4(cfg, pool, reinjection):
    handler, port = reinjection
    running = RunningFilter(cfg, pool, port, max_bytes=2000)
    try:
        with running.client() as smtp:
            assert smtp.esmtp_features["size"] == "2000"
            code, reply = smtp.docmd("MAIL", "FROM:<a@example.org> SIZE=5000")
            assert (code, reply[:5]) == (552, b"5.3.4")
            code, reply = send(smtp, "a@example.org", ["b@example.org"],
                               b"Subject: big\r\n\r\n" + (b"y" * 78 + b"\r\n") * 40, params="")
            assert (code, reply[:5]) == (552, "5.3.4")
            # The session goes on after a refusal.
            assert send(smtp, "a@example.org", ["b@example.org"], b"Subject: small\r\n\r\nz\r\n",
                        params="")[0] == 250
        assert len(handler.messages) == 1
    finally:
        running.stop()


def test_bad_xforward_is_refused_and_not_inside_a_transaction(running):
    with running.client() as smtp:
        assert smtp.docmd("XFORWARD", "COLOR=blue")[0] == 501
        assert smtp.docmd("XFORWARD", "NAME=a=b")[0] == 501
        assert smtp.docmd("MAIL", "FROM:<a@example.org>")[0] == 250
        assert smtp.docmd("XFORWARD", "NAME=late.example")[0] == 503


def test_smtputf8_envelope_is_passed_on(running, reinjection):
    handler, _ = reinjection
    with running.client() as smtp:
        assert "smtputf8" in smtp.esmtp_features
        smtp.command_encoding = "utf-8"
        code, _ = send(smtp, "bøt@relay.example", ["empfänger@example.org"],
                       MESSAGE, params=" BODY=8BITMIME SMTPUTF8")
    assert code == 250
    [got] = handler.messages
    assert (got.mail_from, got.rcpt_tos) == ("bøt@relay.example", ["empfänger@example.org"])
    assert "SMTPUTF8" in got.mail_options
    assert got.data == MESSAGE


def test_stop_lets_a_message_in_flight_finish(cfg, pool, reinjection):
    handler, port = reinjection
    handler.delay = 1.0
    running = RunningFilter(cfg, pool, port)
    result: list[int] = []

    def postfix() -> None:
        with running.client() as smtp:
            result.append(send(smtp, "a@example.org", ["b@example.org"], MESSAGE)[0])

    thread = threading.Thread(target=postfix)
    thread.start()
    assert handler.data_started.wait(10)
    running.stop()  # while the reinjection is still answering
    thread.join(10)
    assert result == [250]
    assert [m.data for m in handler.messages] == [MESSAGE]
    with pytest.raises(ConnectionRefusedError):
        smtplib.SMTP("127.0.0.1", running.port, timeout=5)
