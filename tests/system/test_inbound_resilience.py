"""Outages in the middle of a steady stream of mail through the real Postfix:
PostgreSQL stopped for a few seconds, the milter killed. Every message the
client got 250 for is stored exactly once; every one refused with a 4xx is
stored exactly once after the client's retries; no 5xx; nothing lost."""

from __future__ import annotations

import os
import signal
import smtplib
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
from sandbox_harness import Reply, RunningSandbox, compose, smtp_send, wait_until

from e2a.cli.sandbox import supervisor
from e2a.core.db import single_connection

pytestmark = pytest.mark.system
# Both tests take parts of the sandbox down; run after the rest.
DISTURBS_SANDBOX = True

INTERVAL = 0.1  # a new message every 100 ms
RETRY_DELAY = 0.5  # a 4xx is retried this long after
DRAIN_TIMEOUT = 60.0  # for the retries once the outage is over
SENDER = "stream@sandbox.test"
# Each outage lasts until the stream has felt it (a 4xx); short ones are
# absorbed by waiting (the policy service waits 5 s for a connection, and
# Postfix asks it twice, 1 s apart), so this bounds it generously.
OUTAGE_TIMEOUT = 60.0


@dataclass
class Stream:
    """One client thread: a new message every INTERVAL, and the 4xx ones
    retried, same bytes, like a sending MTA's queue."""

    sandbox: RunningSandbox
    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    accepted: dict[str, int] = field(default_factory=dict)  # subject -> 250s
    refused: list[Reply] = field(default_factory=list)  # the 4xx answers
    failed: list[str] = field(default_factory=list)  # 5xx: must stay empty
    errors: list[str] = field(default_factory=list)  # no SMTP answer (retried)
    subjects: list[str] = field(default_factory=list)  # every message made

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="smtp-stream", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def wait_for(self, count: int, timeout: float = 30.0) -> None:
        """Until ``count`` messages have been accepted in all."""
        deadline = time.monotonic() + timeout
        while sum(self.accepted.values()) < count:
            assert time.monotonic() < deadline, f"stream stuck: {self.report()}"
            time.sleep(0.05)

    def finish(self) -> None:
        """No new messages; wait until every one made was accepted."""
        self._stop.set()
        self._thread.join(DRAIN_TIMEOUT)
        assert not self._thread.is_alive(), f"not all accepted in time: {self.report()}"

    def report(self) -> str:
        return (f"{len(self.subjects)} made, {sum(self.accepted.values())} accepted, "
                f"{len(self.refused)} refused {self.refused[-3:]}, failed {self.failed[-3:]}, "
                f"errors {self.errors[-3:]}")

    def _run(self) -> None:
        retries: list[tuple[float, str, bytes]] = []
        next_new = time.monotonic()
        while True:
            now = time.monotonic()
            due = [r for r in retries if r[0] <= now]
            if due:
                item = due[0]
                retries.remove(item)
                _, subject, data = item
            elif not self._stop.is_set() and now >= next_new:
                subject = f"stream {self.tag} {len(self.subjects):04d}"
                self.subjects.append(subject)
                data = compose(SENDER, self.sandbox.agent_email, subject, f"{subject}\n")
                next_new = now + INTERVAL
            elif self._stop.is_set() and not retries:
                return
            else:
                time.sleep(0.01)
                continue
            try:
                reply = smtp_send(self.sandbox.smtp_port, SENDER, self.sandbox.agent_email,
                                  data)
            except (OSError, smtplib.SMTPException) as exc:
                self.errors.append(f"{subject}: {exc!r}")
                retries.append((time.monotonic() + RETRY_DELAY, subject, data))
                continue
            if reply.code == 250:
                self.accepted[subject] = self.accepted.get(subject, 0) + 1
            elif 400 <= reply.code < 500:
                self.refused.append(reply)
                retries.append((time.monotonic() + RETRY_DELAY, subject, data))
            else:
                self.failed.append(f"{subject}: {reply}")


def _stored(sandbox: RunningSandbox, tag: str) -> dict[str, int]:
    with single_connection(sandbox.box.config()) as conn:
        rows = conn.execute(
            """SELECT subject, count(*) AS n FROM messages
                WHERE recipient = %s AND subject LIKE %s GROUP BY subject""",
            (sandbox.agent_email, f"stream {tag} %")).fetchall()
    return {r["subject"]: r["n"] for r in rows}


def _outage_in_a_stream(sandbox: RunningSandbox, outage: Callable[[Stream], None]) -> Stream:
    stream = Stream(sandbox)
    stream.start()
    try:
        stream.wait_for(5)  # flowing before the outage
        outage(stream)
        before = sum(stream.accepted.values())
        stream.wait_for(before + 10)  # and flowing again after it
    finally:
        stream.finish()
    return stream


def felt(stream: Stream, refusal: Callable[[Reply], bool]) -> None:
    """Until the stream has been refused (4xx) in the way ``refusal`` says,
    from now on: the outage lasts as long as it takes to be seen."""
    before = len(stream.refused)
    wait_until(lambda: any(refusal(r) for r in stream.refused[before:]),
               timeout=OUTAGE_TIMEOUT, interval=0.05, what=f"the outage felt: {stream.report()}")


def _assert_exactly_once(sandbox: RunningSandbox, stream: Stream) -> None:
    assert stream.failed == [], stream.report()
    assert stream.refused, f"the outage was never felt: {stream.report()}"
    assert all(stream.accepted.get(s) == 1 for s in stream.subjects), stream.report()
    stored = _stored(sandbox, stream.tag)
    assert sorted(stored) == sorted(stream.subjects), "lost or unexpected messages"
    assert set(stored.values()) == {1}, {s: n for s, n in stored.items() if n != 1}


def test_postgres_stopped_mid_stream_loses_and_duplicates_nothing(
        sandbox: RunningSandbox) -> None:
    def outage(stream: Stream) -> None:
        sandbox.cluster.stop()
        try:
            felt(stream, lambda reply: True)
        finally:
            sandbox.cluster.start()

    stream = _outage_in_a_stream(sandbox, outage)
    _assert_exactly_once(sandbox, stream)
    # The refusals were tempfails from our side: the policy service's default
    # action (RCPT) or the milter's 451 (end of data).
    assert {r.stage for r in stream.refused} <= {"RCPT", "DATA"}, stream.refused


def _children(pid: int) -> list[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as listing:
        return [int(c) for c in listing.read().split()]


def test_milter_killed_mid_stream_loses_and_duplicates_nothing(
        sandbox: RunningSandbox) -> None:
    def outage(stream: Stream) -> None:
        box = sandbox.box
        keeper = supervisor.read_pid(box.pidfile("milter"))
        assert keeper is not None
        [milter] = _children(keeper)
        # The keeper (systemd's Restart= in the sandbox) would bring the
        # milter back within a second; held, it lets the outage be felt.
        os.kill(keeper, signal.SIGSTOP)
        try:
            os.kill(milter, signal.SIGKILL)
            # Postfix's own 451 4.7.1 for the milter it cannot reach.
            felt(stream, lambda reply: reply.code == 451 and reply.text.startswith("4.7.1"))
        finally:
            os.kill(keeper, signal.SIGCONT)
        wait_until(lambda: [c for c in _children(keeper) if c != milter], timeout=30,
                   what="the milter started again by its keeper")
        wait_until(lambda: supervisor.accepts(box.listen("milter")), timeout=30,
                   what="the milter listening again")

    stream = _outage_in_a_stream(sandbox, outage)
    _assert_exactly_once(sandbox, stream)
    # milter_default_action = tempfail: Postfix's own 451 4.7.1 while the
    # milter is gone.
    assert any(r.code == 451 and r.text.startswith("4.7.1") for r in stream.refused), \
        stream.refused
