"""The policy daemon over a real unix socket, deciding against real PostgreSQL."""

from __future__ import annotations

import contextlib
import grp
import os
import secrets
import shutil
import stat
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from policysupport import Client, running_policy
from servicesupport import write_config

from e2a.core import config
from e2a.core.accounts import registration as accounts
from e2a.core.db import open_pool, single_connection
from e2a.core.ids import new_id
from e2a.core.mta import verp
from e2a.core.net import listen
from e2a.core.net.addresses import UnixAddress
from e2a.core.outbound import replyaddress
from e2a.policy.checks import RcptLimits
from e2a.policy.daemon import DB_UNAVAILABLE, PolicyServer


@pytest.fixture(scope="module")
def sockdir() -> Iterator[Path]:
    # Short: unix socket paths are limited to 107 bytes.
    path = Path(tempfile.mkdtemp(prefix="e2a-pol-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def agents(cfg: config.Config) -> SimpleNamespace:
    tag = secrets.token_hex(4)
    with single_connection(cfg) as conn:
        accounts.seed_shared_domain(conn, cfg)
        user = accounts.create_user(conn, f"owner-{tag}@example.org")
        shared = accounts.register_agent(conn, cfg, user["id"], slug=f"bot-{tag}")
        # A custom domain that was verified when the agent was made and has
        # since lost it. No store function makes user domains yet: plain SQL.
        domain = f"d{tag}.example.net"
        conn.execute(
            """INSERT INTO domains (id, user_id, domain, verification_token, verified)
               VALUES (%s, %s, %s, 'token', true)""", (new_id("dom"), user["id"], domain))
        custom = accounts.register_agent(conn, cfg, user["id"], email=f"helper@{domain}")
        conn.execute("UPDATE domains SET verified = false WHERE domain = %s", (domain,))
    return SimpleNamespace(shared=shared["email"], custom=custom["email"], tag=tag,
                           domain=cfg.mail.shared_domain)


@pytest.fixture(scope="module")
def policy(cfg: config.Config, sockdir: Path) -> Iterator[str]:
    with running_policy(cfg, sockdir / "policy.sock", RcptLimits()) as path:
        yield path


@pytest.fixture
def client(policy: str) -> Iterator[Client]:
    c = Client(policy)
    yield c
    c.close()


def test_unknown_agent_on_shared_domain_is_550_5_1_1(client, agents):
    # Postfix turns this into "550 5.1.1 <rcpt>: Recipient address rejected:
    # no such agent" (the system tests see that through real Postfix).
    assert client.rcpt(f"nobody-{agents.tag}@{agents.domain}") == "550 5.1.1 no such agent"


def test_existing_agent_is_dunno_in_any_case(client, agents):
    assert client.rcpt(agents.shared) == "DUNNO"
    assert client.rcpt(agents.shared.upper()) == "DUNNO"


def test_every_spelling_of_an_address_is_the_same_agent(client, agents):
    """Quoted local part, trailing dot, case: the milter and the filter
    canonicalize the same way (addresses.mailbox), so an unknown agent is
    refused whatever its spelling, and a known one is itself."""
    local, _, domain = agents.shared.partition("@")
    for spelling in (f'"{local}"@{domain}', f"{local}@{domain}.", f'"{local}"@{domain.upper()}.'):
        assert client.rcpt(spelling) == "DUNNO", spelling
    for spelling in (f'"nobody-{agents.tag}"@{domain}', f"nobody-{agents.tag}@{domain}."):
        assert client.rcpt(spelling) == "550 5.1.1 no such agent", spelling


def test_bounce_address_on_our_domain_is_dunno(client, agents):
    # A DSN for our outbound mail: the milter consumes it, nobody is refused.
    return_path = verp.return_path(new_id("msg"), agents.domain, b"k" * 32)
    assert client.rcpt(return_path) == "DUNNO"
    assert client.rcpt(return_path.upper()) == "DUNNO"
    # Only a real return path: anything else there is an unknown agent.
    assert client.rcpt(f"bounces+msg_123@{agents.domain}") == "550 5.1.1 no such agent"


def test_reply_address_on_our_domain_is_dunno(client, agents):
    # A reply to an owner's notification (approve by reply): the milter takes it.
    address = replyaddress.build(new_id("msg"), b"s" * 32, agents.domain)
    assert client.rcpt(address) == "DUNNO"
    local = address.partition("@")[0]
    assert client.rcpt(f"{local[:-1]}@{agents.domain}") == "550 5.1.1 no such agent"


def test_mailto_unsubscribe_address_on_our_domain_is_dunno(client, agents):
    # List-Unsubscribe's mailto: (core/outbound/unsubscribe.py): the milter takes it.
    token = "a2" * 26
    assert client.rcpt(f"unsub-{token}@{agents.domain}") == "DUNNO"
    assert client.rcpt(f"UNSUB-{token.upper()}@{agents.domain}") == "DUNNO"
    assert client.rcpt(f"unsub-{token[:-1]}@{agents.domain}") == "550 5.1.1 no such agent"


def test_foreign_domain_is_dunno(client):
    assert client.rcpt("someone@elsewhere.example.com") == "DUNNO"


def test_agent_on_unverified_domain_is_550_5_7_1(client, agents):
    assert client.rcpt(agents.custom) == "550 5.7.1 the agent's domain is not verified"


def test_unknown_address_on_unverified_domain_is_still_no_such_agent(client, agents):
    rcpt = "ghost@" + agents.custom.partition("@")[2]
    assert client.rcpt(rcpt).startswith("550 5.1.1 ")


@pytest.mark.parametrize("attrs", [
    {"protocol_state": "MAIL"},
    {"protocol_state": "DATA", "recipient": "nobody@agents.test.example"},
    {"protocol_state": "RCPT", "recipient": ""},
    {"protocol_state": "RCPT", "recipient": "postmaster"},
    {"protocol_state": "RCPT"},
])
def test_other_states_and_non_addresses_are_dunno(client, attrs):
    assert client.ask(**attrs) == "DUNNO"


def test_many_requests_on_one_connection(client, agents):
    unknown = f"nobody-{agents.tag}@{agents.domain}"
    answers = [client.rcpt(r) for r in
               (agents.shared, unknown, "x@elsewhere.example", agents.custom, agents.shared)]
    assert answers[0] == answers[2] == answers[4] == "DUNNO"
    assert answers[1].startswith("550 5.1.1 ")
    assert answers[3].startswith("550 5.7.1 ")


def test_concurrent_connections(policy, agents):
    unknown = f"nobody-{agents.tag}@{agents.domain}"
    failures: list[str] = []

    def smtpd(n: int) -> None:
        c = Client(policy)
        try:
            for i in range(10):
                rcpt, want = (agents.shared, "DUNNO") if (n + i) % 2 else (unknown, "550 5.1.1 ")
                got = c.rcpt(rcpt)
                if not got.startswith(want):
                    failures.append(f"{rcpt}: {got}")
        except Exception as exc:
            failures.append(repr(exc))
        finally:
            c.close()

    threads = [threading.Thread(target=smtpd, args=(n,)) for n in range(25)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert failures == []




def test_socket_lets_postfix_connect(policy):
    st = os.stat(policy)
    assert stat.S_ISSOCK(st.st_mode)
    mode = stat.S_IMODE(st.st_mode)
    if mode == 0o660:
        assert os.geteuid() == 0 and st.st_gid == grp.getgrnam("postfix").gr_gid
    else:
        assert mode == 0o666


def test_database_down_answers_451_within_the_timeout(cfg, sockdir, tmp_path):
    """An answer, not a hang-up: Postfix would ask a server that hung up once
    more, and the SMTP client would wait twice the timeout for its 4xx."""
    bad = config.load(write_config(
        cfg, tmp_path / "down.toml",
        database_url=f"postgresql://e2a@/e2a?host={tmp_path}/nowhere&port=1"), env={})
    pool = open_pool(bad, name="test-policy-down")
    listener = listen.bind(UnixAddress(str(sockdir / "down.sock")))
    server = PolicyServer(listener, pool, RcptLimits(), db_timeout=0.5)
    server.start()
    try:
        c = Client(str(sockdir / "down.sock"))
        try:
            started = time.monotonic()
            assert c.rcpt("bot@agents.test.example") == DB_UNAVAILABLE
            assert DB_UNAVAILABLE.startswith("451 4.")
            # db_timeout, and what a loaded machine adds
            assert time.monotonic() - started < 0.5 + 1.5
            # The connection stays usable, as Postfix expects.
            assert c.ask(protocol_state="MAIL") == "DUNNO"
        finally:
            c.close()
        # What needs no database is still answered, and the daemon lives on.
        c = Client(str(sockdir / "down.sock"))
        try:
            assert c.ask(protocol_state="MAIL") == "DUNNO"
        finally:
            c.close()
    finally:
        server.stop()
        pool.close()
    assert not (sockdir / "down.sock").exists()


# -- malformed requests and many connections ----------------------------------------

def still_answering(path: str, agents: SimpleNamespace) -> None:
    good = Client(path)
    try:
        assert good.rcpt(agents.shared) == "DUNNO"
    finally:
        good.close()


def no_tracebacks(caplog) -> bool:
    return not [r for r in caplog.records if r.exc_info]


def test_a_size_in_other_digits_is_answered_as_no_declared_size(client, agents, caplog):
    assert client.ask(protocol_state="RCPT", recipient=agents.shared, size="\u00b2") == "DUNNO"
    assert client.ask(protocol_state="RCPT", recipient=agents.shared, size="\u0663") == "DUNNO"
    assert no_tracebacks(caplog)


def test_bytes_that_are_not_utf8_are_answered(client, agents):
    client.send(b"request=smtpd_access_policy\nprotocol_state=RCPT\n"
                b"recipient=caf\xe9-%s@%s\n\n" % (agents.tag.encode(), agents.domain.encode()))
    assert client.rfile.readline() == b"action=550 5.1.1 no such agent\n"
    assert client.rfile.readline() == b"\n"
    client.send(b"request=smtpd_access_policy\nprotocol_state=RCPT\n"
                b"recipient=someone@\xff\xfe.example\n\n")
    assert client.rfile.readline() == b"action=DUNNO\n"
    assert client.rfile.readline() == b"\n"


@pytest.mark.parametrize("garbage", [
    b"this is not an attribute\n\n",
    b"x=" + b"A" * 100_000 + b"\n\n",
    b"".join(b"attr%d=v\n" % i for i in range(1000)) + b"\n",
    b"request=smtpd_access_policy\nprotocol_state=RCPT\nrecipient=a\x00b@agents.test.example\n\n",
    b"protocol_state=RCPT\nrecipient=nobody@agents.test.example\n\n",  # no request=
    b"\n",
    b"request=smtpd_access_policy\nrecipient=" + b"a" * 10_000,  # a line without end
    b"request=smtpd_access_policy\n" + b"x=y\n" * 100_000 + b"\n",
])
def test_what_postfix_cannot_send_drops_that_client_only(policy, agents, garbage, caplog):
    """Logged as a warning and disconnected, as SMTPD_POLICY_README asks."""
    caplog.set_level("WARNING", logger="e2a.policy")
    bad = Client(policy)
    try:
        # The server may hang up before it has read everything.
        with contextlib.suppress(OSError):
            bad.send(garbage)
        assert bad.closed_without_answer()
    finally:
        bad.close()
    assert any("client dropped" in r.getMessage() for r in caplog.records)
    assert no_tracebacks(caplog)
    still_answering(policy, agents)


@pytest.fixture
def small_policy(cfg, sockdir, monkeypatch) -> Iterator[str]:
    from e2a.policy import daemon
    monkeypatch.setattr(daemon, "MAX_CONNECTIONS", 20)
    monkeypatch.setattr(daemon, "IDLE_TIMEOUT", 1.5)
    pool = open_pool(cfg, name="test-policy-small", wait=True, autocommit=True)
    path = sockdir / "small.sock"
    server = PolicyServer(listen.bind(UnixAddress(str(path))), pool, RcptLimits())
    server.start()
    try:
        yield str(path)
    finally:
        server.stop()
        pool.close()


def test_idle_connections_cost_no_thread_and_are_capped_and_closed(small_policy, agents):
    threads_before = threading.active_count()
    idle = [Client(small_policy) for _ in range(19)]
    try:
        time.sleep(0.2)
        # Nineteen idle clients, and not one thread more for them.
        assert threading.active_count() <= threads_before
        asking = Client(small_policy)  # the twentieth
        assert asking.rcpt(agents.shared) == "DUNNO"
        refused = Client(small_policy)  # one over the cap: closed at once
        try:
            assert refused.closed_without_answer()
        finally:
            refused.close()
        # Idle past the timeout: closed by the server, which takes new ones again.
        time.sleep(3.5)
        assert all(c.closed_without_answer() for c in idle)
        assert asking.closed_without_answer()
        asking.close()
        still_answering(small_policy, agents)
    finally:
        for c in idle:
            c.close()


def test_many_idle_connections_leave_the_service_answering(policy, agents):
    threads_before = threading.active_count()
    idle: list[Client] = []
    try:
        for _ in range(6):  # in bursts smaller than the listen backlog
            idle += [Client(policy) for _ in range(50)]
            time.sleep(0.05)
        assert threading.active_count() <= threads_before + 1
        still_answering(policy, agents)
    finally:
        for client in idle:
            client.close()
