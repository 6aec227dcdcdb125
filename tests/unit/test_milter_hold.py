"""The milter's share of the hold: mail that an agent under review (HITL)
sends from this host to another agent is NOT stored at its first pass; it
goes on to the content filter, which holds it. Stored there and then, it
would reach the recipient agent before anyone approved it. Once released it
comes back through our reinjection service and is stored like any mail."""

from __future__ import annotations

import secrets

import Milter
import pytest
from mailworld import zones_served
from milterdriver import feed, installed

from e2a.core import accounts
from e2a.core.db import single_connection


@pytest.fixture(scope="module", autouse=True)
def zones(tmp_path_factory):
    with zones_served(tmp_path_factory.mktemp("zones")) as server:
        yield server


@pytest.fixture(scope="module")
def agents(cfg) -> dict[str, dict]:
    """held: an agent whose mail waits for a person; free: one whose mail
    does not; desk: the recipient, another owner's agent."""
    tag = secrets.token_hex(3)
    with single_connection(cfg) as conn:
        accounts.seed_shared_domain(conn, cfg)
        sender_owner = accounts.create_user(conn, f"hold-owner-{tag}@example.net")
        desk_owner = accounts.create_user(conn, f"desk-owner-{tag}@example.net")
        found = {
            "held": accounts.register_agent(conn, cfg, sender_owner["id"], slug=f"held-{tag}"),
            "free": accounts.register_agent(conn, cfg, sender_owner["id"], slug=f"free-{tag}"),
            "desk": accounts.register_agent(conn, cfg, desk_owner["id"], slug=f"desk-{tag}"),
        }
        conn.execute("UPDATE agents SET hitl_enabled = true WHERE id = %s",
                     (found["held"]["id"],))
    return found


@pytest.fixture(autouse=True)
def milter(cfg, agents):
    with installed(cfg):
        yield


def message(sender: str, rcpt: str, tag: str) -> bytes:
    return (f"From: {sender}\r\nTo: {rcpt}\r\nSubject: {tag}\r\n"
            f"Message-ID: <{tag}@agents.test.example>\r\n\r\nFor review?\r\n").encode()


def stored_for(cfg, agent: dict, tag: str) -> int:
    with single_connection(cfg) as conn:
        return conn.execute("SELECT count(*) AS n FROM messages WHERE agent_id = %s "
                            "AND subject = %s", (agent["id"], tag)).fetchone()["n"]


def send(cfg, agents, sender: str, *, envelope: str = "", client_ip: str = "127.0.0.1",
         daemon_name: str = "smtpd") -> tuple[Milter.Base, int]:
    tag = f"hold-{secrets.token_hex(6)}"
    desk = agents["desk"]["email"]
    out = feed(message(sender, desk, tag), envelope or sender, [desk], client_ip=client_ip,
               daemon_name=daemon_name, queue_id="HOLD" + tag[-6:].upper())
    return out, stored_for(cfg, agents["desk"], tag)


def test_a_held_agents_local_mail_to_an_agent_is_left_for_the_filter(cfg, agents):
    out, stored = send(cfg, agents, agents["held"]["email"])
    assert out.code == Milter.CONTINUE  # on to the queue and the content filter
    assert out.deleted == []  # the recipient stays Postfix's, for now
    assert stored == 0


def test_over_ipv6_loopback_too(cfg, agents):
    out, stored = send(cfg, agents, agents["held"]["email"], client_ip="::1")
    assert (out.code, out.deleted, stored) == (Milter.CONTINUE, [], 0)


def test_the_held_agent_in_the_from_header_alone_is_enough(cfg, agents):
    out, stored = send(cfg, agents, agents["held"]["email"],
                       envelope=f"bounces-{secrets.token_hex(3)}@elsewhere.example")
    assert (out.code, out.deleted, stored) == (Milter.CONTINUE, [], 0)


def test_an_agent_not_under_review_is_delivered_at_once(cfg, agents):
    out, stored = send(cfg, agents, agents["free"]["email"])
    assert out.code == Milter.DISCARD
    assert out.deleted == [f"<{agents['desk']['email']}>"]
    assert stored == 1


def test_released_mail_back_through_our_reinjection_is_delivered(cfg, agents):
    out, stored = send(cfg, agents, agents["held"]["email"],
                       daemon_name=cfg.milter.own_daemon_name)
    assert (out.code, stored) == (Milter.DISCARD, 1)


def test_mail_from_outside_naming_a_held_agent_is_not_held(cfg, agents):
    """Only mail submitted on this host can be the agent's own; from the
    internet it is inbound mail like any other (checked by SPF and DMARC)."""
    out, stored = send(cfg, agents, agents["held"]["email"], client_ip="192.0.2.7")
    assert (out.code, stored) == (Milter.DISCARD, 1)
