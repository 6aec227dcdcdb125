"""The sandbox's user, key and agent: created once, then the same on every run."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

from e2a.core.accounts import apikeys
from e2a.core.db import single_connection
from e2a.core.store import agents as agent_store
from e2a.core.store import users as user_store
from sandbox.postgres import Cluster
from sandbox.stack import Ports, Sandbox


def _sandbox(root: Path, cluster: Cluster) -> Sandbox:
    box = Sandbox(root, Ports.free())
    box.cluster = cluster  # the session's cluster: nothing else of the sandbox runs
    box.write_config()
    box.migrate()
    return box


def test_bootstrap_once_then_reuse(tmp_path: Path, pg_cluster: Cluster) -> None:
    box = _sandbox(tmp_path, pg_cluster)
    email, slug = f"dev-{uuid.uuid4().hex[:8]}@sandbox.test", f"bot-{uuid.uuid4().hex[:8]}"

    first = box.bootstrap(email, slug)
    assert apikeys.is_well_formed(first.api_key)
    assert first.agent_email == f"{slug}@agents.sandbox.test"
    saved = json.loads(box.summary_path.read_text())
    assert saved["api_key"] == first.api_key
    assert saved["examples"]["read"] == first.read_example
    assert box.summary_path.stat().st_mode & 0o077 == 0  # the key is not for others

    again = _sandbox(tmp_path, pg_cluster).bootstrap(email, slug)
    # Same key: what the developer copied still works.
    assert (again.api_key, again.agent_email) == (first.api_key, first.agent_email)
    with single_connection(box.config()) as conn:
        user = user_store.user_by_email(conn, email)
        key = user_store.api_key_by_hash(conn, apikeys.digest(first.api_key))
        agent = agent_store.agent_by_email(conn, first.agent_email)
        keys = conn.execute("SELECT count(*) AS n FROM api_keys WHERE user_id = %s",
                            (user["id"],)).fetchone()["n"]
    assert key["user_id"] == user["id"]
    assert agent["user_id"] == user["id"] and agent["agent_mode"] == "local"
    assert keys == 1


def test_a_key_the_database_does_not_know_is_replaced(tmp_path: Path,
                                                      pg_cluster: Cluster) -> None:
    box = _sandbox(tmp_path, pg_cluster)
    email, slug = f"dev-{uuid.uuid4().hex[:8]}@sandbox.test", f"bot-{uuid.uuid4().hex[:8]}"
    first = box.bootstrap(email, slug)
    # What a wiped database looks like from sandbox.json's side.
    saved = json.loads(box.summary_path.read_text())
    saved["api_key"] = apikeys.generate()
    box.summary_path.write_text(json.dumps(saved))

    second = box.bootstrap(email, slug)
    assert second.api_key not in (first.api_key, saved["api_key"])
    with single_connection(box.config()) as conn:
        assert user_store.api_key_by_hash(conn, apikeys.digest(second.api_key)) is not None
