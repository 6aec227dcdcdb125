"""core/submit against a real SMTP server standing in for Postfix's submit service."""

from __future__ import annotations

import socket
import threading

import pytest
from submitsupport import QUEUE_ID, free_port

from e2a.core.mta import submit
from e2a.core.mta.submit import SubmitError

MESSAGE = (b"From: bot@agents.example.com\r\nTo: a@example.org\r\nSubject: hi\r\n\r\n"
           b".leading dot survives\r\nbody\r\n")


@pytest.fixture(autouse=True)
def clean(postfix):
    postfix.reset()


def send(address: str, recipients=("a@example.org", "b@example.org")) -> str:
    return submit.submit(address, "bounces+msg_x@agents.example.com", list(recipients), MESSAGE,
                         helo="mx.test.example", timeout=5)


def test_message_and_envelope_arrive_exactly(postfix):
    answer = send(postfix.address)
    assert answer == f"250 2.0.0 Ok: queued as {QUEUE_ID}"
    assert submit.queue_id(answer) == QUEUE_ID
    got = postfix.only()
    assert got.mail_from == "bounces+msg_x@agents.example.com"
    assert got.rcpt_tos == ["a@example.org", "b@example.org"]
    assert got.data == MESSAGE


def test_a_refused_recipient_means_nothing_is_queued(postfix):
    postfix.refuse_recipients = {"b@example.org"}
    with pytest.raises(SubmitError, match=r"recipient b@example.org refused: 554"):
        send(postfix.address)
    assert postfix.received == []


def test_refused_data_is_an_error(postfix):
    postfix.data_reply = "451 4.3.0 Error: queue file write error"
    with pytest.raises(SubmitError, match=r"message refused: 451 4\.3\.0"):
        send(postfix.address)


def test_nobody_listening_is_an_error():
    with pytest.raises(SubmitError, match="cannot reach Postfix"):
        send(f"127.0.0.1:{free_port()}")


def test_a_silent_server_times_out():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        port = server.getsockname()[1]
        accepted: list[socket.socket] = []
        thread = threading.Thread(target=lambda: accepted.append(server.accept()[0]))
        thread.start()
        try:
            with pytest.raises(SubmitError, match="cannot reach Postfix"):
                submit.submit(f"127.0.0.1:{port}", "", ["a@example.org"], MESSAGE,
                              helo="mx.test.example", timeout=0.5)
        finally:
            thread.join(5)
            for conn in accepted:
                conn.close()


def test_unix_addresses_and_empty_envelopes_are_refused(postfix):
    with pytest.raises(SubmitError, match="host:port"):
        submit.submit("unix:/run/x.sock", "", ["a@example.org"], MESSAGE, helo="h", timeout=1)
    with pytest.raises(SubmitError, match="no recipients"):
        send(postfix.address, recipients=())


def test_queue_id_absent():
    assert submit.queue_id("250 2.0.0 Ok") == ""
