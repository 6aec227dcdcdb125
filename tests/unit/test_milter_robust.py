"""Input a milter on the open internet gets: every message is answered (stored,
or refused with a clear code), logged with the Postfix queue id, and the
milter goes on serving the next one."""

from __future__ import annotations

import logging
import secrets
from typing import Any

import Milter
import pytest
from mailworld import SENDER_NET_IP, SENDER_NET_IP6, eml, zones_served
from milterdriver import feed, installed

from e2a.core import accounts
from e2a.core.db import single_connection
from e2a.core.ids import new_id
from e2a.milter import handler, rebuild

AGENT = "robust@agents.test.example"


@pytest.fixture(scope="module")
def agent(cfg) -> dict[str, Any]:
    with single_connection(cfg) as conn:
        accounts.seed_shared_domain(conn, cfg)
        owner = accounts.create_user(conn, f"robust-{secrets.token_hex(4)}@owners.example")
        return accounts.register_agent(conn, cfg, owner["id"], slug="robust")


@pytest.fixture(scope="module", autouse=True)
def milter(cfg, tmp_path_factory):
    with zones_served(tmp_path_factory.mktemp("zones")), installed(cfg):
        yield


@pytest.fixture
def log(caplog) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.INFO, logger="e2a.milter")
    return caplog


def the_row(cfg, agent: dict[str, Any], message_id: str) -> dict[str, Any]:
    with single_connection(cfg) as conn:
        found = conn.execute("SELECT * FROM messages WHERE agent_id = %s"
                             " AND email_message_id = %s", (agent["id"], message_id)).fetchall()
    assert len(found) == 1
    return found[0]


def logged_with(log: pytest.LogCaptureFixture, queue_id: str) -> list[str]:
    return [r.getMessage() for r in log.records if getattr(r, "queue_id", None) == queue_id]


def still_serving(cfg, agent: dict[str, Any]) -> None:
    raw = (f"From: alice@good.example\r\nTo: {AGENT}\r\n"
           f"Message-ID: <after-{secrets.token_hex(4)}@fixtures.example>\r\n\r\nok\r\n").encode()
    assert feed(raw, "alice@good.example", [AGENT], client_ip=SENDER_NET_IP).code \
        == Milter.DISCARD


def test_eight_bit_junk_in_headers_body_and_envelope_is_stored(cfg, agent, log) -> None:
    raw = eml("eightbit_junk").replace(b"golden@", b"robust@")
    sender = "j\udcf6rg@good.example"  # how pymilter hands over a Latin-1 MAIL FROM
    out = feed(raw, sender, [AGENT], client_ip=SENDER_NET_IP, queue_id="Q8BIT")
    assert out.code == Milter.DISCARD
    row = the_row(cfg, agent, "<eightbit_junk@fixtures.example>")
    assert bytes(row["raw_message"]).endswith(raw)  # the bytes themselves, untouched
    # Text columns get UTF-8 back where it was UTF-8, U+FFFD for the rest.
    assert row["subject"] == "caf\ufffd \ufffd\ufffd junk and UTF-8 caf\u00e9"
    assert row["sender"] == "j\ufffdrg@good.example"
    assert row["envelope_sender"] == "j\ufffdrg@good.example"
    assert row["auth_headers"]["X-E2A-Auth-Sender"] == "j\ufffdrg@good.example"
    assert logged_with(log, "Q8BIT")
    still_serving(cfg, agent)


def test_malformed_mime_is_stored_as_it_came(cfg, agent, log) -> None:
    raw = eml("malformed_mime").replace(b"golden@", b"robust@")
    out = feed(raw, "alice@good.example", [AGENT], client_ip=SENDER_NET_IP, queue_id="QMIME")
    assert out.code == Milter.DISCARD
    row = the_row(cfg, agent, "<malformed_mime@fixtures.example>")
    assert bytes(row["raw_message"]).endswith(raw)
    assert (row["subject"], row["spf"], row["verified"]) == ("malformed MIME", "pass", True)
    assert logged_with(log, "QMIME")


def test_a_header_of_a_thousand_lines_is_stored(cfg, agent, log) -> None:
    raw = eml("long_header")  # signed for golden@; the DKIM result still holds
    out = feed(raw, "alice@good.example", [AGENT], client_ip=SENDER_NET_IP, queue_id="QLONG")
    assert out.code == Milter.DISCARD
    row = the_row(cfg, agent, "<long_header@fixtures.example>")
    assert bytes(row["raw_message"]).endswith(raw)
    assert len(row["to_recipients"]) == 401
    assert row["dkim"] == "pass"
    assert logged_with(log, "QLONG")


def test_the_null_sender_over_ipv6_is_stored(cfg, agent, log) -> None:
    raw = (f"From: MAILER-DAEMON@good.example\r\nTo: {AGENT}\r\n"
           "Message-ID: <bounce6@fixtures.example>\r\n\r\nbounce\r\n").encode()
    out = feed(raw, "", [AGENT], client_ip=SENDER_NET_IP6, helo="mx.good.example",
               queue_id="QNULL6")
    assert out.code == Milter.DISCARD
    row = the_row(cfg, agent, "<bounce6@fixtures.example>")
    # mx.good.example's SPF lists only an IPv4 address.
    assert (row["envelope_sender"], row["spf"], row["dmarc"]) == ("", "fail", "fail")
    assert b"spf=fail smtp.helo=mx.good.example" in bytes(row["raw_message"])
    assert logged_with(log, "QNULL6")


def fed_authenticating_with(monkeypatch, authenticate: Any, raw: bytes, sender: str,
                            recipients: list[str], **kwargs: Any) -> Any:
    """The milter's outcome for ``raw`` with ``authenticate`` in place of the
    mail-authentication checks."""
    with monkeypatch.context() as patch:
        patch.setattr(handler.mailauth, "authenticate", authenticate)
        return feed(raw, sender, recipients, **kwargs)


def test_a_failing_callback_answers_451_and_the_next_message_goes_through(
        cfg, agent, log, monkeypatch) -> None:
    def broken(name: bytes, value: bytes) -> int:
        raise RuntimeError("bug")

    with monkeypatch.context() as patch:
        patch.setattr(rebuild, "line_size", broken)
        out = feed(eml("spf_pass"), "alice@good.example", [AGENT], queue_id="QBUG")
    assert out.code == Milter.TEMPFAIL
    assert out.reply == ("451", "4.3.0", "Temporary failure, please try again later")
    assert logged_with(log, "QBUG") == ["milter header failed, answering 451"]
    still_serving(cfg, agent)


def test_an_error_at_end_of_data_answers_451_and_stores_nothing(
        cfg, agent, log, monkeypatch) -> None:
    raw = (f"From: alice@good.example\r\nTo: {AGENT}\r\n"
           "Message-ID: <eom-error@fixtures.example>\r\n\r\nx\r\n").encode()

    def broken(*args: object) -> None:
        raise RuntimeError("bug")

    out = fed_authenticating_with(monkeypatch, broken, raw, "alice@good.example", [AGENT],
                                  queue_id="QEOM")
    assert (out.code, out.reply[:2], out.deleted) == (Milter.TEMPFAIL, ("451", "4.3.0"), [])
    assert logged_with(log, "QEOM") == ["inbound failed, answering 451"]
    # The client's retry is then stored, once.
    assert feed(raw, "alice@good.example", [AGENT], queue_id="QEOM2").code == Milter.DISCARD
    assert the_row(cfg, agent, "<eom-error@fixtures.example>")["queue_id"] == "QEOM2"


def test_mail_to_a_made_up_reply_address_costs_no_authentication(cfg, agent, monkeypatch) -> None:
    # A reply address's MAC is checked before any DNS or DKIM work: junk
    # sent to made-up approve-... addresses must not make us do lookups.
    to = f"approve-{new_id('msg').removeprefix('msg_')}-{'0' * 20}@{AGENT.partition('@')[2]}"
    raw = (f"From: mallory@good.example\r\nTo: {to}\r\n"
           "Message-ID: <made-up-reply@fixtures.example>\r\n\r\napprove\r\n").encode()

    def expensive(*args: object) -> None:
        raise AssertionError("authenticated mail to an address nobody was given")

    out = fed_authenticating_with(monkeypatch, expensive, raw, "mallory@good.example", [to],
                                  client_ip=SENDER_NET_IP, queue_id="QMADEUP")
    assert out.code == Milter.DISCARD
