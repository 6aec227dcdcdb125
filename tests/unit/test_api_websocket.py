"""The agent WebSocket against real `e2a serve api` processes: frames, drain
without duplicates under concurrent mail, close codes, pings, replacement
across two processes, SIGTERM, and the listener across a database restart.
Mail is stored by e2a.core.inbound, as the milter stores it (NOTIFY included);
tests/system/test_websocket.py does the same through Postfix."""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
import requests
from apisupport import add_agent, agent_key, make_tenant
from servicesupport import free_port, serve, terminate, write_config
from wsclient import AgentSocket, Closed

from e2a.cli.sandbox.postgres import Cluster
from e2a.core import accounts, apikeys, config, inbound
from e2a.core.db import migrate, open_pool, single_connection
from e2a.core.mailauth.verdict import Verdict
from e2a.core.store import keys as key_store
from e2a.core.store import messages as message_store

FRAME_FIELDS = {"message_id", "conversation_id", "from", "recipient", "subject", "received_at"}


@contextmanager
def api_server(cfg, tmp_path: Path, name: str, *, ping: float = 30.0, level: str = "info",
               workers: int = 1) -> Iterator[tuple[str, object, Path]]:
    """`e2a serve api` on a free port: (base URL, process, log path)."""
    base = f"http://127.0.0.1:{free_port()}"
    conf = write_config(cfg, tmp_path / f"{name}.toml",
                        f'[http]\nlisten = "{base.removeprefix("http://")}"\n'
                        f"workers = {workers}\nws_ping_seconds = {ping}\n"
                        f'[log]\nlevel = "{level}"\n')
    log = tmp_path / f"{name}.log"
    with serve("api", conf, log, f"api listening on {base}") as proc:
        yield base, proc, log


@dataclass(frozen=True)
class Server:
    url: str
    log: Path


@pytest.fixture(scope="module")
def api(cfg, tmp_path_factory) -> Iterator[Server]:
    """One `e2a serve api` for the tests that need nothing special (at level
    debug, so that its access lines are in the log)."""
    with api_server(cfg, tmp_path_factory.mktemp("api"), "api", level="debug") as (url, _, log):
        yield Server(url, log)


@pytest.fixture(scope="module")
def other_api(cfg, tmp_path_factory) -> Iterator[Server]:
    """A second API process on the same database."""
    with api_server(cfg, tmp_path_factory.mktemp("api"), "other") as (url, _, log):
        yield Server(url, log)


@contextmanager
def delivering(cfg) -> Iterator:
    """A function that stores mail as the milter does (one transaction with
    the event and the NOTIFY) and returns the message id."""
    pool = open_pool(cfg, name="test-deliver", wait=True)

    def deliver(agent: dict, subject: str) -> str:
        raw = (f"From: Alice <alice@example.com>\r\nTo: {agent['email']}\r\n"
               f"Subject: {subject}\r\nMessage-ID: <{secrets.token_hex(8)}@example.com>\r\n"
               "\r\nhello\r\n").encode()
        result = inbound.store(
            pool, raw, inbound.Envelope(mail_from="alice@example.com",
                                        recipients=[agent["email"]]),
            Verdict(spf="pass", dmarc="pass", aligned=True), cfg.secrets.hmac_secret)
        [message_id] = result.message_ids
        return message_id

    try:
        yield deliver
    finally:
        pool.close()


@pytest.fixture(scope="module")
def deliverer(cfg):
    with delivering(cfg) as deliver:
        yield deliver


def mark_read(cfg, agent: dict, message_id: str) -> None:
    with single_connection(cfg) as conn:
        assert message_store.open_for_agent(conn, agent["id"], message_id) is not None


def test_drains_unread_oldest_first_then_pushes_new_mail(cfg, api, deliverer):
    tenant = make_tenant(cfg)
    agent = tenant.agent
    first = deliverer(agent, "first")
    read = deliverer(agent, "already read")
    second = deliverer(agent, "second")
    mark_read(cfg, agent, read)
    client = AgentSocket(api.url, agent["email"], tenant.key)
    drained = client.frames(2)
    assert [f["message_id"] for f in drained] == [first, second]
    assert set(drained[0]) == FRAME_FIELDS
    assert drained[0]["from"] == "alice@example.com"
    assert drained[0]["recipient"] == agent["email"]
    assert drained[0]["subject"] == "first"
    assert drained[0]["conversation_id"] == ""
    assert drained[0]["received_at"].endswith("Z")
    client.quiet_for(0.3)

    started = time.monotonic()
    live = deliverer(agent, "live one")
    [frame] = client.frames(1, timeout=2)
    assert frame["message_id"] == live
    assert frame["subject"] == "live one"
    assert time.monotonic() - started < 1.0
    # Another agent's mail is not this agent's business.
    deliverer(add_agent(cfg, tenant), "for the other agent")
    client.quiet_for(0.5)
    client.close()


def test_no_duplicates_or_gaps_when_mail_arrives_during_the_drain(cfg, api, deliverer):
    tenant = make_tenant(cfg)
    agent = tenant.agent
    stored = [deliverer(agent, f"before {i}") for i in range(300)]  # more than a drain page
    stop = threading.Event()

    def keep_delivering() -> None:
        i = 0
        while not stop.is_set():
            stored.append(deliverer(agent, f"during {i}"))
            i += 1

    writer = threading.Thread(target=keep_delivering)
    writer.start()
    try:
        time.sleep(0.2)
        client = AgentSocket(api.url, agent["email"], tenant.key)
        time.sleep(1.0)
    finally:
        stop.set()
        writer.join()
    received: list[str] = []
    while (frame := client.next(timeout=1.0)) is not None:
        assert isinstance(frame, dict), frame
        received.append(frame["message_id"])
    client.close()
    assert len(received) == len(set(received)), "a message was announced twice"
    assert set(received) == set(stored)
    assert len(stored) > 300  # mail did arrive while the client connected


@pytest.mark.parametrize("case", ["malformed", "unknown key", "other tenant", "other agent",
                                  "no such agent", "cloud agent", "NUL in key",
                                  "NUL in address"])
def test_refusals_are_close_1008_after_the_upgrade(cfg, api, case):
    tenant = make_tenant(cfg)
    email, key = tenant.agent["email"], tenant.key
    if case == "malformed":
        key = "not-a-key"
    elif case == "unknown key":
        key = "e2a_" + secrets.token_hex(32)
    elif case == "other tenant":
        key = make_tenant(cfg).key
    elif case == "other agent":
        # A key scoped to one agent of the same owner reaches no other agent.
        key = agent_key(cfg, tenant, add_agent(cfg, tenant))
    elif case == "no such agent":
        email = "nobody@" + cfg.mail.shared_domain
    elif case == "NUL in key":
        key = key[:10] + "\x00" + key[10:]
    elif case == "NUL in address":
        email = "\x00" + email
    elif case == "cloud agent":
        with single_connection(cfg) as conn:
            email = accounts.register_agent(
                conn, cfg, tenant.user["id"], slug=f"cloud-{secrets.token_hex(4)}",
                agent_mode="cloud", webhook_url="https://hooks.example.com/e2a")["email"]
    closed = AgentSocket(api.url, email, key).closed_with()
    assert closed.code == 1008, closed
    if case == "cloud agent":
        assert "webhook" in closed.reason
    elif case.startswith("NUL"):
        assert "NUL" in closed.reason
    elif case in ("other tenant", "other agent", "no such agent"):
        # Someone else's agent and no agent at all look the same.
        assert closed.reason == f"agent {email} not found"
    assert "Traceback" not in api.log.read_text()


def test_an_agent_scoped_key_listens_to_its_agent(cfg, api, deliverer):
    tenant = make_tenant(cfg)
    agent = add_agent(cfg, tenant)
    client = AgentSocket(api.url, agent["email"], agent_key(cfg, tenant, agent))
    client.quiet_for(0.2)
    message_id = deliverer(agent, "scoped")
    assert client.frames(1)[0]["message_id"] == message_id
    client.close()


def test_plain_http_get_is_426_and_the_key_stays_out_of_the_log(cfg, api):
    tenant = make_tenant(cfg)
    path = "/api/v1/agents/" + tenant.agent["email"].replace("@", "%40") + "/ws"
    response = requests.get(api.url + path, params={"token": tenant.key}, timeout=5)
    assert response.status_code == 426
    assert response.json()["error"]["code"] == "upgrade_required"
    AgentSocket(api.url, tenant.agent["email"], tenant.key).close()
    time.sleep(0.3)
    output = api.log.read_text()
    assert "/ws?token=[redacted]" in output  # the access line is there, the key is not
    assert tenant.key not in output


def test_pings_at_the_configured_interval(cfg, tmp_path):
    tenant = make_tenant(cfg)
    with api_server(cfg, tmp_path, "api", ping=0.2) as (base, _, _):
        client = AgentSocket(base, tenant.agent["email"], tenant.key)
        client.quiet_for(1.1)
        client.close()
    assert 3 <= client.pings <= 6, client.pings


def test_a_second_connection_replaces_the_first_across_processes(cfg, api, other_api,
                                                                  deliverer):
    tenant = make_tenant(cfg)
    email, key = tenant.agent["email"], tenant.key
    one, two = api.url, other_api.url
    first = AgentSocket(one, email, key)
    first.quiet_for(0.2)
    second = AgentSocket(two, email, key)
    assert first.closed_with() == Closed(4000, "replaced by a newer connection")
    message_id = deliverer(tenant.agent, "to the newest")
    assert second.frames(1)[0]["message_id"] == message_id
    # Within one process as well, and back again.
    third = AgentSocket(two, email, key)
    assert second.closed_with().code == 4000
    fourth = AgentSocket(one, email, key)
    assert third.closed_with().code == 4000
    # The new connection drains what is still unread, then goes live.
    unread = message_id
    message_id = deliverer(tenant.agent, "to the newest again")
    assert [f["message_id"] for f in fourth.frames(2)] == [unread, message_id]
    fourth.close()


def test_simultaneous_connections_leave_exactly_one(cfg, api, other_api):
    tenant = make_tenant(cfg)
    email, key = tenant.agent["email"], tenant.key
    one, two = api.url, other_api.url
    clients: list[AgentSocket] = []
    threads = [threading.Thread(target=lambda url=url: clients.append(
        AgentSocket(url, email, key))) for url in (one, two) * 3]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    outcomes = [client.next(timeout=2.0) for client in clients]
    for client in clients:
        client.close()
    assert [o for o in outcomes if o is None] == [None], outcomes  # one survivor
    assert all(o == Closed(4000, "replaced by a newer connection")
               for o in outcomes if o is not None), outcomes


def _key_id(cfg, key: str) -> str:
    with single_connection(cfg) as conn:
        return conn.execute("SELECT id FROM api_keys WHERE key_hash = %s",
                            (apikeys.digest(key),)).fetchone()["id"]


def test_revoking_the_key_closes_its_sockets_on_every_process_within_seconds(
        cfg, api, other_api):
    tenant = make_tenant(cfg)
    scoped_key = agent_key(cfg, tenant, tenant.agent)
    spared_agent = add_agent(cfg, tenant)
    doomed = [AgentSocket(api.url, tenant.agent["email"], scoped_key),
              AgentSocket(other_api.url, add_agent(cfg, tenant)["email"], tenant.key)]
    bystander = AgentSocket(api.url, spared_agent["email"],
                            agent_key(cfg, tenant, spared_agent))
    for client in (*doomed, bystander):
        client.quiet_for(0.2)
    started = time.monotonic()
    with single_connection(cfg) as conn:  # as `e2a keys revoke` does
        assert key_store.revoke_key(conn, _key_id(cfg, scoped_key))
        assert key_store.revoke_key(conn, _key_id(cfg, tenant.key))
    for client in doomed:
        assert client.closed_with(timeout=5) == Closed(1008, "API key revoked")
    assert time.monotonic() - started < 5
    assert bystander.next(timeout=0.5) is None  # another key's socket stays
    bystander.close()


def test_a_revocation_nobody_announced_is_found_at_the_next_ping(cfg, tmp_path):
    tenant = make_tenant(cfg)
    with api_server(cfg, tmp_path, "api", ping=0.3) as (base, _, _):
        client = AgentSocket(base, tenant.agent["email"], tenant.key)
        client.quiet_for(0.2)
        with single_connection(cfg) as conn:
            # Triggers off for this session: the NOTIFY is lost, as it is
            # while a listener reconnects.
            conn.execute("SET session_replication_role = replica")
            assert key_store.revoke_key(conn, _key_id(cfg, tenant.key))
        assert client.closed_with(timeout=3) == Closed(1008, "API key revoked")


def test_a_key_deleted_with_its_agent_closes_its_socket(cfg, api):
    tenant = make_tenant(cfg)
    agent = add_agent(cfg, tenant)
    client = AgentSocket(api.url, agent["email"], agent_key(cfg, tenant, agent))
    client.quiet_for(0.2)
    with single_connection(cfg) as conn:
        conn.execute("DELETE FROM agents WHERE id = %s", (agent["id"],))
    assert client.closed_with(timeout=5).code == 1008


def test_sigterm_closes_clients_with_1001_and_the_process_exits_promptly(cfg, tmp_path):
    tenant = make_tenant(cfg)
    with api_server(cfg, tmp_path, "api", workers=2) as (base, proc, log):
        clients = [AgentSocket(base, tenant.agent["email"], tenant.key),
                   AgentSocket(base, add_agent(cfg, tenant)["email"], tenant.key)]
        for client in clients:
            client.quiet_for(0.2)
        code, took = terminate(proc)
        closes = [client.closed_with(timeout=1) for client in clients]
    assert closes == [Closed(1001, "server shutting down")] * 2
    assert code == 0, log.read_text()
    assert took < 5, log.read_text()
    assert "Traceback" not in log.read_text()


@pytest.fixture(scope="module")
def own_cluster(cfg) -> Iterator[tuple[config.Config, Cluster]]:
    """A cluster of these tests' own, free to restart."""
    root = Path(tempfile.mkdtemp(prefix="e2a-test-ws-pg-"))
    os.chmod(root, 0o755)  # noqa: S103 - the postgres user must reach it
    cluster = Cluster(root)
    try:
        cluster.init()
        cluster.start()
        path = root / "e2a.toml"
        write_config(cfg, path, database_url=cluster.url)
        own = config.load(path, env={})
        with single_connection(own, autocommit=True) as conn:
            migrate.migrate(conn)
        yield own, cluster
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)


def test_the_listener_survives_a_database_restart(own_cluster, tmp_path):
    own, cluster = own_cluster
    tenant = make_tenant(own)
    with ExitStack() as stack:
        base, _, log = stack.enter_context(api_server(own, tmp_path, "api"))
        client = AgentSocket(base, tenant.agent["email"], tenant.key)
        client.quiet_for(0.2)
        cluster.stop()
        cluster.start()
        # The listener reconnects within its backoff; mail stored meanwhile
        # reaches the client by the catch-up, later mail live.
        deliver = stack.enter_context(delivering(own))
        message_ids = [deliver(tenant.agent, f"after restart {i}") for i in range(3)]
        got = client.frames(3, timeout=10)
        assert sorted(f["message_id"] for f in got) == sorted(message_ids)
        client.quiet_for(0.5)
        time.sleep(0.5)
        late = deliver(tenant.agent, "later")
        assert client.frames(1)[0]["message_id"] == late
        client.close()
    assert "listening to the database again" in log.read_text()



def test_mail_stored_while_the_listener_was_away_arrives_on_its_return(own_cluster, tmp_path):
    """Notifications sent while no session listens are lost for good; the
    listener catches up from the table when it is back."""
    own, _ = own_cluster
    tenant = make_tenant(own)
    with ExitStack() as stack:
        base, _, log = stack.enter_context(api_server(own, tmp_path, "api"))
        deliver = stack.enter_context(delivering(own))
        # Another database: Postgres refuses to lock out the session's own.
        admin = stack.enter_context(psycopg.connect(own.database.url, dbname="postgres",
                                                    autocommit=True))
        client = AgentSocket(base, tenant.agent["email"], tenant.key)
        client.quiet_for(0.2)
        # Connected sessions stay (ours, the API's pool); no new one gets in,
        # so the listener, once cut off, stays away.
        admin.execute("ALTER DATABASE e2a ALLOW_CONNECTIONS false")
        try:
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                          "WHERE application_name = 'e2a-api-listen'")
            missed = deliver(tenant.agent, "while nobody listened")
            client.quiet_for(1.0)
        finally:
            admin.execute("ALTER DATABASE e2a ALLOW_CONNECTIONS true")
        [frame] = client.frames(1, timeout=10)
        assert frame["message_id"] == missed
        client.quiet_for(0.5)
        client.close()
    assert "listening to the database again" in log.read_text()
