"""PostgreSQL down: the SMTP client is told to try again (4xx), never 250, and
the retry after the database is back stores the message exactly once."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest
from sandbox_harness import RunningSandbox, compose, smtp_send, wait_until

pytestmark = pytest.mark.system
# Stopping PostgreSQL leaves stale pooled connections behind; run after the rest.
DISTURBS_SANDBOX = True

RECOVERY_TIMEOUT = 90.0
# database.connect_timeout (1 s by default) bounds each wait for a connection;
# the rest is SMTP on loopback, with room for a loaded machine.
TEMPFAIL_WITHIN = 2.0


def test_postgres_outage_tempfails_and_loses_nothing(sandbox: RunningSandbox) -> None:
    subject = f"during the outage {uuid.uuid4().hex}"
    sender = "ada@sandbox.test"
    data = compose(sender, sandbox.agent_email, subject, "Keep this one safe.\n")

    sandbox.cluster.stop()
    try:
        assert not sandbox.cluster.running()
        started = time.monotonic()
        refused = smtp_send(sandbox.smtp_port, sender, sandbox.agent_email, data)
        took = time.monotonic() - started
        assert 400 <= refused.code < 500, refused
        assert refused.stage in ("RCPT", "DATA"), refused
        assert took < TEMPFAIL_WITHIN, f"4xx after {took:.2f}s: {refused}"
    finally:
        sandbox.cluster.start()

    # The client retries the same bytes, as a real MTA would, until accepted.
    deadline = time.monotonic() + RECOVERY_TIMEOUT
    attempts = [refused]
    while attempts[-1].code != 250:
        assert 400 <= attempts[-1].code < 500, attempts  # never a 5xx: that would bounce it
        assert time.monotonic() < deadline, f"not accepted after the outage: {attempts}"
        time.sleep(1)
        attempts.append(smtp_send(sandbox.smtp_port, sender, sandbox.agent_email, data))

    def listed() -> list[dict[str, Any]] | None:
        response = sandbox.api("GET", sandbox.agent_path() + "/messages")
        if response.status_code == 503:
            return None  # "retry later": a pooled connection from before the restart
        assert response.status_code == 200, response.text
        return [m for m in response.json()["messages"] if m["subject"] == subject]

    wait_until(listed, timeout=10, what="the message listed by the API")
    time.sleep(1)  # a late duplicate from a refused attempt would show up by now
    listed = [m for m in sandbox.messages() if m["subject"] == subject]
    assert len(listed) == 1, listed
