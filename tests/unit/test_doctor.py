"""`e2a doctor`: each check, against a real database and a real DNS server."""

from __future__ import annotations

import os
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import dns.resolver
import psycopg
import pytest
from servicesupport import E2A, free_udp_tcp_port

from e2a.cli import context, doctor
from e2a.cli.sandbox.dns import DnsServer
from e2a.cli.sandbox.postgres import Cluster
from e2a.core import accounts, config
from e2a.core import dns as core_dns
from e2a.core.db import migrate, single_connection

SECRET = "f3b1c9d2e4a5b6c7d8e9f0a1b2c3d4e5f6a7b8c9"


@pytest.fixture(autouse=True)
def _resolver_restored() -> Iterator[None]:
    """core.dns.configure sets dnspython's process-wide resolver; put it back."""
    previous = dns.resolver.default_resolver
    yield
    dns.resolver.default_resolver = previous


def load(tmp_path: Path, text: str) -> config.Config:
    path = tmp_path / f"{uuid.uuid4().hex}.toml"
    path.write_text(text)
    return config.load(path, env={})


def fresh_database(cluster: Cluster, tmp_path: Path, *, migrated: bool,
                   extra: str = "") -> config.Config:
    """A database of its own in the test cluster (empty, or migrated)."""
    name = f"doctor_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(cluster.url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = cluster.url.replace("@/e2a?", f"@/{name}?")
    cfg = load(tmp_path, f'[database]\nurl = "{url}"\n[secrets]\nhmac_secret = "{SECRET}"\n'
               + extra)
    if migrated:
        with single_connection(cfg, autocommit=True) as conn:
            migrate.migrate(conn)
            with conn.transaction():
                accounts.seed_shared_domain(conn, cfg)
    return cfg


def lines(findings: Iterable[doctor.Finding]) -> list[str]:
    return [f.line() for f in findings]


def test_a_migrated_database_and_a_sane_clock(cfg: config.Config) -> None:
    database, clock = doctor.check_database(cfg)
    assert database.line() == "OK   database: reachable, every migration applied"
    assert clock.status == "OK" and clock.check == "clock"


def test_pending_migrations_fail(pg_cluster: Cluster, tmp_path: Path) -> None:
    cfg = fresh_database(pg_cluster, tmp_path, migrated=False)
    [finding, _clock] = list(doctor.check_database(cfg))
    assert finding.status == "FAIL"
    assert "migrations not applied: 001_schema.sql" in finding.detail
    assert finding.detail.endswith("(run e2a db migrate)")


def test_an_unreachable_database_fails_and_says_nothing_of_clocks(tmp_path: Path) -> None:
    cfg = load(tmp_path, f'[database]\nurl = "postgresql://e2a@/e2a?host={tmp_path}/none"\n'
                         f'[secrets]\nhmac_secret = "{SECRET}"\n')
    [finding] = list(doctor.check_database(cfg))
    assert finding.status == "FAIL" and finding.check == "database"


def test_a_clock_seconds_off_the_databases_warns(cfg: config.Config,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    real = time.time
    monkeypatch.setattr(doctor.time, "time", lambda: real() + 30)
    [_, clock] = list(doctor.check_database(cfg))
    assert clock.status == "WARN"
    assert clock.detail.startswith("30.") and "apart from the database's" in clock.detail


def test_secrets_are_judged_never_shown(tmp_path: Path) -> None:
    good = load(tmp_path, f'[secrets]\nhmac_secret = "{SECRET}"\n')
    assert lines(doctor.check_secrets(good)) == [
        f"OK   secrets: secrets.hmac_secret set ({len(SECRET)} characters)",
        "OK   secrets: secrets.encryption_key not set: derived from secrets.hmac_secret"]
    typed = "ab" * 20
    weak = load(tmp_path, f'[secrets]\nhmac_secret = "{typed}"\nencryption_key = "{SECRET}"\n')
    found = list(doctor.check_secrets(weak))
    assert [f.status for f in found] == ["WARN", "OK"]
    assert all(typed not in f.line() and SECRET not in f.line() for f in found)


def test_dns_and_the_shared_domains_records(pg_cluster: Cluster, tmp_path: Path) -> None:
    server = DnsServer(tmp_path / "dns", free_udp_tcp_port(), pidfile=tmp_path / "dnsmasq.pid",
                       logfile=tmp_path / "dnsmasq.log")
    server.add_mx("agents.doctor.test", "mx.doctor.test")
    cfg = fresh_database(pg_cluster, tmp_path, migrated=True, extra=(
        f'[mail]\nhostname = "mx.doctor.test"\nshared_domain = "agents.doctor.test"\n'
        f'[dns]\nresolver = "{server.address}"\ntimeout = 2.0\n'))
    server.start()
    try:
        core_dns.configure(cfg)
        assert lines(doctor.check_dns(cfg)) == [
            f"OK   dns: {server.address} answers (MX of agents.doctor.test: mx.doctor.test)"]
        found = {f.detail.split()[1]: f for f in doctor.check_shared_domain(cfg)}
    finally:
        server.stop()
    assert found["mx"].status == "OK"
    assert found["spf"].status == "WARN"
    assert 'publish agents.doctor.test. TXT "v=spf1 mx -all"' in found["spf"].detail
    assert found["dkim"].status == "WARN"
    assert "._domainkey.agents.doctor.test. TXT \"v=DKIM1; k=rsa; p=" in found["dkim"].detail


def test_a_resolver_that_never_answers_fails(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        port = silent.getsockname()[1]
        cfg = load(tmp_path, f'[secrets]\nhmac_secret = "{SECRET}"\n'
                             f'[dns]\nresolver = "127.0.0.1:{port}"\n'
                             'timeout = 0.5\n[mail]\nhostname = "mx.doctor.test"\n')
        core_dns.configure(cfg)
        [finding] = list(doctor.check_dns(cfg))
    assert finding.status == "FAIL"
    assert finding.detail.startswith(f"127.0.0.1:{port} did not answer for mx.doctor.test")


def _doctor(config_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("E2A_")}
    env.update(E2A_CONFIG=str(config_path), PYTHONSAFEPATH="1")
    return subprocess.run([str(E2A), "doctor", *args], capture_output=True, text=True,
                          env=env, cwd=config_path.parent, timeout=120, check=False)


def test_the_command_prints_one_line_per_finding_and_fails_on_a_fail(
        cfg: config.Config, tmp_path: Path) -> None:
    path = tmp_path / "e2a.toml"
    path.write_text(f'[database]\nurl = "{cfg.database.url}"\n'
                    f'[secrets]\nhmac_secret = "{SECRET}"\n'
                    '[dns]\nresolver = "127.0.0.1:9"\ntimeout = 0.5\n')
    done = _doctor(path, "--postfix-directory", str(tmp_path / "no-postfix"))
    assert done.returncode == 1
    out = done.stdout.splitlines()
    assert out[0] == f"OK   config: {path}"
    assert "OK   database: reachable, every migration applied" in out
    assert any(line.startswith("FAIL dns: 127.0.0.1:9 did not answer") for line in out)
    assert any(line.startswith("FAIL postfix: postfix: ") for line in out)
    assert all(line[:5] in ("OK   ", "WARN ", "FAIL ") for line in out)


def test_no_configuration_is_one_fail_line(tmp_path: Path) -> None:
    path = tmp_path / "e2a.toml"
    path.write_text("[database]\n")
    done = _doctor(path)
    assert done.returncode == 1
    assert done.stdout == (f"FAIL config: {path}: secrets.hmac_secret: required, not set "
                           "(or set E2A_HMAC_SECRET)\n")


class _Health(BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        self.send_response(self.status if self.path == "/api/health" else 404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.mark.parametrize(("status", "verdict"), [(200, "OK"), (503, "FAIL"), (404, "FAIL")])
def test_the_api_answers_its_health_check(tmp_path: Path, status: int, verdict: str) -> None:
    handler = type("Handler", (_Health,), {"status": status})
    with ThreadingHTTPServer(("127.0.0.1", 0), handler) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        cfg = load(tmp_path, f'[secrets]\nhmac_secret = "{SECRET}"\n'
                             f'[http]\nlisten = "127.0.0.1:{server.server_port}"\n')
        [finding] = list(doctor.check_api(cfg))
        server.shutdown()
    assert (finding.check, finding.status) == ("api", verdict), finding


def test_no_api_fails_and_names_the_unit(tmp_path: Path) -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    cfg = load(tmp_path, f'[secrets]\nhmac_secret = "{SECRET}"\n'
                         f'[http]\nlisten = "127.0.0.1:{port}"\n')
    [finding] = list(doctor.check_api(cfg, timeout=1))
    assert finding.status == "FAIL"
    assert "systemctl status e2a-api" in finding.detail


def test_an_unknown_role_says_how_to_create_it() -> None:
    advice = context.database_advice(Exception('FATAL: role "root" does not exist'))
    assert "runuser -u postgres -- createuser e2a" in advice
