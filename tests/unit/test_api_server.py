"""`e2a serve api` as a real process: serves over HTTP, one start line, clean
SIGTERM, and neither a slow query nor a silent database freezes a worker."""

from __future__ import annotations

import os
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest
import requests
from apisupport import insert_message, make_tenant
from servicesupport import E2A, free_port, serve, terminate, write_config

from e2a.core.db import single_connection


def api_config(cfg, tmp_path: Path, *, listen: str, workers: int = 1, level: str = "info",
               pool_size: int | None = None, database_url: str = "") -> Path:
    conf = write_config(cfg, tmp_path / "e2a.toml",
                        f'[http]\nlisten = "{listen}"\nworkers = {workers}\n'
                        f'[log]\nlevel = "{level}"\n', database_url=database_url)
    if pool_size is not None:
        # [database] is written by write_config; a table cannot be opened twice.
        conf.write_text(conf.read_text().replace(
            "[database]\n", f"[database]\npool_size = {pool_size}\n", 1))
    return conf


def test_serves_logs_one_line_and_stops_cleanly_on_sigterm(cfg, tmp_path):
    tenant = make_tenant(cfg)
    message_id = insert_message(cfg, tenant.agent, subject="over http")
    base = f"http://127.0.0.1:{free_port()}"
    conf = api_config(cfg, tmp_path, listen=base.removeprefix("http://"), workers=2)
    log = tmp_path / "api.log"
    with serve("api", conf, log, f"api listening on {base}") as proc:
        health = requests.get(base + "/api/health", timeout=5)
        assert health.status_code == 200
        assert health.json() == {"status": "ok"}
        assert health.headers["X-Request-Id"].startswith("req_")
        # A kept-alive client connection must not hold up the stop.
        session = requests.Session()
        listing = session.get(base + tenant.messages_path, headers=tenant.auth, timeout=5)
        assert listing.status_code == 200
        assert [m["message_id"] for m in listing.json()["messages"]] == [message_id]
        missing = session.get(base + "/nope", timeout=5)
        assert missing.status_code == 404
        assert missing.json()["error"]["code"] == "not_found"
        code, took = terminate(proc)
    output = log.read_text()
    assert code == 0, output
    assert took < 5, output
    assert output.count("listening on") == 1, output
    assert "Traceback" not in output
    # Access lines stay out of the log at level info, and so does the key.
    assert "/api/health" not in output
    assert tenant.key not in output


def _waiting_on_lock(cfg) -> int:
    with single_connection(cfg) as conn:
        return conn.execute(
            "SELECT count(*) AS n FROM pg_stat_activity "
            "WHERE application_name = 'e2a-api' AND wait_event_type = 'Lock'").fetchone()["n"]


def test_a_blocked_query_does_not_block_the_worker(cfg, tmp_path):
    """One worker, one pooled connection: with one request stuck in a query and
    another waiting for the pool, a third request still answers at once."""
    tenant = make_tenant(cfg)
    insert_message(cfg, tenant.agent)
    base = f"http://127.0.0.1:{free_port()}"
    conf = api_config(cfg, tmp_path, listen=base.removeprefix("http://"), pool_size=1,
                      level="debug")
    log = tmp_path / "api.log"
    results: list[int] = []

    def list_messages() -> None:
        results.append(requests.get(base + tenant.messages_path, headers=tenant.auth,
                                    timeout=30).status_code)

    with serve("api", conf, log, f"api listening on {base}") as proc, \
            single_connection(cfg) as locker:
        assert requests.get(base + "/api/health", timeout=5).status_code == 200
        locker.execute("LOCK TABLE messages IN ACCESS EXCLUSIVE MODE")
        slow = [threading.Thread(target=list_messages) for _ in range(2)]
        try:
            for thread in slow:
                thread.start()
            deadline = time.monotonic() + 10
            while _waiting_on_lock(cfg) < 1:
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.05)
            time.sleep(0.3)  # let the second request reach the pool's wait
            started = time.monotonic()
            info = requests.get(base + "/api/v1/info", timeout=5)
            answered_in = time.monotonic() - started
        finally:
            locker.rollback()
            for thread in slow:
                thread.join(timeout=30)
        assert info.status_code == 200
        assert answered_in < 1.0, log.read_text()
        assert results == [200, 200], log.read_text()
        code, _ = terminate(proc)
    assert code == 0
    # The worker closed its pool on the way out (it was not killed).
    assert "database pool closed" in log.read_text()


def test_a_silent_database_does_not_freeze_the_worker(cfg, tmp_path):
    """The pool keeps trying to connect to a database that accepts TCP but never
    answers; the worker must go on serving meanwhile (connection set-up waits
    cooperatively too), and health says 503."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(64)  # never accepted: the handshake completes, nothing answers
        url = f"postgresql://e2a@127.0.0.1:{silent.getsockname()[1]}/e2a"
        base = f"http://127.0.0.1:{free_port()}"
        conf = api_config(cfg, tmp_path, listen=base.removeprefix("http://"),
                          database_url=url)
        log = tmp_path / "api.log"
        with serve("api", conf, log, f"api listening on {base}") as proc:
            # The first answer waits for the worker to boot; that is not the point.
            assert requests.get(base + "/api/v1/info", timeout=30).ok
            slowest = 0.0
            for _ in range(10):
                started = time.monotonic()
                assert requests.get(base + "/api/v1/info", timeout=10).ok
                slowest = max(slowest, time.monotonic() - started)
                time.sleep(0.2)
            health = requests.get(base + "/api/health", timeout=10)
            assert health.status_code == 503
            assert health.json() == {"status": "unavailable"}
            code, _ = terminate(proc)
    # A frozen worker waits out the 5 s connect timeout; a loaded machine
    # answers well under 2 s.
    assert slowest < 2.0, log.read_text()
    assert code == 0, log.read_text()


def _get_over_unix(path: Path, target: str) -> bytes:
    with socket.socket(socket.AF_UNIX) as client:
        client.settimeout(10)
        client.connect(str(path))
        client.sendall(f"GET {target} HTTP/1.1\r\nHost: api\r\nConnection: close\r\n\r\n"
                       .encode())
        return b"".join(iter(lambda: client.recv(4096), b""))


def test_listens_on_a_unix_socket(cfg, tmp_path):
    path = tmp_path / "api.sock"
    conf = api_config(cfg, tmp_path, listen=f"unix:{path}")
    with serve("api", conf, tmp_path / "api.log", f"api listening on unix:{path}") as proc:
        reply = _get_over_unix(path, "/api/health")
        assert reply.startswith(b"HTTP/1.1 200 ")
        assert reply.endswith(b'"ok"}')
        code, _ = terminate(proc)
    assert code == 0
    assert not path.exists()


def test_sigterm_while_workers_boot_still_stops_cleanly(cfg, tmp_path):
    """A worker inherits the master's signal handlers until it installs its own;
    a SIGTERM in between must not be lost (the master would wait out the
    graceful timeout and kill it)."""
    base = f"http://127.0.0.1:{free_port()}"
    conf = api_config(cfg, tmp_path, listen=base.removeprefix("http://"), workers=2)
    log = tmp_path / "api.log"
    with serve("api", conf, log, f"api listening on {base}") as proc:
        code, took = terminate(proc)  # the workers are forking and booting now
    assert code == 0, log.read_text()
    assert took < 5, log.read_text()


def _raw_request(base: str, head: str, body: bytes = b"", *, then_wait: float = 5.0) -> bytes:
    """Send ``head`` and ``body`` on a plain socket; what the server answers
    within ``then_wait`` seconds (the client does not send the rest)."""
    host, port = base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=then_wait) as sock:
        sock.sendall(head.encode() + b"\r\n" + body)
        answer = b""
        try:
            while b"\r\n\r\n" not in answer:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                answer += chunk
        except TimeoutError:
            pass
    return answer


def test_an_oversized_body_is_refused_before_it_arrives(cfg, tmp_path):
    """Through gunicorn and gevent: the 413 comes from the declared length,
    while the client has sent almost nothing; a chunked body is cut off at
    the limit."""
    tenant = make_tenant(cfg)
    base = f"http://127.0.0.1:{free_port()}"
    conf = api_config(cfg, tmp_path, listen=base.removeprefix("http://"))
    with serve("api", conf, tmp_path / "api.log", f"api listening on {base}"):
        started = time.monotonic()
        answer = _raw_request(base, (
            "POST /api/v1/agents HTTP/1.1\r\nHost: x\r\n"
            f"Authorization: Bearer {tenant.key}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {100 * 1024 * 1024}\r\n"), b'{"agent_mode": ')
        assert answer.startswith(b"HTTP/1.1 413"), answer
        assert b"connection: close" in answer.lower(), answer
        assert time.monotonic() - started < 3

        def endless():
            chunk = b" " * 65536
            for _ in range(64):  # 4 MiB, over the 1 MiB limit
                yield chunk

        chunked = requests.post(base + "/api/v1/agents", data=endless(), timeout=10,
                                headers={**tenant.auth, "Content-Type": "application/json"})
        assert chunked.status_code == 413, chunked.text
        assert chunked.json()["error"]["code"] == "payload_too_large"
        small = requests.post(base + "/api/v1/agents", timeout=10,
                              data=iter([b'{"agent_mode": "local", ', b'"slug": "chunky-',
                                         tenant.user["id"][-6:].encode(), b'"}']),
                              headers={**tenant.auth, "Content-Type": "application/json"})
        assert small.status_code == 201, small.text


def test_ready_only_once_a_worker_answers_health(cfg, tmp_path):
    """systemd (Type=notify) hears READY=1 once, from us, when /api/health
    answers: not gunicorn's own READY=1, which comes before any worker booted."""
    base = f"http://127.0.0.1:{free_port()}"
    conf = api_config(cfg, tmp_path, listen=base.removeprefix("http://"), workers=2)
    notify_path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify:
        notify.bind(str(notify_path))
        notify.settimeout(30)
        env = {k: v for k, v in os.environ.items() if not k.startswith("E2A_")}
        env.update(E2A_CONFIG=str(conf), NOTIFY_SOCKET=str(notify_path))
        log = tmp_path / "api.log"
        with log.open("wb") as out:
            proc = subprocess.Popen([str(E2A), "serve", "api"], stdout=out, stderr=out,
                                    env=env, cwd=tmp_path)
        try:
            first = notify.recv(4096)
            # The moment READY=1 arrives, a worker serves.
            health = requests.get(base + "/api/health", timeout=1)
            assert health.status_code == 200
            assert first == b"READY=1", first
            notify.settimeout(1)
            with pytest.raises(TimeoutError):
                notify.recv(4096)  # nothing else: gunicorn's own went nowhere
            code, _ = terminate(proc)
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
    assert code == 0, log.read_text()
    assert "api serving" in log.read_text()


def test_workers_keep_the_user_systemd_gave_them(monkeypatch):
    """Under User=e2a and ~@privileged, a worker's setuid() to its own uid
    would be refused: the switch is skipped when there is nothing to switch."""
    from gunicorn import util as gunicorn_util

    from e2a.api import server

    calls: list[tuple[int, int]] = []
    monkeypatch.setattr(gunicorn_util, "set_owner_process",
                        lambda uid, gid, initgroups=False: calls.append((uid, gid)))
    server.keep_process_owner()
    server.keep_process_owner()  # twice: wrapped once
    gunicorn_util.set_owner_process(os.getuid(), os.getgid())
    assert calls == []
    gunicorn_util.set_owner_process(os.getuid() + 1, os.getgid())
    assert calls == [(os.getuid() + 1, os.getgid())]
