"""Prometheus metrics: counters move with the mail, /metrics answers in text
format (one worker's and all workers' values), a service serves its port."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import Milter
import pytest
import requests
from apisupport import api_client
from mailworld import zones_served
from milterdriver import feed, installed
from prometheus_client import REGISTRY
from servicesupport import free_port, serve, terminate, write_config

from e2a.core import accounts
from e2a.core.db import open_pool, single_connection
from e2a.milter.handler import InboundMilter

RAW = (b"From: Alice <alice@example.org>\r\n"
       b"To: counted@agents.test.example\r\n"
       b"Subject: counted\r\n"
       b"Message-ID: <metrics-1@example.org>\r\n"
       b"\r\n"
       b"Count me.\r\n")
RCPT = ["counted@agents.test.example"]


def inbound(result: str) -> float:
    return REGISTRY.get_sample_value(
        "e2a_inbound_messages_total", {"verdict": "unverified", "result": result}) or 0.0


@pytest.fixture(scope="module")
def agent(cfg):
    with single_connection(cfg) as conn:
        accounts.seed_shared_domain(conn, cfg)
        user = accounts.create_user(conn, "metrics-owner@example.net")
        return accounts.register_agent(conn, cfg, user["id"], slug="counted")


@pytest.fixture(scope="module")
def zones(tmp_path_factory):
    with zones_served(tmp_path_factory.mktemp("zones")) as server:
        yield server


def test_inbound_counters_follow_the_milter(cfg, agent, zones):
    stored, duplicate, tempfail = inbound("stored"), inbound("duplicate"), inbound("tempfail")
    auth_before = REGISTRY.get_sample_value(
        "e2a_stage_seconds_count", {"stage": "milter_auth"}) or 0.0
    with installed(cfg):
        assert feed(RAW, "alice@example.org", RCPT, queue_id="M1").code == Milter.DISCARD
        assert inbound("stored") == stored + 1
        # The same message again (a retry after a lost 250): a duplicate, not stored.
        assert feed(RAW, "alice@example.org", RCPT, queue_id="M2").code == Milter.DISCARD
        assert inbound("duplicate") == duplicate + 1
        assert inbound("stored") == stored + 1
        pool = InboundMilter.pool
        InboundMilter.pool = open_pool(cfg, name="closed", wait=False)
        InboundMilter.pool.close()
        try:
            out = feed(RAW.replace(b"metrics-1", b"metrics-2"), "alice@example.org", RCPT)
        finally:
            InboundMilter.pool = pool
    assert out.code == Milter.TEMPFAIL
    assert inbound("tempfail") == tempfail + 1
    assert REGISTRY.get_sample_value(
        "e2a_stage_seconds_count", {"stage": "milter_auth"}) == auth_before + 2


def test_metrics_endpoint_answers_prometheus_text(cfg):
    with api_client(cfg) as client:
        assert client.simulate_get("/api/health").status_code == 200
        result = client.simulate_get("/metrics")
    assert result.status_code == 200
    assert result.headers["content-type"].startswith("text/plain; version=0.0.4")
    text = result.text
    for name in ("e2a_inbound_messages_total", "e2a_outbound_messages_total",
                 "e2a_holds_total", "e2a_approvals_total", "e2a_webhook_deliveries_total",
                 "e2a_stage_seconds"):
        assert f"# TYPE {name} " in text, name
    assert 'e2a_stage_seconds_count{stage="api_request"}' in text


COUNT_ONE = ("from e2a.core import metrics; "
             "metrics.outbound_messages.labels(status='sent').inc()")


def test_multiprocess_mode_adds_up_every_process(tmp_path):
    """What GET /metrics shows under gunicorn: the workers' values summed."""
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    python = [sys.executable, "-P", "-c"]
    for _ in range(2):
        subprocess.run([*python, COUNT_ONE], env=env, check=True, cwd=tmp_path)
    shown = subprocess.run([*python, "from e2a.core import metrics; "
                            "print(metrics.exposition().decode())"],
                           env=env, check=True, cwd=tmp_path, capture_output=True, text=True)
    assert 'e2a_outbound_messages_total{status="sent"} 2.0' in shown.stdout


def test_serve_api_reports_all_workers_and_removes_its_directory(cfg, tmp_path,
                                                                 monkeypatch):
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(tmp))  # where the server makes its directory
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    base = f"127.0.0.1:{free_port()}"
    conf = write_config(cfg, tmp_path / "e2a.toml",
                        f'[http]\nlisten = "{base}"\nworkers = 2\n')
    # "api serving": the workers serve (its readiness probe answered).
    with serve("api", conf, tmp_path / "api.log", "api serving") as proc:
        before = _api_requests(requests.get(f"http://{base}/metrics", timeout=5).text)
        for _ in range(12):  # fresh connections: the workers share them out
            assert requests.get(f"http://{base}/api/health", timeout=5).status_code == 200
        after = _api_requests(requests.get(f"http://{base}/metrics", timeout=5).text)
        [made] = tmp.glob("e2a-api-metrics-*")
        assert list(made.glob("*.db"))
        code, _ = terminate(proc)
    assert code == 0
    assert after - before == 12 + 1  # ours, and the first GET /metrics
    assert not made.exists()  # the master's own directory: gone with it


def _api_requests(exposition: str) -> float:
    counted = re.search(r'e2a_stage_seconds_count\{stage="api_request"\} ([0-9.]+)',
                        exposition)
    assert counted is not None, exposition
    return float(counted[1])


def test_serve_policy_serves_its_metrics_port(cfg, tmp_path):
    port = free_port()
    sockdir = Path(tempfile.mkdtemp(prefix="e2a-polm-"))  # short: unix socket paths
    try:
        conf = write_config(cfg, tmp_path / "e2a.toml",
                            f'[policy]\nlisten = "unix:{sockdir / "p.sock"}"\n'
                            f'socketmap_listen = "unix:{sockdir / "s.sock"}"\n'
                            f'[metrics]\npolicy_listen = "127.0.0.1:{port}"\n')
        with serve("policy", conf, tmp_path / "policy.log",
                   f"policy metrics on http://127.0.0.1:{port}/metrics") as proc:
            answer = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
            code, _ = terminate(proc)
    finally:
        shutil.rmtree(sockdir, ignore_errors=True)
    assert code == 0
    assert answer.status_code == 200
    assert "# TYPE e2a_stage_seconds histogram" in answer.text
