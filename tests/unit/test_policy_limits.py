"""The policy daemon's quota and rate checks, over real sockets, on the real
database: 552 5.2.2 over quota, 450 4.7.1 at the rate limit + 1."""

from __future__ import annotations

import contextlib
import secrets
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from apisupport import Tenant, insert_message, make_tenant
from policysupport import Client, running_policy

from e2a.core.db import single_connection
from e2a.core.ratelimit import Limit
from e2a.policy.checks import RcptLimits, client_key

OVER_COUNT = "552 5.2.2 mailbox full: monthly message quota reached"
OVER_STORAGE = "552 5.2.2 mailbox full: storage quota reached"
IP_LIMITED = "450 4.7.1 too much mail from your address, try again later"
AGENT_LIMITED = "450 4.7.1 too much mail for this agent, try again later"


@pytest.fixture
def sockdir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="e2a-lim-"))  # short: socket paths
    yield path
    shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def client_of(cfg, path: Path, limits: RcptLimits) -> Iterator[Client]:
    with running_policy(cfg, path, limits) as sock:
        client = Client(sock)
        try:
            yield client
        finally:
            client.close()


def fresh_ip() -> str:
    """A client address no other test (or run, within a minute) has used."""
    return "10." + ".".join(str(b) for b in secrets.token_bytes(3))


def rcpt(client: Client, recipient: str, ip: str, **attrs: str) -> str:
    return client.ask(protocol_state="RCPT", recipient=recipient, client_address=ip, **attrs)


def set_limits(cfg, tenant: Tenant, **limits: int) -> None:
    with single_connection(cfg) as conn:
        for column, value in limits.items():
            # Plain SQL: no product code changes a user's plan yet.
            conn.execute(f"UPDATE users SET {column} = %s WHERE id = %s",
                         (value, tenant.user["id"]))


def test_over_the_monthly_message_count_is_552_5_2_2(cfg, sockdir):
    t = make_tenant(cfg)
    set_limits(cfg, t, max_messages_month=2)
    with client_of(cfg, sockdir / "p.sock", RcptLimits()) as c:
        insert_message(cfg, t.agent)
        assert rcpt(c, t.agent["email"], fresh_ip()) == "DUNNO"
        insert_message(cfg, t.agent)
        assert rcpt(c, t.agent["email"], fresh_ip()) == OVER_COUNT
        # Last month's mail does not count against this month.
        with single_connection(cfg) as conn:
            conn.execute("UPDATE messages SET created_at = now() - interval '40 days' "
                         "WHERE agent_id = %s", (t.agent["id"],))
        assert rcpt(c, t.agent["email"], fresh_ip()) == "DUNNO"


def test_over_the_storage_quota_is_552_5_2_2(cfg, sockdir):
    t = make_tenant(cfg)
    insert_message(cfg, t.agent)
    with single_connection(cfg) as conn:
        stored = conn.execute("SELECT sum(size_bytes) AS s FROM messages WHERE user_id = %s",
                              (t.user["id"],)).fetchone()["s"]
    set_limits(cfg, t, max_storage_bytes=stored + 1000)
    with client_of(cfg, sockdir / "p.sock", RcptLimits()) as c:
        assert rcpt(c, t.agent["email"], fresh_ip()) == "DUNNO"
        # The SIZE the client declared in MAIL FROM counts before the data comes.
        assert rcpt(c, t.agent["email"], fresh_ip(), size="1000") == "DUNNO"
        assert rcpt(c, t.agent["email"], fresh_ip(), size="1001") == OVER_STORAGE
        set_limits(cfg, t, max_storage_bytes=stored)
        assert rcpt(c, t.agent["email"], fresh_ip()) == OVER_STORAGE


def test_quota_comes_after_unknown_and_before_rate(cfg, sockdir):
    t = make_tenant(cfg)
    set_limits(cfg, t, max_messages_month=0)
    ip = fresh_ip()
    limits = RcptLimits(per_client_ip=Limit(f"ip-{secrets.token_hex(3)}", 1))
    unknown = "nobody-" + t.agent["email"]
    with client_of(cfg, sockdir / "p.sock", limits) as c:
        assert rcpt(c, unknown, ip).startswith("550 5.1.1 ")
        assert [rcpt(c, t.agent["email"], ip) for _ in range(3)] == [OVER_COUNT] * 3
        # None of that used up the client's rate.
        other = make_tenant(cfg)
        assert rcpt(c, other.agent["email"], ip) == "DUNNO"
        assert rcpt(c, other.agent["email"], ip) == IP_LIMITED


def test_rate_per_client_ip_is_450_at_the_limit_plus_one(cfg, sockdir):
    t, u = make_tenant(cfg), make_tenant(cfg)
    ip = fresh_ip()
    limits = RcptLimits(per_client_ip=Limit(f"ip-{secrets.token_hex(3)}", 5))
    with client_of(cfg, sockdir / "p.sock", limits) as c:
        # Any agent, one client: the count is the client's.
        answers = [rcpt(c, (t, u)[i % 2].agent["email"], ip) for i in range(5)]
        assert answers == ["DUNNO"] * 5
        assert rcpt(c, u.agent["email"], ip) == IP_LIMITED
        assert rcpt(c, t.agent["email"], ip) == IP_LIMITED
        assert rcpt(c, t.agent["email"], fresh_ip()) == "DUNNO"  # another client


def test_ipv6_clients_count_per_64(cfg, sockdir):
    t = make_tenant(cfg)
    prefix = f"2001:db8:{secrets.randbits(16):x}:{secrets.randbits(16):x}"
    limits = RcptLimits(per_client_ip=Limit(f"ip-{secrets.token_hex(3)}", 2))
    with client_of(cfg, sockdir / "p.sock", limits) as c:
        assert rcpt(c, t.agent["email"], f"{prefix}::1") == "DUNNO"
        assert rcpt(c, t.agent["email"], f"{prefix}:0:0:0:2") == "DUNNO"
        assert rcpt(c, t.agent["email"], f"{prefix}:ffff::3") == IP_LIMITED
    assert client_key("2001:db8:1:2:3::4") == "2001:db8:1:2::/64"
    assert client_key("::ffff:192.0.2.7") == "192.0.2.7"
    assert client_key("unknown") == ""


def test_rate_per_agent_is_450_at_the_limit_plus_one(cfg, sockdir):
    t, u = make_tenant(cfg), make_tenant(cfg)
    limits = RcptLimits(per_client_ip=Limit(f"ip-{secrets.token_hex(3)}", 100),
                    per_agent=Limit(f"agent-{secrets.token_hex(3)}", 4))
    with client_of(cfg, sockdir / "p.sock", limits) as c:
        # Many clients, one agent: the count is the agent's.
        assert [rcpt(c, t.agent["email"], fresh_ip()) for _ in range(4)] == ["DUNNO"] * 4
        assert rcpt(c, t.agent["email"], fresh_ip()) == AGENT_LIMITED
        assert rcpt(c, u.agent["email"], fresh_ip()) == "DUNNO"  # another agent


def test_a_client_refused_for_its_own_rate_leaves_the_agents_alone(cfg, sockdir):
    t = make_tenant(cfg)
    flood, other = fresh_ip(), fresh_ip()
    limits = RcptLimits(per_client_ip=Limit(f"ip-{secrets.token_hex(3)}", 2),
                    per_agent=Limit(f"agent-{secrets.token_hex(3)}", 3))
    with client_of(cfg, sockdir / "p.sock", limits) as c:
        answers = [rcpt(c, t.agent["email"], flood) for _ in range(6)]
        assert answers == ["DUNNO"] * 2 + [IP_LIMITED] * 4
        # Two of the agent's three went to the flood; the refused ones did not count.
        assert rcpt(c, t.agent["email"], other) == "DUNNO"
        assert rcpt(c, t.agent["email"], fresh_ip()) == AGENT_LIMITED


def test_a_window_that_rolls_over_lets_mail_in_again(cfg, sockdir):
    t = make_tenant(cfg)
    window = 2
    limits = RcptLimits(per_client_ip=Limit(f"ip-{secrets.token_hex(3)}", 3, window))
    ip = fresh_ip()
    with client_of(cfg, sockdir / "p.sock", limits) as c:
        # Start just after a boundary (windows are aligned to the epoch, and
        # the database runs on this machine's clock), so all four land in one.
        time.sleep(window - time.time() % window + 0.05)
        answers = [rcpt(c, t.agent["email"], ip) for _ in range(4)]
        assert answers == ["DUNNO"] * 3 + [IP_LIMITED]
        time.sleep(window - time.time() % window + 0.05)
        assert rcpt(c, t.agent["email"], ip) == "DUNNO"


def test_two_daemons_on_one_database_share_the_count(cfg, sockdir):
    """Two MX hosts: each answers from the same counters in Postgres."""
    t = make_tenant(cfg)
    ip = fresh_ip()
    limits = RcptLimits(per_client_ip=Limit(f"ip-{secrets.token_hex(3)}", 6))
    with client_of(cfg, sockdir / "a.sock", limits) as a, \
            client_of(cfg, sockdir / "b.sock", limits) as b:
        answers = [rcpt((a, b)[i % 2], t.agent["email"], ip) for i in range(6)]
        assert answers == ["DUNNO"] * 6
        assert rcpt(a, t.agent["email"], ip) == IP_LIMITED
        assert rcpt(b, t.agent["email"], ip) == IP_LIMITED


def test_limits_come_from_the_configuration(cfg):
    limits = RcptLimits.from_config(cfg)
    assert limits.per_client_ip == Limit("inbound-ip", 120, 60)
    assert limits.per_agent == Limit("inbound-agent", 600, 60)
