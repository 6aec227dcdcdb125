"""`e2a serve milter` as the real subprocess: listens where configured, lets the
postfix user in, stops on SIGTERM and takes its socket with it."""

from __future__ import annotations

import os
import shutil
import signal
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


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid and fields[0] != "Z":
                found.append(int(entry.name))
    return found


def _until(check, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_several_processes_share_the_socket_and_stop_together(cfg, tmp_path):
    """milter.processes = 2: two children of the one service on the socket
    the parent opened; SIGTERM stops both; a child that dies stops the rest
    (the service manager restarts the whole)."""
    sockdir = Path(tempfile.mkdtemp(prefix="e2a-milterp-"))
    try:
        path = sockdir / "milter.sock"
        conf = write_config(cfg, tmp_path / "e2a.toml",
                            f'[milter]\nlisten = "unix:{path}"\nprocesses = 2\n')
        line = f"milter listening on unix:{path}"
        with serve("milter", conf, tmp_path / "milter.log", line) as proc:
            assert _until(lambda: path.exists() and len(_children(proc.pid)) == 2)
            children = _children(proc.pid)
            code, took = terminate(proc, timeout=20)
            assert code == 0 and took < 15
            assert not any(Path(f"/proc/{pid}").exists() and pid in _children(proc.pid)
                           for pid in children)
        assert not path.exists()

        with serve("milter", conf, tmp_path / "milter2.log", line) as proc:
            assert _until(lambda: path.exists() and len(_children(proc.pid)) == 2)
            first, second = _children(proc.pid)
            os.kill(first, signal.SIGKILL)
            assert _until(lambda: proc.poll() is not None, 20)
            assert proc.returncode != 0
            assert not Path(f"/proc/{second}/stat").exists() or \
                (Path(f"/proc/{second}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z")
    finally:
        shutil.rmtree(sockdir, ignore_errors=True)
