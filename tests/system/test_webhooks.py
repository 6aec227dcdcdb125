"""Webhooks end to end: mail through the real Postfix, the real worker
processes, a real HTTP receiver on loopback (the sandbox allows loopback
webhook URLs; production does not, and one test runs a worker with the
production default to show it).

Retries wait a minute and more; where a test has to wait one out it moves the
delivery's next_attempt_at to now (time travel) rather than sleep.
"""

from __future__ import annotations

import base64
import secrets
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import requests
from sandbox_harness import RunningSandbox, compose, smtp_send, wait_until
from servicesupport import serve, write_config
from webhooksupport import Receiver

from e2a.cli.sandbox import supervisor
from e2a.core import accounts, attest, config, delivery, signing_secrets, webhooksig
from e2a.core.db import single_connection

pytestmark = pytest.mark.system

SENDER = "ada@sandbox.test"
# Our own workers: short timeouts, so a lease (delivery.lease) lasts 11 s.
WORKER_TOML = ("[webhooks]\nallow_loopback = true\ntimeout = 2.0\n"
               "[dns]\ntimeout = 1.0\n[worker]\npoll_interval = 0.2\n")
# A worker as production runs it: webhooks.allow_loopback left at its
# default; names resolved by the sandbox's DNS, as the internet's would be.
PRODUCTION_WORKER_TOML = ("[webhooks]\ntimeout = 2.0\n"
                          "[dns]\ntimeout = 1.0\nresolver = \"{resolver}\"\n"
                          "[worker]\npoll_interval = 0.2\n")


@dataclass
class Tenant:
    sandbox: RunningSandbox
    key: str
    user_id: str
    secret: str  # the user's signing secret (X-E2A-Auth-*)

    def api(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        return requests.request(method, self.sandbox.api_url + path, timeout=15,
                                headers={"Authorization": f"Bearer {self.key}"}, **kwargs)

    def agent(self, **body: Any) -> str:
        result = self.api("POST", "/api/v1/agents",
                          json={"slug": f"wh-{secrets.token_hex(4)}", "agent_mode": "local",
                                **body})
        assert result.status_code in (200, 201), result.text
        return result.json()["email"]

    def subscribe(self, url: str) -> dict[str, Any]:
        result = self.api("POST", "/api/v1/webhooks",
                          json={"url": url, "events": ["email.received"]})
        assert result.status_code == 201, result.text
        return result.json()

    def deliveries(self, webhook_id: str) -> list[dict[str, Any]]:
        result = self.api("GET", f"/api/v1/webhooks/{webhook_id}/deliveries",
                          params={"limit": 100})
        assert result.status_code == 200, result.text
        return result.json()["deliveries"]


@pytest.fixture
def tenant(sandbox: RunningSandbox) -> Tenant:
    with single_connection(sandbox.box.config()) as conn:
        user = accounts.create_user(conn, f"hooks-{secrets.token_hex(4)}@sandbox.test")
        key = accounts.issue_key(conn, user["id"], name="webhooks").key
        secret = signing_secrets.create(conn, user["id"]).secret
    return Tenant(sandbox, key, user["id"], secret)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver().start()
    yield r
    r.behaviour.hang = None
    r.stop()


def send(sandbox: RunningSandbox, rcpt: str, subject: str) -> float:
    """One mail through Postfix; when its 250 came."""
    reply = smtp_send(sandbox.smtp_port, SENDER, rcpt, compose(SENDER, rcpt, subject, "Hi.\n"))
    assert reply.code == 250, reply
    return time.monotonic()


def event_ids(requests_seen: list) -> list[str]:
    return [r.json()["id"] for r in requests_seen]


def time_travel(sandbox: RunningSandbox, webhook_id: str) -> None:
    """Let the retry wait of the webhook's pending deliveries pass."""
    with single_connection(sandbox.box.config()) as conn:
        conn.execute("""UPDATE deliveries SET next_attempt_at = now()
                         WHERE webhook_id = %s AND status = 'pending'""", (webhook_id,))


def test_a_cloud_agent_gets_its_mail_with_valid_attestation(sandbox, tenant, receiver):
    agent = tenant.agent(agent_mode="cloud", webhook_url=receiver.url("/agent"))
    subject = f"cloud {uuid.uuid4().hex}"
    send(sandbox, agent, subject)
    (got,) = receiver.wait_for(1, timeout=20)
    payload = got.json()
    assert payload["recipient"] == agent and SENDER in payload["from"]
    auth = {k: v for k, v in got.headers.items() if k.startswith(attest.PREFIX)}
    assert auth == payload["auth_headers"]
    assert attest.verify(auth, tenant.secret)
    assert not attest.verify(auth, sandbox.box.config().secrets.hmac_secret)
    raw = base64.b64decode(payload["raw_message"])
    assert auth[attest.PREFIX + "Body-Hash"] == attest.body_hash(raw)
    assert auth[attest.PREFIX + "Message-Id"] == payload["message_id"]
    assert subject.encode() in raw

    def delivered() -> list[dict[str, Any]]:
        listed = tenant.api("GET", f"/api/v1/agents/{agent.replace('@', '%40')}/messages")
        return [m for m in listed.json()["messages"] if m["webhook_status"] == "delivered"]

    (message,) = wait_until(delivered, timeout=10, what="webhook_status delivered")
    assert message["message_id"] == payload["message_id"]


def _seconds_between(earlier: str, later: str) -> float:
    return (datetime.fromisoformat(later) - datetime.fromisoformat(earlier)).total_seconds()


def test_receiver_down_then_up_gets_every_event_once(sandbox, tenant, receiver):
    agent = tenant.agent()
    hook = tenant.subscribe(receiver.url("/events"))
    receiver.stop()
    count = 5
    for i in range(count):
        send(sandbox, agent, f"outage {i} {uuid.uuid4().hex}")

    def failed_attempts(n: int) -> bool:
        """Attempt ``n`` of each delivery has failed AND been recorded: its
        retry is scheduled. (A claimed attempt counts at once, and the last
        error is still the one before: time travel then would be undone by
        the attempt's own record.)"""
        rows = tenant.deliveries(hook["id"])
        wait = delivery.RETRY_SCHEDULE[n - 1].total_seconds()
        return len(rows) == count and all(
            r["attempts"] == n and r["status"] == "pending" and r["last_error"]
            and r["next_retry_at"] and _seconds_between(r["last_attempt_at"],
                                                        r["next_retry_at"]) >= wait - 2
            for r in rows)

    wait_until(lambda: failed_attempts(1), timeout=20, what="first attempts failed")
    time_travel(sandbox, hook["id"])  # still down: the retries fail as well
    wait_until(lambda: failed_attempts(2), timeout=20, what="second attempts failed")
    receiver.start()
    time_travel(sandbox, hook["id"])
    wait_until(lambda: all(r["status"] == "delivered" for r in tenant.deliveries(hook["id"])),
               timeout=20, what="all delivered")
    listed = tenant.api("GET", "/api/v1/events", params={"type": "email.received"}).json()
    # The sentinel: one more event, delivered after all of them; anything
    # sent twice would have been sent before it.
    send(sandbox, agent, f"sentinel {uuid.uuid4().hex}")
    receiver.wait_for(count + 1, timeout=20)
    seen = event_ids(receiver.requests)
    assert len(seen) == len(set(seen)) == count + 1
    assert sorted(seen[:-1]) == sorted(e["id"] for e in listed["events"])
    for got in receiver.requests:
        assert webhooksig.verify(got.headers["X-E2A-Signature"], hook["signing_secret"],
                                 got.body, int(time.time()))
    assert {r["attempts"] for r in tenant.deliveries(hook["id"])
            if r["event_id"] != seen[-1]} == {3}
    assert all(e["delivery_status"] == {"matched_webhooks": 1, "delivered": 1, "pending": 0,
                                        "failed": 0} for e in listed["events"])


# -- tests that need the workers to be theirs alone ---------------------------


@pytest.fixture
def own_workers(sandbox: RunningSandbox, tmp_path: Path) -> Iterator[Any]:
    """Stops the sandbox's worker; yields a starter of workers of the test's
    own (killed at the end); starts the sandbox's worker again."""
    box = sandbox.box
    supervisor.stop(box.pidfile("worker"), timeout=15)
    started: list[Any] = []

    def start(name: str, toml: str = WORKER_TOML) -> Any:
        conf = write_config(box.config(), tmp_path / "worker.toml", toml)
        context = serve("worker", conf, tmp_path / f"{name}.log", "worker started")
        proc = context.__enter__()
        started.append(context)
        return proc

    try:
        yield start
    finally:
        for context in started:
            context.__exit__(None, None, None)
        box.up()


def test_a_worker_killed_mid_delivery_leaves_it_to_another(sandbox, tenant, receiver,
                                                          own_workers, tmp_path):
    agent = tenant.agent()
    hook = tenant.subscribe(receiver.url("/events"))
    first = own_workers("a")
    hold = threading.Event()
    receiver.behaviour.hang = hold  # the first POST gets no answer
    send(sandbox, agent, f"killed {uuid.uuid4().hex}")
    (held,) = receiver.wait_for(1, timeout=20)
    first.kill()  # SIGKILL while the POST is on the wire
    first.wait()
    receiver.behaviour.hang = None
    hold.set()
    own_workers("b")
    lease = delivery.lease(config.load(tmp_path / "worker.toml", env={})).total_seconds()
    (_, again) = receiver.wait_for(2, timeout=lease + 15)
    assert again.json()["id"] == held.json()["id"]
    # Not before the dead worker's lease ran out.
    assert again.at - held.at >= lease - 1.0
    wait_until(lambda: tenant.deliveries(hook["id"])[0]["status"] == "delivered", timeout=10,
               what="delivered")
    (row,) = tenant.deliveries(hook["id"])
    assert row["attempts"] == 2


def test_two_workers_never_deliver_twice(sandbox, tenant, receiver, own_workers):
    agent = tenant.agent()
    cloud = tenant.agent(agent_mode="cloud", webhook_url=receiver.url("/agent"))
    hook = tenant.subscribe(receiver.url("/events"))
    own_workers("a")
    own_workers("b")
    count = 15
    for i in range(count):
        send(sandbox, agent if i % 2 else cloud, f"pair {i} {uuid.uuid4().hex}")
    # Every mail: one subscription delivery; the cloud agent's also its own.
    expected = count + (count + 1) // 2
    receiver.wait_for(expected, timeout=30)
    # The sentinel: one more event, once the others are all in; a double
    # delivery would have come before it.
    wait_until(lambda: {r["status"] for r in tenant.deliveries(hook["id"])} == {"delivered"},
               timeout=20, what="every delivery recorded")
    send(sandbox, agent, f"sentinel {uuid.uuid4().hex}")
    receiver.wait_for(expected + 1, timeout=30)
    wait_until(lambda: {r["status"] for r in tenant.deliveries(hook["id"])} == {"delivered"},
               timeout=20, what="the sentinel's delivery recorded")
    events = [r for r in receiver.requests if r.path == "/events"]
    agent_posts = [r for r in receiver.requests if r.path == "/agent"]
    assert len(receiver.requests) == expected + 1
    assert len(set(event_ids(events))) == len(events) == count + 1
    assert len({r.json()["message_id"] for r in agent_posts}) == len(agent_posts)
    assert {(r["status"], r["attempts"]) for r in tenant.deliveries(hook["id"])} == \
        {("delivered", 1)}


class Listener:
    """A TCP port on 127.0.0.1 that counts who connects (and hangs up on
    them): a refused webhook must not even reach it."""

    def __init__(self) -> None:
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        self.connections = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return  # closed
            self.connections += 1
            conn.close()

    def close(self) -> None:
        self._sock.close()


def test_the_production_default_never_connects_to_loopback(sandbox, tenant, own_workers,
                                                          tmp_path):
    """Two cloud agents whose webhooks point at 127.0.0.1: one by a name that
    resolves there (the API cannot know; the worker checks at connect time),
    one by a loopback URL the sandbox's API let through. A worker with the
    production setting connects to neither and records why on each."""
    resolver = sandbox.box.config().dns.resolver
    toml = PRODUCTION_WORKER_TOML.format(resolver=resolver)
    write_config(sandbox.box.config(), tmp_path / "production.toml", toml)
    assert config.load(tmp_path / "production.toml", env={}).webhooks.allow_loopback is False
    by_name, literal = Listener(), Listener()
    host = f"hook-{secrets.token_hex(4)}.sandbox.test"
    sandbox.dns.add_a(host, "127.0.0.1")
    sandbox.dns.reload()
    try:
        agents = {
            tenant.agent(agent_mode="cloud",
                         webhook_url=f"https://{host}:{by_name.port}/agent"):
                f"refused: {host} resolves to 127.0.0.1, which is not a public address",
            tenant.agent(agent_mode="cloud",
                         webhook_url=f"http://127.0.0.1:{literal.port}/agent"):
                "refused: webhook_url must be an https:// URL",
        }
        own_workers("production", toml)
        for agent in agents:
            send(sandbox, agent, f"ssrf {uuid.uuid4().hex}")

        def recorded(agent: str) -> dict[str, Any] | None:
            listed = tenant.api("GET", f"/api/v1/agents/{agent.replace('@', '%40')}/messages")
            (message,) = listed.json()["messages"] or [None]
            return message if message and message["webhook_error"] else None

        for agent, why in agents.items():
            message = wait_until(lambda agent=agent: recorded(agent), timeout=20,
                                 what=f"the refusal recorded for {agent}")
            assert message["webhook_error"] == why
            assert message["webhook_status"] in ("pending", "failed")
            with single_connection(sandbox.box.config()) as conn:
                (row,) = conn.execute(
                    """SELECT d.last_error, d.status, d.last_status_code FROM deliveries d
                         JOIN agents a ON a.id = d.agent_id WHERE a.email = %s""",
                    (agent,)).fetchall()
            assert (row["last_error"], row["last_status_code"]) == (why, None)
        # Each attempt has ended (its outcome is recorded): none connected.
        assert (by_name.connections, literal.connections) == (0, 0)
    finally:
        by_name.close()
        literal.close()
