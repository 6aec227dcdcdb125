"""The milter on the golden messages: each .eml goes in byte for byte as Postfix
hands it over, against real DNS zones and a real database; out come the rows,
their Authentication-Results, their X-E2A-Auth-* attestation and what the
milter asks of Postfix."""

from __future__ import annotations

import hashlib
import importlib.util
import re
import secrets
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.parser import BytesHeaderParser
from email.utils import getaddresses
from typing import Any

import Milter
import pytest
from mailworld import CASES, MAIL, SENDER_NET_IP, Case, eml, zones_served
from milterdriver import feed, installed, split_message

from e2a.core import accounts, attest, signing_secrets, verp
from e2a.core.db import single_connection
from e2a.core.ids import new_id
from e2a.core.store import messages as message_store
from e2a.milter import rebuild

AGENT = "golden@agents.test.example"
PEER = "golden-peer@agents.test.example"  # another owner's agent
FRIEND = "friend@elsewhere.example"  # not an agent: Postfix delivers to it
AUTHSERV_ID = "mx.test.example"


@dataclass(frozen=True)
class World:
    agent: dict[str, Any]
    peer: dict[str, Any]
    newest_secret: str  # the agent's owner's newest signing secret
    older_secret: str
    deployment_secret: str  # the peer's owner has none: this one signs


@pytest.fixture(scope="module")
def world(cfg) -> World:
    tag = secrets.token_hex(4)
    with single_connection(cfg) as conn:
        accounts.seed_shared_domain(conn, cfg)
        owner = accounts.create_user(conn, f"golden-{tag}@owners.example")
        other = accounts.create_user(conn, f"peer-{tag}@owners.example")
        agent = accounts.register_agent(conn, cfg, owner["id"], slug="golden")
        peer = accounts.register_agent(conn, cfg, other["id"], slug="golden-peer")
        older = signing_secrets.create(conn, owner["id"], "old").secret
        newest = signing_secrets.create(conn, owner["id"], "new").secret
    return World(agent, peer, newest, older, cfg.secrets.hmac_secret)


@pytest.fixture(scope="module", autouse=True)
def zones(tmp_path_factory):
    with zones_served(tmp_path_factory.mktemp("zones")) as server:
        yield server


@pytest.fixture(scope="module", autouse=True)
def milter(cfg, zones):
    with installed(cfg):
        yield


def rows(cfg, agent: dict[str, Any], message_id: str) -> list[dict[str, Any]]:
    with single_connection(cfg) as conn:
        return conn.execute(
            "SELECT * FROM messages WHERE agent_id = %s AND email_message_id = %s"
            " ORDER BY created_at", (agent["id"], message_id)).fetchall()


def the_row(cfg, agent: dict[str, Any], message_id: str) -> dict[str, Any]:
    found = rows(cfg, agent, message_id)
    assert len(found) == 1, f"{len(found)} rows for {message_id}"
    return found[0]


def our_header(results: str) -> bytes:
    folded = results.replace("; ", ";\r\n\t")
    return f"Authentication-Results: {AUTHSERV_ID};\r\n\t{folded}\r\n".encode()


def assert_attested(row: dict[str, Any], *, sender: str, verified: bool, domain_check: str,
                    entity_type: str, secret: str) -> None:
    headers = row["auth_headers"]
    raw = bytes(row["raw_message"])
    assert headers["X-E2A-Auth-Verified"] == ("true" if verified else "false")
    assert headers["X-E2A-Auth-Sender"] == sender
    assert headers["X-E2A-Auth-Entity-Type"] == entity_type
    assert headers["X-E2A-Auth-Domain-Check"] == domain_check
    assert "X-E2A-Auth-Delegation" not in headers
    assert headers["X-E2A-Auth-Message-Id"] == row["id"]
    assert headers["X-E2A-Auth-Body-Hash"] == hashlib.sha256(raw).hexdigest()
    stamp = headers["X-E2A-Auth-Timestamp"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", stamp)
    age = datetime.now(UTC) - datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    assert timedelta(seconds=-1) <= age < timedelta(minutes=1)
    assert attest.verify(headers, secret)


def first_author(raw: bytes) -> str:
    return getaddresses(BytesHeaderParser().parsebytes(raw).get_all("From"))[0][1]


GOLDEN = [c for c in CASES if c.fixture != "forged_ar"]  # forged_ar: its own tests below


@pytest.mark.parametrize("case", GOLDEN, ids=lambda c: c.id)
def test_golden_message_is_stored_as_sent_with_its_verdict(cfg, world, case: Case) -> None:
    raw = eml(case.fixture)
    out = feed(raw, case.mail_from, [AGENT], client_ip=case.client_ip, helo=case.helo,
               queue_id=f"Q{case.fixture}")
    assert out.code == Milter.DISCARD  # the agent was its only recipient
    assert out.deleted == [f"<{AGENT}>"]
    row = the_row(cfg, world.agent, f"<{case.fixture}@fixtures.example>")
    # Exactly the bytes the client sent, our Authentication-Results on top.
    assert bytes(row["raw_message"]) == our_header(case.results) + raw
    assert f"spf={row['spf']}; dkim={row['dkim']}; dmarc={row['dmarc']}" == case.domain_check
    assert row["verified"] is case.verified
    assert row["entity_type"] == "human"
    assert row["envelope_sender"] == case.mail_from
    assert row["queue_id"] == f"Q{case.fixture}"
    assert row["size_bytes"] == len(row["raw_message"])
    assert_attested(row, sender=first_author(raw), verified=case.verified,
                    domain_check=case.domain_check, entity_type="human",
                    secret=world.newest_secret)
    # Signed with the owner's newest secret only.
    assert not attest.verify(row["auth_headers"], world.older_secret)
    assert not attest.verify(row["auth_headers"], world.deployment_secret)


@pytest.mark.parametrize("name", sorted(p.stem for p in MAIL.glob("*.eml")))
def test_what_postfix_hands_over_rebuilds_to_the_exact_bytes(name: str) -> None:
    raw = eml(name)
    assert b"\n" not in raw.replace(b"\r\n", b""), "golden messages are CRLF throughout"
    headers, body = split_message(raw)  # folds joined by LF, as Postfix sends them
    assert rebuild.message(headers, body, leading_space=True) == raw
    assert sum(rebuild.line_size(n, v) for n, v in headers) + 2 + len(body) == len(raw)


def test_golden_fixtures_are_what_their_generator_writes(monkeypatch) -> None:
    spec = importlib.util.spec_from_file_location("golden_generate", MAIL / "generate.py")
    assert spec and spec.loader
    generate = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, generate)  # its dataclasses look it up
    spec.loader.exec_module(generate)
    assert {g.name for g in generate.GOLDEN} == {p.stem for p in MAIL.glob("*.eml")}
    for golden in generate.GOLDEN:
        assert generate.build(golden) == eml(golden.name), golden.name


# -- headers forged in our name ------------------------------------------------

FORGED = (
    b"Authentication-Results: mx.test.example; dkim=pass header.d=bank.example;\r\n"
    b"\tdmarc=pass header.from=bank.example\r\n",
    b"Authentication-Results: (we vouch) MX.Test.Example 1; spf=pass\r\n",
    b"X-E2A-Auth-Verified: true\r\n",
    b"X-E2A-Auth-Sender: ceo@bank.example\r\n",
)
FOREIGN = b"Authentication-Results: relay.other.example; spf=pass smtp.mailfrom=good.example\r\n"
# Highest occurrence first, so each deletion leaves the next one's index valid.
FORGED_DELETIONS = [("X-E2A-Auth-Sender", 1, None), ("X-E2A-Auth-Verified", 1, None),
                    ("Authentication-Results", 2, None), ("Authentication-Results", 1, None)]


def test_forged_results_are_not_stored_and_not_passed_on(cfg, world) -> None:
    raw = eml("forged_ar")
    case = next(c for c in CASES if c.fixture == "forged_ar")
    out = feed(raw, case.mail_from, [AGENT, FRIEND], client_ip=case.client_ip)
    assert out.code == Milter.CONTINUE  # the friend still gets it...
    assert out.deleted == [f"<{AGENT}>"]
    assert out.header_changes == FORGED_DELETIONS  # ...without the forged headers
    row = the_row(cfg, world.agent, "<forged_ar@fixtures.example>")
    expected = raw
    for line in FORGED:
        assert line in expected
        expected = expected.replace(line, b"")
    assert FOREIGN in expected  # another server's results are not ours to judge
    assert bytes(row["raw_message"]) == our_header(case.results) + expected
    assert row["verified"] is True
    assert_attested(row, sender="alice@good.example", verified=True,
                    domain_check=case.domain_check, entity_type="human",
                    secret=world.newest_secret)


def test_forged_results_are_removed_from_mail_for_others_only(cfg, world) -> None:
    out = feed(eml("forged_ar"), "alice@good.example", [FRIEND], client_ip=SENDER_NET_IP)
    assert (out.code, out.deleted) == (Milter.CONTINUE, [])
    assert out.header_changes == FORGED_DELETIONS


def test_mail_without_forged_headers_passes_untouched(cfg, world) -> None:
    out = feed(eml("spf_fail"), "alice@good.example", [FRIEND])
    assert (out.code, out.deleted, out.header_changes) == (Milter.CONTINUE, [], [])


# -- recipients ----------------------------------------------------------------

def test_mixed_recipients_store_for_the_agent_and_pass_the_rest(cfg, world) -> None:
    out = feed(eml("dkim_pass"), "alice@good.example", [FRIEND, PEER, "other@elsewhere.example"])
    assert out.code == Milter.CONTINUE
    assert out.deleted == [f"<{PEER}>"]
    assert out.header_changes == []  # the others get the message as it came
    row = the_row(cfg, world.peer, "<dkim_pass@fixtures.example>")
    assert (row["dkim"], row["verified"]) == ("pass", True)


def test_two_agents_of_two_owners_each_get_a_row_signed_for_their_owner(cfg, world) -> None:
    raw = eml("spf_pass").replace(b"<spf_pass@", b"<two_owners@")
    out = feed(raw, "alice@good.example", [AGENT, PEER], client_ip=SENDER_NET_IP)
    assert out.code == Milter.DISCARD
    assert out.deleted == [f"<{AGENT}>", f"<{PEER}>"]
    mine = the_row(cfg, world.agent, "<two_owners@fixtures.example>")
    theirs = the_row(cfg, world.peer, "<two_owners@fixtures.example>")
    assert mine["id"] != theirs["id"]
    assert mine["user_id"] != theirs["user_id"]
    assert bytes(mine["raw_message"]) == bytes(theirs["raw_message"])
    for row, secret, not_theirs in ((mine, world.newest_secret, world.deployment_secret),
                                    (theirs, world.deployment_secret, world.newest_secret)):
        assert_attested(row, sender="alice@good.example", verified=True,
                        domain_check="spf=pass; dkim=none; dmarc=pass", entity_type="human",
                        secret=secret)
        assert not attest.verify(row["auth_headers"], not_theirs)


def test_recipients_over_the_limit_are_told_to_come_back(cfg, world) -> None:
    limit = cfg.mail.max_recipients
    others = [f"r{i}@elsewhere.example" for i in range(limit)]
    raw = eml("spf_pass").replace(b"<spf_pass@", b"<many@")
    out = feed(raw, "alice@good.example", [AGENT, *others], client_ip=SENDER_NET_IP)
    assert out.rcpt_codes == [Milter.CONTINUE] * limit + [Milter.TEMPFAIL]
    assert out.reply == ("452", "4.5.3", "Too many recipients")
    assert out.code == Milter.CONTINUE  # the first fifty go ahead
    assert the_row(cfg, world.agent, "<many@fixtures.example>")["verified"] is True


# -- size ------------------------------------------------------------------------

def sized(total: int) -> bytes:
    head = (b"From: alice@good.example\r\nTo: " + AGENT.encode() +
            b"\r\nMessage-ID: <big-" + str(total).encode() + b"@fixtures.example>\r\n\r\n")
    line = b"x" * 998 + b"\r\n"
    body = (line * (total // len(line) + 1))[:total - len(head) - 2] + b"\r\n"
    assert len(head) + len(body) == total
    return head + body


def test_a_message_of_exactly_the_limit_is_taken(cfg, world) -> None:
    limit = cfg.mail.max_message_bytes
    raw = sized(limit)
    out = feed(raw, "alice@good.example", [AGENT], client_ip=SENDER_NET_IP)
    assert out.code == Milter.DISCARD
    row = the_row(cfg, world.agent, f"<big-{limit}@fixtures.example>")
    assert bytes(row["raw_message"]).endswith(raw)


def test_a_message_over_the_limit_is_refused_for_good(cfg, world, caplog) -> None:
    limit = cfg.mail.max_message_bytes
    caplog.set_level("INFO", logger="e2a.milter")
    out = feed(sized(limit + 1), "alice@good.example", [AGENT], queue_id="QBIG")
    assert out.code == Milter.REJECT
    assert out.reply == ("552", "5.3.4", "Message size exceeds fixed limit")
    assert rows(cfg, world.agent, f"<big-{limit + 1}@fixtures.example>") == []
    assert any(getattr(r, "queue_id", "") == "QBIG" for r in caplog.records)


def test_a_declared_size_over_the_limit_is_refused_at_mail_from(cfg, world) -> None:
    declared = f"SIZE={cfg.mail.max_message_bytes + 1}"
    out = feed(eml("spf_pass"), "alice@good.example", [AGENT], mail_params=(declared,))
    assert out.code == Milter.REJECT
    assert out.rcpt_codes == []  # refused before any recipient
    assert out.reply == ("552", "5.3.4", "Message size exceeds fixed limit")


# -- our own path and threading --------------------------------------------------

def message(message_id: str, extra: str = "") -> bytes:
    return (f"From: Peer <{PEER}>\r\nTo: {AGENT}\r\nSubject: thread\r\n"
            f"Message-ID: <{message_id}@fixtures.example>\r\n{extra}\r\nhello\r\n").encode()


@pytest.fixture(scope="module")
def sibling(cfg, world) -> dict[str, Any]:
    """Another agent of the golden agent's owner."""
    with single_connection(cfg) as conn:
        return accounts.register_agent(conn, cfg, world.agent["user_id"], slug="golden-sib")


def sent_row(cfg, agent: dict[str, Any], conversation_id: str) -> str:
    """An outbound row of ``agent`` in ``conversation_id``, as the API or
    the filter records one; the VERP return path it leaves with."""
    message_id = new_id("msg")
    return_path = verp.return_path(message_id, agent["domain"], verp.key(cfg))
    with single_connection(cfg) as conn:
        message_store.insert_outbound(conn, {
            "id": message_id, "user_id": agent["user_id"], "agent_id": agent["id"],
            "type": "send", "recipient": AGENT, "sender": agent["email"],
            "envelope_sender": return_path, "to_recipients": [AGENT], "cc": [], "bcc": [],
            "reply_to": [], "subject": "thread", "email_message_id": "", "in_reply_to": "",
            "references_ids": [], "conversation_id": conversation_id, "raw_message": b"",
            "size_bytes": 0, "status": "sent", "delivery_status": "queued", "queue_id": "",
            "dedupe_key": None, "method": "smtp"})
    return return_path


def test_only_our_own_path_sets_entity_type_and_conversation(cfg, world, sibling) -> None:
    claim = "X-E2A-Conversation-Id: conv_claimed\r\n"
    return_path = sent_row(cfg, sibling, "conv_sibling")
    raw = message("own-path", claim).replace(PEER.encode(), sibling["email"].encode())
    own = feed(raw, return_path, [AGENT], daemon_name=cfg.milter.own_daemon_name)
    outside = feed(message("outside", claim), PEER, [AGENT], daemon_name="smtpd")
    assert own.code == outside.code == Milter.DISCARD
    ours = the_row(cfg, world.agent, "<own-path@fixtures.example>")
    theirs = the_row(cfg, world.agent, "<outside@fixtures.example>")
    # The sender's own row names the conversation, never the header.
    assert (ours["entity_type"], ours["conversation_id"]) == ("agent", "conv_sibling")
    assert ours["auth_headers"]["X-E2A-Auth-Entity-Type"] == "agent"
    assert attest.verify(ours["auth_headers"], world.newest_secret)
    # The same headers from anywhere else: a human, and no conversation.
    assert (theirs["entity_type"], theirs["conversation_id"]) == ("human", None)
    assert theirs["auth_headers"]["X-E2A-Auth-Entity-Type"] == "human"


def test_our_own_path_alone_proves_no_agent(cfg, world) -> None:
    """Through our reinjection service but with no row of the agent its
    From names: a human's, whatever header it carries."""
    claim = "X-E2A-Conversation-Id: conv_claimed\r\n"
    out = feed(message("own-no-row", claim), PEER, [AGENT],
               daemon_name=cfg.milter.own_daemon_name)
    assert out.code == Milter.DISCARD
    row = the_row(cfg, world.agent, "<own-no-row@fixtures.example>")
    assert (row["entity_type"], row["conversation_id"]) == ("human", None)


def test_another_owners_agent_never_names_the_conversation(cfg, world) -> None:
    return_path = sent_row(cfg, world.peer, "conv_of_the_peer_owner")
    out = feed(message("cross-owner", "X-E2A-Conversation-Id: conv_claimed\r\n"),
               return_path, [AGENT], daemon_name=cfg.milter.own_daemon_name)
    assert out.code == Milter.DISCARD
    row = the_row(cfg, world.agent, "<cross-owner@fixtures.example>")
    # An agent's mail (its own row proves it), in no conversation of theirs.
    assert (row["entity_type"], row["conversation_id"]) == ("agent", None)


def test_replies_thread_by_the_agents_own_messages_only(cfg, world, sibling) -> None:
    feed(message("thread-start").replace(PEER.encode(), sibling["email"].encode()),
         sent_row(cfg, sibling, "conv_thread"), [AGENT], daemon_name=cfg.milter.own_daemon_name)
    reply = message("thread-reply", "In-Reply-To: <thread-start@fixtures.example>\r\n"
                                    "References: <elsewhere@fixtures.example>\r\n"
                                    " <thread-start@fixtures.example>\r\n")
    # The peer never had thread-start: for it, the reply starts nothing.
    assert feed(reply, "alice@good.example", [AGENT, PEER]).code == Milter.DISCARD
    assert the_row(cfg, world.agent, "<thread-reply@fixtures.example>")[
        "conversation_id"] == "conv_thread"
    assert the_row(cfg, world.peer, "<thread-reply@fixtures.example>")[
        "conversation_id"] is None
    by_references = message("thread-ref", "References: <thread-start@fixtures.example>\r\n")
    feed(by_references, "alice@good.example", [AGENT])
    assert the_row(cfg, world.agent, "<thread-ref@fixtures.example>")[
        "conversation_id"] == "conv_thread"
    unrelated = message("thread-none", "In-Reply-To: <never-seen@fixtures.example>\r\n")
    feed(unrelated, "alice@good.example", [AGENT])
    assert the_row(cfg, world.agent, "<thread-none@fixtures.example>")[
        "conversation_id"] is None


# -- agent senders from clients that are not this host ---------------------------

def test_agent_mail_leaving_from_a_remote_client_is_refused(cfg, world) -> None:
    """SASL submission or a host of mynetworks sending as an agent, to
    someone outside: refused during SMTP, not passed on unheld and unsigned."""
    for mail_from, author in ((world.agent["email"], "someone@elsewhere.example"),
                              ("someone@elsewhere.example", world.agent["email"].upper())):
        raw = (f"From: {author}\r\nTo: {FRIEND}\r\nSubject: remote\r\n"
               f"Message-ID: <remote-{secrets.token_hex(4)}@fixtures.example>\r\n\r\nhi\r\n"
               ).encode()
        out = feed(raw, mail_from, [FRIEND], client_ip=SENDER_NET_IP)
        assert out.code == Milter.REJECT, (mail_from, author)
        assert out.reply[:2] == ("550", "5.7.1")


def test_agent_mail_from_a_remote_client_to_agents_only_is_stored(cfg, world) -> None:
    """A mailing list handing an agent's post back to agents: inbound mail,
    stored (as a human's: nothing of ours proved the sender)."""
    raw = (f"From: {PEER}\r\nTo: {AGENT}\r\nSubject: list\r\n"
           "Message-ID: <remote-list@fixtures.example>\r\n\r\nhi\r\n").encode()
    out = feed(raw, "list@elsewhere.example", [AGENT], client_ip=SENDER_NET_IP)
    assert out.code == Milter.DISCARD
    assert the_row(cfg, world.agent, "<remote-list@fixtures.example>")["entity_type"] == "human"
