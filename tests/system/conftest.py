"""The whole sandbox for system tests: real PostgreSQL, Postfix, dnsmasq, the
capture server and our five services as subprocesses, on free loopback ports.

One sandbox serves the whole session; it is torn down at the end even when
tests fail or the run is interrupted (Ctrl-C, or SIGTERM turned into one).
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any

import pytest
from sandbox_harness import RunningSandbox, Smtpd, new_agent, smtpd_without_policy

from e2a.cli.sandbox.stack import Ports, Sandbox


def _interrupt_on_sigterm() -> None:
    """A SIGTERM (a CI timeout, say) unwinds like Ctrl-C, so teardown runs."""
    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, interrupt)


@pytest.fixture(scope="session")
def sandbox(request: pytest.FixtureRequest) -> Iterator[RunningSandbox]:
    if os.geteuid() != 0:
        pytest.skip("the sandbox runs a private Postfix, which needs root")
    _interrupt_on_sigterm()
    # Not pytest's tmp_path: that is private to root, and Postfix and
    # PostgreSQL run as unprivileged users that must reach their files.
    root = Path(tempfile.mkdtemp(prefix="e2a-test-sandbox-"))
    root.chmod(0o755)
    box = Sandbox(root, Ports.free())
    started = False
    try:
        box.up()
        running = RunningSandbox.of(box, box.bootstrap())
        started = True
        yield running
    finally:
        try:
            box.down()
        finally:
            if os.environ.get("E2A_KEEP_SANDBOX"):
                print(f"\nsandbox kept: {root}", file=sys.stderr)
            elif not started or request.session.testsfailed:
                # The logs tell why; the database files would only fill /tmp.
                shutil.rmtree(box.cluster.data, ignore_errors=True)
                print(f"\nsandbox logs kept for inspection: {root}", file=sys.stderr)
            else:
                shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def smtpd_no_policy(sandbox: RunningSandbox) -> Iterator[Smtpd]:
    with smtpd_without_policy(sandbox) as smtpd:
        yield smtpd


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that disturb the shared sandbox (stopping PostgreSQL, ...) set
    ``DISTURBS_SANDBOX = True`` in their module and run after the others, so
    no other test inherits their aftermath."""
    items.sort(key=lambda item: bool(getattr(getattr(item, "module", None),
                                             "DISTURBS_SANDBOX", False)))


@pytest.fixture(scope="module")
def held_agent(sandbox: RunningSandbox) -> dict[str, Any]:
    """An agent of the sandbox's user with HITL on, one per test module."""
    return new_agent(sandbox, hitl=True, prefix="held")


@pytest.fixture(scope="module")
def free_agent(sandbox: RunningSandbox) -> dict[str, Any]:
    """An agent of the sandbox's user with HITL off, one per test module."""
    return new_agent(sandbox, hitl=False, prefix="free")
