"""One held message, four parties resolving it at the same moment through the
real sandbox: an API approve, a magic-link POST, and the expiry job of two
running worker processes (the sandbox's and one more). Exactly one copy
reaches the capture server (the internet), and the message ends sent by
whoever came first: ``sent`` (a person) or ``expired_approved`` (a worker)."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from sandbox_harness import RunningSandbox, wait_until
from servicesupport import serve, terminate

from e2a.core import notification
from e2a.core.db import single_connection

pytestmark = pytest.mark.system

ELSEWHERE = "elsewhere.test"  # not ours: Postfix relays it to the capture server
# When the two people press their buttons, counted from the moment the hold
# expires: the workers poll every second, so each offset meets them at
# another point of their cycle.
OFFSETS = (0.0, 0.4, 0.8)


@pytest.fixture(scope="module")
def second_worker(sandbox: RunningSandbox, tmp_path_factory: pytest.TempPathFactory
                  ) -> Iterator[None]:
    """A second `e2a serve worker` beside the sandbox's own."""
    log = Path(tmp_path_factory.mktemp("worker2")) / "worker.log"
    with serve("worker", sandbox.config_path, log, ready="worker started") as proc:
        yield
        assert proc.poll() is None, log.read_text()
        terminate(proc, timeout=20)


def new_agent(sandbox: RunningSandbox) -> str:
    created = sandbox.api("POST", "/api/v1/agents", json={"slug": f"race-{uuid.uuid4().hex[:8]}",
                                                       "agent_mode": "local"})
    assert created.status_code in (200, 201), created.text
    return created.json()["email"]


@pytest.fixture(scope="module")
def plain_agent(sandbox: RunningSandbox) -> str:
    """An agent whose mail leaves at once."""
    return new_agent(sandbox)


@pytest.fixture(scope="module")
def hitl_agent(sandbox: RunningSandbox) -> str:
    """An agent of the sandbox user whose mail waits for approval and, once
    the hold expires, goes out anyway."""
    email = new_agent(sandbox)
    updated = sandbox.api("PUT", sandbox.agent_path(email), json={
        "hitl_enabled": True, "hitl_expiration_action": "approve", "hitl_ttl_seconds": 3600})
    assert updated.status_code == 200, updated.text
    return email


def query(sandbox: RunningSandbox, sql: str, *params: Any) -> dict[str, Any] | None:
    with single_connection(sandbox.box.config()) as conn:
        return conn.execute(sql, params).fetchone()


def held_by_the_filter(sandbox: RunningSandbox, message_id: str) -> bool:
    """The content filter has held the message Postfix handed it (it keeps
    the API's draft as it was: a held message's content never changes), so
    Postfix's queue has let go of it."""
    found = query(sandbox, "SELECT status FROM messages WHERE id = %s", message_id)
    logged = [line for line in sandbox.box.logfile("filter").read_text().splitlines()
              if "held for approval" in line and f"message_id={message_id}" in line]
    return bool(found and found["status"] == "pending_approval" and logged)


def copies(sandbox: RunningSandbox, body: str) -> int:
    return sum(body.encode() in c.data for c in sandbox.capture.messages())


@pytest.mark.parametrize("offset", OFFSETS)
def test_exactly_one_send_when_api_link_and_two_workers_race(
        sandbox, second_worker, hitl_agent, plain_agent, offset):
    body = f"race body {uuid.uuid4().hex}"  # never in the owner's notification
    response = sandbox.api("POST", "/api/v1/send", json={
        "from": hitl_agent, "to": [f"racer@{ELSEWHERE}"], "subject": "Race for approval",
        "body": body})
    assert response.status_code == 202, response.text
    assert response.json()["status"] == "pending_approval"
    message_id = response.json()["message_id"]
    wait_until(lambda: held_by_the_filter(sandbox, message_id), timeout=30,
               what="the filter holding the message")

    # The hold runs out shortly; the link is minted as the owner's email has it.
    row = query(sandbox, "UPDATE messages SET approval_expires_at = now() + interval '1.5 s' "
                         "WHERE id = %s RETURNING user_id, approval_expires_at", message_id)
    assert row is not None
    cfg = sandbox.box.config()
    link = notification.links(cfg, row["user_id"], message_id,
                              row["approval_expires_at"])["approve"]
    token = parse_qs(urlsplit(link).query)["token"][0]

    start = threading.Barrier(2)
    answers: dict[str, int] = {}

    def api_approve() -> None:
        start.wait()
        answers["api"] = sandbox.api("POST", f"/api/v1/messages/{message_id}/approve",
                                     json={}).status_code

    def link_approve() -> None:
        start.wait()
        answers["link"] = requests.post(f"{sandbox.api_url}/api/v1/approve",
                                        data={"token": token}, timeout=30).status_code

    people = [threading.Thread(target=api_approve), threading.Thread(target=link_approve)]
    delay = (row["approval_expires_at"] - datetime.now(UTC)).total_seconds() + offset
    time.sleep(max(0.0, delay))
    for person in people:
        person.start()
    for person in people:
        person.join(60)
    assert set(answers) == {"api", "link"}

    final = wait_until(lambda: query(sandbox, "SELECT status FROM messages WHERE id = %s "
                                              "AND status <> 'pending_approval'", message_id),
                       timeout=30, what="the message resolved")
    assert final["status"] in ("sent", "expired_approved")
    winners = [who for who, code in answers.items() if code == 200]
    assert set(answers.values()) <= {200, 409}, answers
    assert len(winners) + (final["status"] == "expired_approved") == 1, (answers, final)

    sandbox.capture.wait_for(lambda c: body.encode() in c.data, timeout=30)
    # Whatever else was on its way has had time to arrive behind it: a
    # sentinel through the same reinjection service, then the count.
    sentinel = f"sentinel {uuid.uuid4().hex}"
    settled = sandbox.api("POST", "/api/v1/send", json={
        "from": plain_agent, "to": [f"sentinel@{ELSEWHERE}"], "subject": sentinel,
        "body": sentinel})
    assert settled.status_code == 200, settled.text
    sandbox.capture.wait_for(lambda c: sentinel.encode() in c.data, timeout=30)
    assert copies(sandbox, body) == 1
