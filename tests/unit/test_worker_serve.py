"""`e2a serve worker` as the real subprocess."""

from __future__ import annotations

import time

from servicesupport import serve, terminate, write_config


def test_serve_worker_starts_and_stops_on_sigterm(cfg, tmp_path):
    conf = write_config(cfg, tmp_path / "e2a.toml", "[worker]\npoll_interval = 0.5\n")
    with serve("worker", conf, tmp_path / "worker.log", "worker started, polling every 0.5s") \
            as proc:
        code, took = terminate(proc)
    assert code == 0
    # Promptly, not at once: the pool may wait out a connection attempt
    # (psycopg_pool's close() allows 5 s); a hang would hit terminate's 10 s.
    assert took < 8
    assert "Traceback" not in (tmp_path / "worker.log").read_text()


def test_serve_worker_survives_a_database_that_is_down(cfg, tmp_path):
    conf = write_config(cfg, tmp_path / "e2a.toml", "[worker]\npoll_interval = 0.2\n",
                        database_url=f"postgresql://e2a@/e2a?host={tmp_path}/nowhere&port=1")
    log = tmp_path / "worker.log"
    with serve("worker", conf, log, "worker started") as proc:
        deadline = time.monotonic() + 10
        while "database error, retrying" not in log.read_text() \
                and time.monotonic() < deadline:
            time.sleep(0.1)
        assert "database error, retrying" in log.read_text()
        assert proc.poll() is None
        code, took = terminate(proc)
    assert code == 0
    assert took < 8
