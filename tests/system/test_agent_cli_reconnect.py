"""`e2a listen` outlives the API's workers: killed (-9) under it, the
connection drops, gunicorn starts new workers, and the listener connects
again and prints the next mail."""

from __future__ import annotations

import os
import secrets
import signal
from pathlib import Path

import pytest
from sandbox_harness import RunningSandbox, wait_until
from test_agent_cli import Cli, finish, fresh_agent, mail_in

from sandbox import supervisor

pytestmark = pytest.mark.system
DISTURBS_SANDBOX = True  # the API's workers die: run after the others


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def test_listen_reconnects_after_the_api_workers_die(sandbox: RunningSandbox,
                                                      tmp_path: Path) -> None:
    cli = Cli(tmp_path, sandbox)
    cli.login()
    email = fresh_agent(cli, "reconnect")
    first, second = (f"{n} {secrets.token_hex(4)}" for n in ("before", "after"))
    proc = cli.start("listen", email, "--until", "90s")
    assert proc.stdout is not None
    mail_in(sandbox, email, first)
    assert first in proc.stdout.readline()

    keeper = supervisor.read_pid(sandbox.box.pidfile("api"))
    assert keeper is not None
    [master] = _children(keeper)
    workers = _children(master)
    assert workers
    for worker in workers:
        os.kill(worker, signal.SIGKILL)
    wait_until(lambda: [w for w in _children(master) if w not in workers], timeout=30,
               what="new API workers")
    mail_in(sandbox, email, second)
    line = proc.stdout.readline()
    assert second in line, line
    proc.send_signal(signal.SIGINT)
    code, out, err = finish(proc, timeout=15)
    assert code == 0, err
    assert "reconnecting" in err or "retrying" in err, err
    assert first not in out  # the first mail, drained again on reconnect, printed once
