"""Two hosts on one PostgreSQL: the session's sandbox is host A; host B is a
second sandbox joined to A's database and secrets (`e2a dev up --join`),
with its own Postfix, DNS server, capture server and five services, all in
a network namespace of its own, so B's 127.0.0.1 is not A's and the only
thing the two share is the database.

What a deployment of several MX/API hosts relies on: mail received on A
reaches a WebSocket held on B; a rate limit counts sends made through
either; an event is delivered once although both hosts' workers deliver;
a message held through A is approved through B and leaves once."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import requests
from sandbox_harness import RunningSandbox, compose, new_agent, smtp_send, wait_until
from webhooksupport import Receiver
from wsclient import AgentSocket

from e2a.core.accounts import registration as accounts
from e2a.core.db import single_connection
from sandbox.capture import Store
from sandbox.netns import Namespace
from sandbox.stack import Sandbox, e2a_command

pytestmark = pytest.mark.system

SENDER = "ada@sandbox.test"
ELSEWHERE = "elsewhere.test"  # not ours: each host relays it to its capture server
# Host B's own limit on sends per agent per minute (A's is the sandbox's
# 100,000): B can only refuse the sends A made if the count is shared.
B_SEND_RATE = 5


@dataclass
class Host:
    """Host B, seen from the test (which runs on host A's network)."""

    box: Sandbox
    ns: Namespace
    api_key: str  # B's own key for the sandbox user: any key works on any host

    @property
    def api_url(self) -> str:
        return self.box.api_url

    @property
    def capture(self) -> Store:
        return Store(self.box.capture_dir)

    def api(self, method: str, path: str, key: str | None = None,
            **kwargs: Any) -> requests.Response:
        headers = {"Authorization": f"Bearer {key or self.api_key}"}
        with self.ns.entered():
            return requests.request(method, self.api_url + path, headers=headers,
                                    timeout=30, **kwargs)

    def smtp_send(self, sender: str, rcpt: str, data: bytes) -> None:
        with self.ns.entered():
            reply = smtp_send(self.box.ports.smtp, sender, rcpt, data)
        assert reply.code == 250, reply


@dataclass
class _OnA:
    """Host A with the same call shape as Host."""

    sandbox: RunningSandbox

    def api(self, method: str, path: str, key: str | None = None,
            **kwargs: Any) -> requests.Response:
        headers = {"Authorization": f"Bearer {key or self.sandbox.api_key}"}
        return requests.request(method, self.sandbox.api_url + path, headers=headers,
                                timeout=30, **kwargs)


def _dev(ns: Namespace, action: str, root: Path, joins: Path) -> str:
    done = subprocess.run(
        ns.command([e2a_command(), "dev", action, "--root", str(root), "--join", str(joins),
                    *(["--json"] if action == "up" else [])]),
        capture_output=True, text=True, timeout=240, check=False,
        env={k: v for k, v in os.environ.items() if not k.startswith("E2A_")})
    assert done.returncode == 0, f"e2a dev {action}: {done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def host_b(sandbox: RunningSandbox) -> Iterator[Host]:
    ns = Namespace(f"e2a-b-{os.getpid()}").create()
    root = Path(tempfile.mkdtemp(prefix="e2a-test-host-b-"))
    root.chmod(0o755)
    (root / "local.toml").write_text(f"[send]\nrate_per_agent = {B_SEND_RATE}\n")
    try:
        access = json.loads(_dev(ns, "up", root, sandbox.box.root))
        yield Host(Sandbox(root, joins=sandbox.box.root), ns, access["api_key"])
        _dev(ns, "down", root, sandbox.box.root)
        shutil.rmtree(root, ignore_errors=True)
    finally:
        ns.delete()


def _agent_path(email: str) -> str:
    return f"/api/v1/agents/{quote(email, safe='')}"


def test_host_b_has_its_own_network_and_the_same_database(sandbox, host_b):
    # Its services listen on its own loopback: not reachable from A's.
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{host_b.api_url}/api/health", timeout=2)
    assert host_b.api("GET", "/api/health").status_code == 200
    # A key issued on A is good on B, and B's key on A: one user table.
    assert host_b.api("GET", "/v1/account", key=sandbox.api_key).status_code == 200
    assert sandbox.api("GET", "/v1/account",
                       headers={"Authorization": f"Bearer {host_b.api_key}"}).status_code == 200


def test_mail_received_on_a_reaches_a_websocket_held_on_b(sandbox, host_b):
    email = new_agent(sandbox, hitl=False, prefix="twohost")["email"]
    with host_b.ns.entered():
        client = AgentSocket(host_b.api_url, email, sandbox.api_key)
    try:
        client.quiet_for(0.2)
        subject = f"to host B's socket {uuid.uuid4().hex[:8]}"
        reply = smtp_send(sandbox.smtp_port, SENDER, email,
                          compose(SENDER, email, subject, "received on A"))
        assert reply.code == 250, reply
        [frame] = client.frames(1, timeout=10)
    finally:
        client.close()
    assert frame["subject"] == subject
    assert frame["recipient"] == email


def test_a_send_rate_counts_the_sends_made_through_either_host(sandbox, host_b):
    email = new_agent(sandbox, hitl=False, prefix="twohost-rate")["email"]
    # The limit is a fixed one-minute window: all of it in the same window.
    if time.time() % 60 > 40:
        time.sleep(61 - time.time() % 60)

    def send(through: Any, n: int) -> requests.Response:
        return through.api("POST", "/api/v1/send", json={
            "from": email, "to": [f"rate{n}@{ELSEWHERE}"], "subject": f"rate {n}",
            "body": "counted once, wherever it is sent"})

    for n in range(B_SEND_RATE - 1):  # A's own limit is far away
        assert send(sandbox, n).status_code == 200
    assert send(host_b, B_SEND_RATE - 1).status_code == 200  # the limit's last
    refused = send(host_b, B_SEND_RATE)
    assert refused.status_code == 429, refused.text
    assert int(refused.headers["Retry-After"]) >= 1


def test_an_agent_quota_counts_the_agents_made_through_either_host(sandbox, host_b):
    with single_connection(sandbox.box.config()) as conn:
        user = accounts.create_user(conn, f"quota-{secrets.token_hex(4)}@sandbox.test", "Quota")
        key = accounts.issue_key(conn, user["id"], name="quota").key
        conn.execute("UPDATE users SET max_agents = 3 WHERE id = %s", (user["id"],))

    def create(through: Any) -> requests.Response:
        return through.api("POST", "/api/v1/agents", key=key, json={
            "slug": f"quota-{secrets.token_hex(4)}", "agent_mode": "local"})

    answers = [create(through).status_code for through in (_OnA(sandbox), host_b, host_b)]
    assert all(code in (200, 201) for code in answers), answers
    refused = [create(host_b), create(_OnA(sandbox))]
    assert [r.json()["error"]["code"] for r in refused] == ["limit_reached"] * 2, \
        [r.text for r in refused]


def test_an_event_is_delivered_once_by_the_workers_of_both_hosts(sandbox, host_b):
    # A tenant of its own: no other test's mail reaches its webhook.
    with single_connection(sandbox.box.config()) as conn:
        user = accounts.create_user(conn, f"twohost-{secrets.token_hex(4)}@sandbox.test",
                                    "Two hosts")
        key = accounts.issue_key(conn, user["id"], name="twohost").key
    created = sandbox.api("POST", "/api/v1/agents", headers={"Authorization": f"Bearer {key}"},
                          json={"slug": f"twohost-{secrets.token_hex(4)}",
                                "agent_mode": "local"})
    assert created.status_code in (200, 201), created.text
    email = created.json()["email"]
    # The same URL means a receiver on each host's loopback: whichever
    # worker delivers, the delivery is counted.
    on_a = Receiver().start()
    on_b = Receiver()
    on_b.port = on_a.port
    with host_b.ns.entered():
        on_b.start()
    try:
        hook = sandbox.api("POST", "/api/v1/webhooks", headers={"Authorization": f"Bearer {key}"},
                           json={"url": on_a.url(), "events": ["email.received"]})
        assert hook.status_code == 201, hook.text
        count = 12
        for n in range(count):
            data = compose(SENDER, email, f"event {n}", "one delivery each")
            if n % 2:
                host_b.smtp_send(SENDER, email, data)
            else:
                assert smtp_send(sandbox.smtp_port, SENDER, email, data).code == 250

        def delivered() -> list[Any]:
            return on_a.requests + on_b.requests

        wait_until(lambda: len(delivered()) >= count, timeout=60,
                   what=f"{count} webhook deliveries")
        time.sleep(3)  # a second delivery of any of them would be here by now
        ids = [r.json().get("message_id") or r.json()["data"]["message_id"]
               for r in delivered()]
        assert len(ids) == count and len(set(ids)) == count, ids
        print(f"\ndelivered by host A's worker: {len(on_a.requests)}, "
              f"by host B's: {len(on_b.requests)}")
    finally:
        on_a.stop()
        on_b.stop()


def test_a_hold_made_on_a_is_approved_through_b_and_leaves_once(sandbox, host_b):
    email = new_agent(sandbox, hitl=True, prefix="twohost-held")["email"]
    body = f"held on A, approved on B {uuid.uuid4().hex}"
    sent = sandbox.api("POST", "/api/v1/send", json={
        "from": email, "to": [f"reviewed@{ELSEWHERE}"], "subject": "Two hosts, one approval",
        "body": body})
    assert sent.status_code == 202, sent.text
    assert sent.json()["status"] == "pending_approval"
    message_id = sent.json()["message_id"]
    # Through B, and through the other API generation as well.
    approved = host_b.api("POST", f"/v1/reviews/{message_id}/approve", json={})
    assert approved.status_code == 202, approved.text
    again = sandbox.api("POST", f"/api/v1/messages/{message_id}/approve", json={})
    assert again.status_code == 409, again.text

    def copies() -> int:
        return sum(body.encode() in c.data
                   for store in (sandbox.capture, host_b.capture) for c in store.messages())

    wait_until(lambda: copies() >= 1, timeout=60, what="the approved message at a capture server")
    wait_until(lambda: sandbox.postfix.queue_empty() and host_b.box.postfix.queue_empty(),
               timeout=60, what="both hosts' Postfix queues empty")
    assert copies() == 1
