"""The SMTP client hears 250 only after the message's PostgreSQL commit, and
451 when the store fails: through the real Postfix and the real milter
process, on an smtpd of the sandbox's Postfix WITHOUT the policy service in
front, so every answer here is the milter's own (the policy service would
otherwise refuse at RCPT while the database is unwell).

The commit is held, not raced: a deferred trigger, installed for this test's
subjects only, makes the milter's commit wait on an advisory lock that the
test holds. While it waits the row is not visible and the client has no
answer; released, the client gets 250 and the row is there. A trigger that
raises makes the INSERT itself fail: 451, and no row.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from sandbox_harness import Reply, RunningSandbox, compose, smtp_send, wait_until

from e2a.core.db import single_connection

pytestmark = pytest.mark.system

SENDER = "ada@sandbox.test"
# The advisory lock the held commit waits on (any key no product code uses).
LOCK_KEY = 0x7E57_C0DE
# How long the client is watched for an early answer while the commit is
# held. With the store on the reply path no answer can come at all; with it
# off the path (the bug this catches) Postfix answers within milliseconds.
WATCH_SECONDS = 3.0
HELD_PREFIX = "commit-held"
FAILING_PREFIX = "insert-fails"

_TRIGGERS = f"""
CREATE FUNCTION e2a_test_hold_commit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock({LOCK_KEY});
    RETURN NULL;
END $$;
CREATE CONSTRAINT TRIGGER e2a_test_hold_commit AFTER INSERT ON messages
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
    WHEN (NEW.subject LIKE '{HELD_PREFIX} %') EXECUTE FUNCTION e2a_test_hold_commit();
CREATE FUNCTION e2a_test_fail_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'e2a test: this insert fails';
END $$;
CREATE TRIGGER e2a_test_fail_insert BEFORE INSERT ON messages FOR EACH ROW
    WHEN (NEW.subject LIKE '{FAILING_PREFIX} %') EXECUTE FUNCTION e2a_test_fail_insert();
"""
_DROP = """
DROP TRIGGER IF EXISTS e2a_test_hold_commit ON messages;
DROP FUNCTION IF EXISTS e2a_test_hold_commit();
DROP TRIGGER IF EXISTS e2a_test_fail_insert ON messages;
DROP FUNCTION IF EXISTS e2a_test_fail_insert();
"""


@pytest.fixture(scope="module")
def triggers(sandbox: RunningSandbox) -> Iterator[None]:
    with single_connection(sandbox.box.config(), autocommit=True) as conn:
        conn.execute(_DROP)
        conn.execute(_TRIGGERS)
    try:
        yield
    finally:
        with single_connection(sandbox.box.config(), autocommit=True) as conn:
            conn.execute(_DROP)


def stored(sandbox: RunningSandbox, subject: str) -> int:
    """Committed rows of ``subject``, as any other session sees them."""
    with single_connection(sandbox.box.config()) as conn:
        return conn.execute("SELECT count(*) AS n FROM messages WHERE subject = %s",
                            (subject,)).fetchone()["n"]


def waiting_on_lock(conn: psycopg.Connection) -> bool:
    """Some session (the milter's) waits for LOCK_KEY, at its commit."""
    return conn.execute(
        """SELECT count(*) AS n FROM pg_locks
            WHERE locktype = 'advisory' AND NOT granted AND classid = 0 AND objid = %s""",
        (LOCK_KEY,)).fetchone()["n"] > 0


class Client(threading.Thread):
    """One SMTP transaction in the background; ``reply`` once it ended."""

    def __init__(self, port: int, rcpt: str, data: bytes) -> None:
        super().__init__(name="smtp-client", daemon=True)
        self.port, self.rcpt, self.data = port, rcpt, data
        self.reply: Reply | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.reply = smtp_send(self.port, SENDER, self.rcpt, self.data)
        except BaseException as exc:  # reported by the test
            self.error = exc


def test_250_comes_only_after_the_commit(sandbox, smtpd_no_policy, triggers):
    subject = f"{HELD_PREFIX} {uuid.uuid4().hex}"
    data = compose(SENDER, sandbox.agent_email, subject, "Held at the commit.\n")
    with single_connection(sandbox.box.config(), autocommit=True) as lock:
        lock.execute("SELECT pg_advisory_lock(%s)", (LOCK_KEY,))
        client = Client(smtpd_no_policy.port, sandbox.agent_email, data)
        client.start()
        try:
            with single_connection(sandbox.box.config(), autocommit=True) as watch:
                wait_until(lambda: waiting_on_lock(watch), timeout=60,
                           what="the milter's commit waiting on the lock")
            assert stored(sandbox, subject) == 0  # inserted, not committed
            client.join(WATCH_SECONDS)
            assert client.is_alive() and client.reply is None, \
                f"the client was answered before the commit: {client.reply or client.error}"
        finally:
            lock.execute("SELECT pg_advisory_unlock(%s)", (LOCK_KEY,))
    client.join(60)
    assert client.error is None, client.error
    assert client.reply is not None and (client.reply.stage, client.reply.code) == ("DATA", 250)
    assert stored(sandbox, subject) == 1


def test_a_failing_insert_is_answered_451_and_stores_nothing(sandbox, smtpd_no_policy,
                                                           triggers):
    subject = f"{FAILING_PREFIX} {uuid.uuid4().hex}"
    data = compose(SENDER, sandbox.agent_email, subject, "This insert fails.\n")
    reply = smtp_send(smtpd_no_policy.port, SENDER, sandbox.agent_email, data)
    # The milter's own answer at end of data: RCPT passed, no policy service.
    assert (reply.stage, reply.code) == ("DATA", 451), reply
    assert reply.text.startswith("4.3.0"), reply
    assert stored(sandbox, subject) == 0
    # The sender's retry, once the database takes the row, stores it once.
    with single_connection(sandbox.box.config(), autocommit=True) as conn:
        conn.execute("DROP TRIGGER e2a_test_fail_insert ON messages")
    again = smtp_send(smtpd_no_policy.port, SENDER, sandbox.agent_email, data)
    assert (again.stage, again.code) == ("DATA", 250), again
    assert stored(sandbox, subject) == 1
