"""Fixtures shared by unit and system tests, and the run's rules under CI.

With ``CI=true``: property tests are derandomized (the same examples every
run, so a red build is the code's fault and reproduces), and a test that
would be skipped (not root, a tool missing, ``E2A_SKIP_DEB``) fails
instead, so a green build means the whole suite ran. Every run ends with
how many system tests ran.
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

from e2a.cli.sandbox.postgres import Cluster
from e2a.core import config
from e2a.core.db import migrate, single_connection

SYSTEM_TESTS = "tests/system/"


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


# No example database either: what ran before must not change what runs.
settings.register_profile("ci", derandomize=True, database=None, print_blob=True)
if in_ci():
    settings.load_profile("ci")


def _skip_fails(report: pytest.TestReport | pytest.CollectReport) -> None:
    if in_ci() and report.skipped and not hasattr(report, "wasxfail"):
        reason = (report.longrepr[2] if isinstance(report.longrepr, tuple)
                  else str(report.longrepr))
        report.outcome = "failed"
        report.longrepr = f"skipped under CI=true, where the whole suite must run: {reason}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    _skip_fails(outcome.get_result())  # type: ignore[attr-defined]


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> Iterator[None]:
    """A whole module skipped (pytest.skip(allow_module_level=True),
    importorskip) fails too."""
    outcome = yield
    _skip_fails(outcome.get_result())  # type: ignore[attr-defined]


_system_ran: set[str] = set()


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """A system test ran when its body ran, whatever came of it."""
    if report.when == "call" and report.nodeid.startswith(SYSTEM_TESTS):
        _system_ran.add(report.nodeid)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    terminalreporter.write_line(f"system tests run: {len(_system_ran)}")


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[Cluster]:
    """A throwaway PostgreSQL cluster for the whole run, stopped at the end.

    Not under pytest's tmp dir: that is private to root, and the cluster runs
    as the unprivileged postgres user."""
    root = Path(tempfile.mkdtemp(prefix="e2a-test-pg-"))
    os.chmod(root, 0o755)  # noqa: S103 - the postgres user must reach it
    cluster = Cluster(root)
    try:
        cluster.init()
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def cfg(pg_cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> config.Config:
    """A configuration pointing at the test cluster, with the schema applied."""
    path = Path(tmp_path_factory.mktemp("cfg")) / "e2a.toml"
    path.write_text(
        f'[database]\nurl = "{pg_cluster.url}"\n'
        f'[secrets]\nhmac_secret = "{secrets.token_hex(32)}"\n'
        '[mail]\nshared_domain = "agents.test.example"\nhostname = "mx.test.example"\n')
    loaded = config.load(path, env={})
    with single_connection(loaded, autocommit=True) as conn:
        migrate.migrate(conn)
    return loaded
