"""PostgreSQL down: the SMTP client is told to try again (4xx), never 250, and
the retry after the database is back stores the message exactly once. Once
through the public smtpd (the policy service may refuse first, at RCPT), once
through one without the policy service, where the answer is the milter's own
451 at end of data."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest
from sandbox_harness import Reply, RunningSandbox, compose, smtp_send, wait_until

pytestmark = pytest.mark.system
# Stopping PostgreSQL leaves stale pooled connections behind; run after the rest.
DISTURBS_SANDBOX = True

RECOVERY_TIMEOUT = 90.0
RETRY_INTERVAL = 1.0  # a sending MTA's queue, much sped up
SENDER = "ada@sandbox.test"


def listed(sandbox: RunningSandbox, subject: str) -> list[dict[str, Any]] | None:
    response = sandbox.api("GET", sandbox.agent_path() + "/messages")
    if response.status_code == 503:
        return None  # "retry later": a pooled connection from before the restart
    assert response.status_code == 200, response.text
    return [m for m in response.json()["messages"] if m["subject"] == subject]


def sent_while_down(sandbox: RunningSandbox, port: int, data: bytes) -> tuple[Reply, float]:
    """What the client hears for ``data`` while PostgreSQL is stopped, and
    how many seconds the SMTP transaction took."""
    sandbox.cluster.stop()
    try:
        assert not sandbox.cluster.running()
        started = time.monotonic()
        reply = smtp_send(port, SENDER, sandbox.agent_email, data)
        return reply, time.monotonic() - started
    finally:
        sandbox.cluster.start()


def retried_until_accepted(sandbox: RunningSandbox, port: int, data: bytes,
                           refused: Reply) -> list[Reply]:
    """The same bytes again, as a real MTA would retry them, until 250."""
    attempts = [refused]

    def accepted() -> bool:
        attempts.append(smtp_send(port, SENDER, sandbox.agent_email, data))
        # Never a 5xx: that would bounce the message.
        assert attempts[-1].code == 250 or 400 <= attempts[-1].code < 500, attempts
        return attempts[-1].code == 250

    wait_until(accepted, timeout=RECOVERY_TIMEOUT, interval=RETRY_INTERVAL,
               what="accepted after the outage")
    return attempts


def assert_stored_once(sandbox: RunningSandbox, port: int, subject: str) -> None:
    wait_until(lambda: listed(sandbox, subject), timeout=10,
               what="the message listed by the API")
    # The sentinel: a message after it by the same way. Once it is listed, a
    # late duplicate of a refused attempt would be listed too.
    marker = f"sentinel {uuid.uuid4().hex}"
    reply = smtp_send(port, SENDER, sandbox.agent_email,
                      compose(SENDER, sandbox.agent_email, marker, "After the retries.\n"))
    assert reply.code == 250, reply
    wait_until(lambda: listed(sandbox, marker), timeout=10, what="the sentinel listed")
    assert len(listed(sandbox, subject) or []) == 1
# database.connect_timeout (1 s by default) bounds each wait for a connection;
# the rest is SMTP on loopback, with room for a loaded machine.
TEMPFAIL_WITHIN = 2.0


def test_postgres_outage_tempfails_and_loses_nothing(sandbox: RunningSandbox) -> None:
    subject = f"during the outage {uuid.uuid4().hex}"
    data = compose(SENDER, sandbox.agent_email, subject, "Keep this one safe.\n")

    refused, took = sent_while_down(sandbox, sandbox.smtp_port, data)
    assert 400 <= refused.code < 500, refused
    assert refused.stage in ("RCPT", "DATA"), refused
    assert took < TEMPFAIL_WITHIN, f"4xx after {took:.2f}s: {refused}"

    retried_until_accepted(sandbox, sandbox.smtp_port, data, refused)
    assert_stored_once(sandbox, sandbox.smtp_port, subject)


def test_without_the_policy_service_the_milter_answers_451(sandbox: RunningSandbox,
                                                          smtpd_no_policy) -> None:
    subject = f"milter in the outage {uuid.uuid4().hex}"
    data = compose(SENDER, sandbox.agent_email, subject, "Keep this one safe too.\n")

    refused, _ = sent_while_down(sandbox, smtpd_no_policy.port, data)
    # RCPT passed (no policy service; the agent domain is a static relay
    # domain): the milter itself tempfailed at end of data.
    assert (refused.stage, refused.code) == ("DATA", 451), refused
    assert refused.text.startswith("4.3.0"), refused

    retried_until_accepted(sandbox, smtpd_no_policy.port, data, refused)
    assert_stored_once(sandbox, smtpd_no_policy.port, subject)
