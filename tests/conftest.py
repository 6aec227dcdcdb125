"""Fixtures shared by unit and system tests."""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from e2a.core import config
from e2a.core.db import migrate, single_connection
from sandbox.postgres import Cluster


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
