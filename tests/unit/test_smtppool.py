"""Kept SMTP connections (core/mta/smtppool) for submit and reinjection: reused
while idle, replaced when the server closed them, never a message twice."""

from __future__ import annotations

import socket
import threading

import pytest

from e2a.core.mta import reinject, smtpclient, smtppool, submit
from e2a.core.mta.reinject import Transaction
from e2a.core.net.addresses import InetAddress

MESSAGE = b"From: a@example.org\r\nSubject: hi\r\n\r\nbody\r\n"


class FakeServer:
    """A minimal SMTP server. ``after_each``: what it does once a message is
    taken on a connection: "keep", "close" (drops it silently, as an smtpd
    exiting does) or "goodbye" (answers the next command 421 and closes)."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self.messages: list[tuple[str, bytes]] = []
        self.after_each = "keep"
        self.data_reply = b"250 2.0.0 Ok: queued as ABC123\r\n"
        self.xforwards: list[str] = []
        self.xclients: list[str] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        reader = conn.makefile("rb")
        conn.sendall(b"220 fake ESMTP\r\n")
        mail_from, goodbye = "", False
        with conn:
            while line := reader.readline():
                cmd = line.decode().strip()
                verb = cmd.split(" ", 1)[0].upper()
                if goodbye:
                    conn.sendall(b"421 4.4.2 fake Error: timeout exceeded\r\n")
                    return
                if verb == "EHLO":
                    conn.sendall(b"250-fake\r\n250-XFORWARD NAME ADDR IDENT\r\n"
                                 b"250-XCLIENT LOGIN\r\n250 SIZE 1000000\r\n")
                elif verb == "XCLIENT":
                    self.xclients.append(cmd)
                    conn.sendall(b"220 fake ESMTP\r\n")
                elif verb == "XFORWARD":
                    self.xforwards.append(cmd)
                    conn.sendall(b"250 2.0.0 Ok\r\n")
                elif verb == "MAIL":
                    mail_from = cmd
                    conn.sendall(b"250 2.1.0 Ok\r\n")
                elif verb == "RCPT":
                    conn.sendall(b"250 2.1.5 Ok\r\n")
                elif verb == "DATA":
                    conn.sendall(b"354 End data with <CR><LF>.<CR><LF>\r\n")
                    data = b""
                    while (chunk := reader.readline()) != b".\r\n":
                        data += chunk
                    if self.data_reply.startswith(b"250"):  # recorded before the client hears
                        self.messages.append((mail_from, data))
                    conn.sendall(self.data_reply)
                    if self.after_each == "close":
                        return
                    goodbye = self.after_each == "goodbye"
                elif verb == "QUIT":
                    conn.sendall(b"221 2.0.0 Bye\r\n")
                    return
                else:
                    conn.sendall(b"250 2.0.0 Ok\r\n")

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def server():
    fake = FakeServer()
    yield fake
    fake.close()


def _submit(server: FakeServer, n: int) -> str:
    return submit.submit(f"127.0.0.1:{server.port}", f"s{n}@example.org", ["r@example.org"],
                         MESSAGE, helo="test.example", timeout=5)


def _reinject(server: FakeServer, n: int, **xforward: str) -> str:
    txn = Transaction(mail_from=f"s{n}@example.org", recipients=["r@example.org"],
                      data=MESSAGE, xforward=xforward)
    return reinject.reinject(InetAddress("127.0.0.1", server.port), txn,
                             helo="test.example", timeout=5)


@pytest.mark.parametrize("send", [_submit, _reinject])
def test_one_connection_serves_many_messages(server, send):
    for n in range(5):
        assert "ABC123" in send(server, n)
    assert server.connections == 1
    assert [m.split(" ", 1)[1] for m, _ in server.messages] == \
        [f"FROM:<s{n}@example.org> SIZE={len(MESSAGE)}" for n in range(5)]


@pytest.mark.parametrize("send", [_submit, _reinject])
@pytest.mark.parametrize("how", ["close", "goodbye"])
def test_a_connection_the_server_closed_is_replaced_and_nothing_sent_twice(server, send, how):
    server.after_each = how
    for n in range(3):
        assert "ABC123" in send(server, n)
    assert len(server.messages) == 3  # each exactly once
    assert server.connections == 3


@pytest.mark.parametrize("send", [_submit, _reinject])
def test_a_refusal_closes_the_connection_and_is_not_retried(server, send):
    server.data_reply = b"451 4.3.0 Error: queue file write error\r\n"
    with pytest.raises((submit.SubmitError, reinject.ReinjectError)):
        send(server, 1)
    assert server.messages == []
    server.data_reply = b"250 2.0.0 Ok: queued as ABC123\r\n"
    assert "ABC123" in send(server, 2)
    assert server.connections == 2  # the refused one was not kept


def test_xforward_is_sent_for_every_message_on_a_kept_connection(server):
    _reinject(server, 1, IDENT="Q1")
    _reinject(server, 2, IDENT="Q2")
    assert server.connections == 1
    assert server.xforwards == ["XFORWARD IDENT=Q1", "XFORWARD IDENT=Q2"]


def test_idle_connections_too_old_are_not_used():
    opened = []

    class Dummy:
        sock = None

        def quit(self) -> None:
            opened.append("quit")

        def close(self) -> None:
            pass

    pool = smtppool.Pool(lambda: Dummy(), idle_seconds=0.0)  # type: ignore[arg-type,return-value]
    pool.run(lambda session: session.reused)
    assert pool.run(lambda session: session.reused) is False
    assert pool.opened == 2 and "quit" in opened


def test_a_failure_after_data_is_never_retried():
    calls = []

    class Dummy:
        sock = None

        def quit(self) -> None:
            pass

        def close(self) -> None:
            pass

    pool = smtppool.Pool(lambda: Dummy())  # type: ignore[arg-type,return-value]
    pool.run(lambda session: None)  # one idle connection now

    def transaction(session: smtppool.Session) -> None:
        calls.append(session.reused)
        session.data_started = True
        raise ConnectionResetError("gone mid-data")

    with pytest.raises(ConnectionResetError):
        pool.run(transaction)
    assert calls == [True]


def test_the_reinjection_login_is_given_once_per_kept_connection_and_renewed(server,
                                                                              monkeypatch):
    """XCLIENT LOGIN on a new connection, not again on the kept one until
    the login is LOGIN_REFRESH old (the service refuses old logins)."""
    address = InetAddress("127.0.0.1", server.port)
    txn = Transaction(mail_from="s@example.org", recipients=["r@example.org"], data=MESSAGE)
    for n in range(3):
        reinject.reinject(address, txn, helo="test.example", timeout=5, login=f"e2a.{n}.x")
    assert server.xclients == ["XCLIENT LOGIN=e2a.0.x"] and server.connections == 1
    monkeypatch.setattr(smtpclient, "LOGIN_REFRESH", -1.0)
    reinject.reinject(address, txn, helo="test.example", timeout=5, login="e2a.9.x")
    assert server.xclients == ["XCLIENT LOGIN=e2a.0.x", "XCLIENT LOGIN=e2a.9.x"]
    assert server.connections == 1 and len(server.messages) == 4
