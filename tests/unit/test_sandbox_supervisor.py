"""The sandbox supervisor against real processes: start, pidfiles, stop, reaping."""

from __future__ import annotations

import os
import socket
import sys
import time
from pathlib import Path

import pytest

from e2a.cli.sandbox import supervisor


def _gone(pid: int) -> bool:
    """No such process, or a zombie: an orphan's exit status is PID 1's to collect."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return True
    return state == "Z"


def test_start_writes_pidfile_and_stop_reaps(tmp_path: Path) -> None:
    pidfile, log = tmp_path / "run" / "sleep.pid", tmp_path / "log" / "sleep.log"
    pid = supervisor.start(["sleep", "60"], pidfile=pidfile, logfile=log)
    assert supervisor.read_pid(pidfile) == pid
    assert supervisor.running(pidfile)
    assert os.getpgid(pid) == pid  # own session, out of reach of the terminal's Ctrl-C

    assert supervisor.stop(pidfile, timeout=5) == [pidfile]
    assert not pidfile.exists()
    assert not Path(f"/proc/{pid}").exists()  # reaped, not a zombie
    assert supervisor.stop(pidfile) == []  # stopping twice is fine


def test_output_goes_to_the_log(tmp_path: Path) -> None:
    pidfile, log = tmp_path / "echo.pid", tmp_path / "echo.log"
    pid = supervisor.start(["sh", "-c", "echo started on port 1234"], pidfile=pidfile,
                           logfile=log, env={"PATH": os.environ["PATH"]})
    assert supervisor.wait_gone(pid, 5)
    assert log.read_text() == "started on port 1234\n"
    assert not supervisor.running(pidfile)


def test_stale_or_reused_pid_is_never_signalled(tmp_path: Path) -> None:
    pidfile = tmp_path / "x.pid"
    # Our own pid with another start time: what a reused pid looks like.
    pidfile.write_text(f"{os.getpid()}\n1\n")
    assert supervisor.read_pid(pidfile) is None
    assert supervisor.stop(pidfile) == []  # and we are still here to tell
    assert not pidfile.exists()

    pidfile.write_text("999999999\n")
    assert not supervisor.running(pidfile)
    pidfile.write_text("garbage\n")
    assert not supervisor.running(pidfile)


def test_stubborn_process_and_its_leftovers_are_killed(tmp_path: Path) -> None:
    pidfile, log = tmp_path / "stubborn.pid", tmp_path / "stubborn.log"
    # The shell ignores SIGTERM; its background child would outlive it.
    script = "trap '' TERM; sleep 60 & echo child $!; wait"
    pid = supervisor.start(["sh", "-c", script], pidfile=pidfile, logfile=log)
    deadline = time.monotonic() + 5
    while "child" not in log.read_text():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    child = int(log.read_text().split()[1])
    started = time.monotonic()
    assert supervisor.stop(pidfile, timeout=0.5) == [pidfile]
    assert time.monotonic() - started < 5
    assert not Path(f"/proc/{pid}").exists()
    deadline = time.monotonic() + 5
    while not _gone(child):
        assert time.monotonic() < deadline, "the group's leftover child survived"
        time.sleep(0.05)


def test_several_stop_in_parallel(tmp_path: Path) -> None:
    # Each ignores SIGTERM for a while, then leaves: stopped together, the
    # wait is one grace period, not three.
    script = "trap 'sleep 1; exit 0' TERM; while :; do sleep 0.1; done"
    pidfiles = [tmp_path / f"p{i}.pid" for i in range(3)]
    for pidfile in pidfiles:
        supervisor.start(["sh", "-c", script], pidfile=pidfile, logfile=tmp_path / "p.log")
    started = time.monotonic()
    assert supervisor.stop(*pidfiles, timeout=10) == pidfiles
    assert time.monotonic() - started < 2.8
    assert not any(supervisor.running(p) for p in pidfiles)


def test_wait_ready_reports_a_crash_with_its_log(tmp_path: Path) -> None:
    pidfile, log = tmp_path / "crash.pid", tmp_path / "crash.log"
    supervisor.start(["sh", "-c", "echo cannot bind; exit 3"], pidfile=pidfile, logfile=log)
    with pytest.raises(supervisor.StartError, match="cannot bind"):
        supervisor.wait_ready(lambda: False, pidfile=pidfile, logfile=log, name="crash",
                              timeout=10)


def test_wait_ready_times_out(tmp_path: Path) -> None:
    pidfile, log = tmp_path / "slow.pid", tmp_path / "slow.log"
    supervisor.start(["sleep", "60"], pidfile=pidfile, logfile=log)
    try:
        with pytest.raises(supervisor.StartError, match="not ready after"):
            supervisor.wait_ready(lambda: False, pidfile=pidfile, logfile=log, name="slow",
                                  timeout=0.3)
    finally:
        supervisor.stop(pidfile, timeout=5)


def test_accepts_tcp_and_unix(tmp_path: Path) -> None:
    with socket.socket() as tcp:
        tcp.bind(("127.0.0.1", 0))
        port = tcp.getsockname()[1]
        assert not supervisor.accepts(f"127.0.0.1:{port}")
        tcp.listen()
        assert supervisor.accepts(f"127.0.0.1:{port}")
    path = tmp_path / "s.sock"
    assert not supervisor.accepts(f"unix:{path}")
    with socket.socket(socket.AF_UNIX) as unix:
        unix.bind(str(path))
        unix.listen()
        assert supervisor.accepts(f"unix:{path}")


def test_python_child_gets_its_environment(tmp_path: Path) -> None:
    pidfile, log = tmp_path / "py.pid", tmp_path / "py.log"
    pid = supervisor.start([sys.executable, "-c", "import os; print(os.environ['MARK'])"],
                           pidfile=pidfile, logfile=log, env={"MARK": "sandbox"},
                           cwd=tmp_path)
    assert supervisor.wait_gone(pid, 10)
    assert log.read_text().strip() == "sandbox"


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _kept(tmp_path: Path, *command: str, extra: tuple[str, ...] = ()) -> tuple[Path, Path, int]:
    pidfile, log = tmp_path / "kept.pid", tmp_path / "kept.log"
    keeper = supervisor.start([sys.executable, "-m", "e2a.cli.sandbox.keeper", "--delay=0.1",
                               *extra, "--", *command], pidfile=pidfile, logfile=log)
    return pidfile, log, keeper


def _one_child(keeper: int, other_than: int = 0) -> int:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        found = [c for c in _children(keeper) if c != other_than]
        if found:
            return found[0]
        time.sleep(0.05)
    raise AssertionError("no child")


def test_a_killed_service_is_started_again(tmp_path: Path) -> None:
    """kill -9 of a sandbox service: its keeper restarts it (Restart=on-failure)."""
    stale = tmp_path / "stale.sock"
    pidfile, log, keeper = _kept(tmp_path, "sleep", "60", extra=(f"--unlink={stale}",))
    try:
        first = _one_child(keeper)
        stale.write_text("")  # what a SIGKILLed libmilter leaves
        os.kill(first, 9)
        second = _one_child(keeper, other_than=first)
        assert second != first
        assert not stale.exists()
        assert supervisor.running(pidfile)
        assert "exited with signal 9; restarting" in log.read_text()
    finally:
        assert supervisor.stop(pidfile, timeout=5) == [pidfile]
    assert _gone(keeper) and _gone(second)


def test_a_clean_exit_is_not_restarted(tmp_path: Path) -> None:
    pidfile, _, keeper = _kept(tmp_path, "true")
    assert supervisor.wait_gone(keeper, 10)
    assert not supervisor.running(pidfile)


def test_a_service_that_keeps_failing_is_given_up(tmp_path: Path) -> None:
    pidfile, log, keeper = _kept(tmp_path, "false", extra=("--burst=3",))
    assert supervisor.wait_gone(keeper, 10)
    assert "failed 3 times" in log.read_text()
    assert not supervisor.running(pidfile)


def test_stop_reaches_the_service_through_its_keeper(tmp_path: Path) -> None:
    pidfile, _, keeper = _kept(tmp_path, "sleep", "60")
    child = _one_child(keeper)
    started = time.monotonic()
    assert supervisor.stop(pidfile, timeout=5) == [pidfile]
    assert time.monotonic() - started < 4  # SIGTERM passed on, not the SIGKILL deadline
    assert _gone(child)
