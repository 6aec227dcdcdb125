"""`e2a serve milter` as the real subprocess: listens where configured, lets the
postfix user in, stops on SIGTERM and takes its socket with it."""

from __future__ import annotations

import shutil
import stat
import tempfile
import time
from pathlib import Path

from servicesupport import serve, terminate, write_config


def test_serve_milter_listens_and_stops_on_sigterm(cfg, tmp_path):
    sockdir = Path(tempfile.mkdtemp(prefix="e2a-milters-"))
    try:
        path = sockdir / "milter.sock"
        conf = write_config(cfg, tmp_path / "e2a.toml", f'[milter]\nlisten = "unix:{path}"\n')
        line = f"milter listening on unix:{path}"
        with serve("milter", conf, tmp_path / "milter.log", line) as proc:
            # The line is logged just before libmilter creates the socket.
            deadline = time.monotonic() + 10
            while not path.exists() and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.05)
            assert path.exists(), "the milter socket never appeared"
            mode = stat.S_IMODE(path.stat().st_mode)
            assert mode & 0o006 == 0o006, oct(mode)  # Postfix connects as user postfix
            # libmilter takes a few seconds to wind down its threads.
            code, took = terminate(proc, timeout=20)
        assert code == 0
        assert took < 15
        assert not path.exists()
        assert (tmp_path / "milter.log").read_text().count("listening on") == 1
    finally:
        shutil.rmtree(sockdir, ignore_errors=True)
