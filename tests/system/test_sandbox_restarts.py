"""The sandbox behaves like production when a service dies: its keeper starts
it again (systemd's Restart=on-failure), and mail flows on."""

from __future__ import annotations

import os
import signal
import uuid
from pathlib import Path

import pytest
from sandbox_harness import RunningSandbox, compose, smtp_send, wait_until

from e2a.cli.sandbox import supervisor

pytestmark = pytest.mark.system
# Kills services of the shared sandbox; run after the rest.
DISTURBS_SANDBOX = True

BACK_WITHIN = 30.0


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


@pytest.mark.parametrize("name", ["milter", "policy", "filter", "worker"])
def test_kill_9_of_a_service_is_repaired(sandbox: RunningSandbox, name: str) -> None:
    box = sandbox.box
    keeper = supervisor.read_pid(box.pidfile(name))
    assert keeper is not None, f"{name} is not running"
    [service] = _children(keeper)
    os.kill(service, signal.SIGKILL)

    def replaced() -> int | None:
        now = [c for c in _children(keeper) if c != service]
        return now[0] if now else None

    wait_until(replaced, timeout=BACK_WITHIN, what=f"{name} started again")
    listen = box.listen(name)
    if listen:
        wait_until(lambda: supervisor.accepts(listen), timeout=BACK_WITHIN,
                   what=f"{name} listening on {listen} again")
    assert supervisor.read_pid(box.pidfile(name)) == keeper
    assert "exited with signal 9; restarting" in box.logfile(name).read_text()
    # Mail through the restarted parts is stored, as before.
    subject = f"after kill -9 of {name} {uuid.uuid4().hex[:8]}"

    def accepted() -> bool:
        reply = smtp_send(sandbox.smtp_port, "ada@sandbox.test", sandbox.agent_email,
                          compose("ada@sandbox.test", sandbox.agent_email, subject, "hi\n"))
        assert reply.code < 500, reply
        return reply.code == 250

    wait_until(accepted, timeout=BACK_WITHIN, what="250 after the restart")
