"""`e2a serve filter` as the real subprocess."""

from __future__ import annotations

import smtplib
import socket

import pytest
from servicesupport import free_port, serve, terminate, write_config


def test_serve_filter_listens_answers_and_stops_on_sigterm(cfg, tmp_path):
    port, dead = free_port(), free_port()
    conf = write_config(cfg, tmp_path / "e2a.toml",
                        f'[filter]\nlisten = "127.0.0.1:{port}"\nreinject = "127.0.0.1:{dead}"\n')
    line = f"filter listening on 127.0.0.1:{port}, reinjecting to 127.0.0.1:{dead}"
    with serve("filter", conf, tmp_path / "filter.log", line) as proc:
        smtp = smtplib.SMTP("127.0.0.1", port, timeout=20)
        smtp.ehlo("postfix.test")
        smtp.mail("a@example.org")
        smtp.rcpt("b@example.org")
        # Nothing listens for reinjection: the mail must stay with Postfix.
        code, _ = smtp.data(b"Subject: hi\r\n\r\nbody\r\n")
        assert code == 451
        # An idle client connection must not hold up the stop.
        code, took = terminate(proc)
        smtp.close()
    assert code == 0
    assert took < 5
    with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", port)):
        pass
    log = (tmp_path / "filter.log").read_text()
    assert log.count("listening on") == 1
    assert "body" not in log  # message content never reaches the log
