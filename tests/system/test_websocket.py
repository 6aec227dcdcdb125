"""Agents' WebSockets end to end: mail through the real Postfix and milter,
a real WebSocket client, the sandbox's API (two gunicorn workers) and, where
the test needs a second API process it controls, another `e2a serve api` on
the same database."""

from __future__ import annotations

import secrets
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from sandbox_harness import RunningSandbox, compose, smtp_send, wait_until
from servicesupport import free_port, serve, terminate
from wsclient import AgentSocket, Closed

from e2a.core.accounts import registration as accounts
from e2a.core.db import single_connection

pytestmark = pytest.mark.system

SENDER = "ada@sandbox.test"
REPLACED = Closed(4000, "replaced by a newer connection")


@dataclass
class Owner:
    """A user of the sandbox with an account key, making agents through the API."""

    sandbox: RunningSandbox
    key: str

    def api(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        return requests.request(method, self.sandbox.api_url + path, timeout=15,
                                headers={"Authorization": f"Bearer {self.key}"}, **kwargs)

    def agent(self) -> str:
        result = self.api("POST", "/api/v1/agents",
                          json={"slug": f"ws-{secrets.token_hex(4)}", "agent_mode": "local"})
        assert result.status_code in (200, 201), result.text
        return result.json()["email"]

    def read(self, email: str, message_id: str) -> None:
        result = self.api("GET", self.sandbox.agent_path(email) + f"/messages/{message_id}")
        assert result.status_code == 200, result.text


def make_owner(sandbox: RunningSandbox) -> Owner:
    with single_connection(sandbox.box.config()) as conn:
        user = accounts.create_user(conn, f"ws-{secrets.token_hex(4)}@sandbox.test")
        key = accounts.issue_key(conn, user["id"], name="websocket").key
    return Owner(sandbox, key)


@pytest.fixture
def owner(sandbox: RunningSandbox) -> Owner:
    return make_owner(sandbox)


def send(sandbox: RunningSandbox, rcpt: str, subject: str) -> float:
    """Mail through the sandbox Postfix; the moment the client heard 250."""
    reply = smtp_send(sandbox.smtp_port, SENDER, rcpt, compose(SENDER, rcpt, subject, "Hi.\n"))
    assert reply.code == 250, reply
    return time.monotonic()


def unique(what: str) -> str:
    return f"{what} {uuid.uuid4().hex[:12]}"


def second_api_config(sandbox: RunningSandbox, directory: Path, port: int) -> Path:
    """The sandbox's configuration, listening elsewhere."""
    text = sandbox.config_path.read_text()
    ours = f'listen = "127.0.0.1:{sandbox.box.ports.api}"'
    assert ours in text
    path = directory / "e2a.toml"
    path.write_text(text.replace(ours, f'listen = "127.0.0.1:{port}"'))
    return path


@pytest.fixture
def second_api(sandbox: RunningSandbox, tmp_path: Path) -> Iterator[tuple[str, Any, Path]]:
    """Another `e2a serve api` on the sandbox database: (base URL, process, log)."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = tmp_path / "api.log"
    with serve("api", second_api_config(sandbox, tmp_path, port), log,
               f"api listening on {base}") as proc:
        yield base, proc, log


def test_mail_through_postfix_reaches_the_websocket_within_a_second(sandbox, owner):
    email = owner.agent()
    client = AgentSocket(sandbox.api_url, email, owner.key)
    client.quiet_for(0.2)  # nothing unread yet
    subject = unique("hello over the socket")
    accepted = send(sandbox, email, subject)
    [frame] = client.frames(1, timeout=5)
    arrived = time.monotonic()
    client.close()
    assert arrived - accepted < 1.0
    assert frame["subject"] == subject
    assert frame["from"] == SENDER
    assert frame["recipient"] == email
    [message] = owner.api("GET", sandbox.agent_path(email) + "/messages").json()["messages"]
    assert message["message_id"] == frame["message_id"]
    assert frame["received_at"] == message["created_at"]
    assert frame["conversation_id"] == message["conversation_id"]


def test_reconnecting_drains_what_arrived_meanwhile_unread_only(sandbox, owner):
    email = owner.agent()
    client = AgentSocket(sandbox.api_url, email, owner.key)
    send(sandbox, email, unique("seen live"))
    [live] = client.frames(1)
    owner.read(email, live["message_id"])
    client.close()

    subjects = [unique("while away, read"), unique("while away 1"), unique("while away 2")]
    for subject in subjects:
        send(sandbox, email, subject)

    def stored() -> list[dict[str, Any]]:
        found = owner.api("GET", sandbox.agent_path(email) + "/messages",
                          params={"sort": "asc"}).json()["messages"]
        return found if len(found) == 4 else []

    messages = wait_until(stored, what="the three messages stored")
    owner.read(email, messages[1]["message_id"])

    again = AgentSocket(sandbox.api_url, email, owner.key)
    drained = again.frames(2)
    again.quiet_for(0.5)
    again.close()
    assert [f["subject"] for f in drained] == subjects[1:]
    assert [f["message_id"] for f in drained] == [m["message_id"] for m in messages[2:]]


def test_two_api_processes_each_serve_their_clients(sandbox, owner, second_api):
    other_base, _, _ = second_api
    here, there = owner.agent(), owner.agent()
    near = AgentSocket(sandbox.api_url, here, owner.key)
    far = AgentSocket(other_base, there, owner.key)
    for client in (near, far):
        client.quiet_for(0.2)
    near_subject, far_subject = unique("to the sandbox api"), unique("to the second api")
    send(sandbox, here, near_subject)
    send(sandbox, there, far_subject)
    assert near.frames(1)[0]["subject"] == near_subject
    assert far.frames(1)[0]["subject"] == far_subject
    near.quiet_for(0.3)
    far.quiet_for(0.3)
    near.close()
    far.close()


def test_a_second_connection_replaces_the_first_across_api_processes(sandbox, owner,
                                                                     second_api):
    other_base, _, _ = second_api
    email = owner.agent()
    first = AgentSocket(sandbox.api_url, email, owner.key)
    first.quiet_for(0.2)
    second = AgentSocket(other_base, email, owner.key)
    assert first.closed_with() == REPLACED
    subject = unique("for the newest connection")
    send(sandbox, email, subject)
    assert second.frames(1)[0]["subject"] == subject
    third = AgentSocket(sandbox.api_url, email, owner.key)
    assert second.closed_with() == REPLACED
    assert third.frames(1)[0]["subject"] == subject  # still unread: drained
    third.close()


def test_bad_key_and_someone_elses_agent_are_closed_with_1008(sandbox, owner):
    email = owner.agent()
    stranger = make_owner(sandbox)
    for key in ("e2a_" + secrets.token_hex(32), "nonsense", stranger.key):
        closed = AgentSocket(sandbox.api_url, email, key).closed_with()
        assert closed.code == 1008, (key[:8], closed)
    # The stranger learns nothing: the same answer as for no agent at all.
    theirs = AgentSocket(sandbox.api_url, email, stranger.key).closed_with()
    nobody = f"nobody-{secrets.token_hex(4)}@agents.sandbox.test"
    missing = AgentSocket(sandbox.api_url, nobody, stranger.key).closed_with()
    assert theirs.reason.replace(email, "X") == missing.reason.replace(nobody, "X")


def test_stopping_an_api_process_closes_its_clients_with_1001(sandbox, owner, second_api):
    other_base, proc, log = second_api
    clients = [AgentSocket(other_base, owner.agent(), owner.key) for _ in range(3)]
    for client in clients:
        client.quiet_for(0.1)
    code, took = terminate(proc)
    assert [c.closed_with(timeout=2) for c in clients] == [Closed(1001,
                                                                  "server shutting down")] * 3
    assert code == 0, log.read_text()
    assert took < 5, log.read_text()
