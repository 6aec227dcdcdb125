"""Start and stop the sandbox's long-running processes by pidfile.

The sandbox outlives the ``e2a dev up`` that started it, so a pidfile is the
only handle ``e2a dev down`` has. A pidfile records the pid and the kernel's
start time of that pid, so a stale file never makes us signal a stranger that
was given the same pid later. Processes started by this Python process are
also kept as ``Popen`` objects and waited for, so nothing is left a zombie
(PID 1 does not reap everywhere).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from e2a.core.net import addresses

# Processes this Python process started, so stop() can reap them.
_children: dict[int, subprocess.Popen[bytes]] = {}


class StartError(RuntimeError):
    """A process died or did not become ready; the message ends with its log."""


def _stat_fields(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name (which may hold spaces)."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return raw.rpartition(")")[2].split()


def start_time(pid: int) -> str | None:
    """The kernel's start time of ``pid`` (clock ticks since boot), or None."""
    fields = _stat_fields(pid)
    # Field 22 of stat is starttime; index 19 once pid and comm are cut off.
    return fields[19] if fields else None


def alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie (reaping our own on the way)."""
    child = _children.get(pid)
    if child is not None and child.poll() is not None:
        del _children[pid]
        return False
    fields = _stat_fields(pid)
    return fields is not None and fields[0] not in ("Z", "X")


def write_pidfile(pidfile: Path, pid: int) -> None:
    pidfile.parent.mkdir(parents=True, exist_ok=True)
    tmp = pidfile.with_name(pidfile.name + ".tmp")
    tmp.write_text(f"{pid}\n{start_time(pid) or ''}\n")
    tmp.replace(pidfile)


def read_pid(pidfile: Path) -> int | None:
    """The live process the pidfile names, or None (missing, stale or reused pid)."""
    try:
        lines = pidfile.read_text().split()
        pid = int(lines[0])
    except (OSError, ValueError, IndexError):
        return None
    recorded = lines[1] if len(lines) > 1 else None
    if not alive(pid) or (recorded is not None and start_time(pid) != recorded):
        return None
    return pid


def running(pidfile: Path) -> bool:
    return read_pid(pidfile) is not None


def start(argv: Sequence[str], *, pidfile: Path, logfile: Path,
          env: Mapping[str, str] | None = None, cwd: Path | None = None) -> int:
    """Start ``argv`` in its own session, output appended to ``logfile``.

    Its own session: a Ctrl-C in the terminal that ran ``make run`` must not
    take the sandbox down, and stop() can find helpers it leaves behind by
    process group."""
    logfile.parent.mkdir(parents=True, exist_ok=True)
    with logfile.open("ab") as log:
        proc = subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, env=dict(env) if env else None,
                                cwd=cwd, start_new_session=True, close_fds=True)
    _children[proc.pid] = proc
    write_pidfile(pidfile, proc.pid)
    return proc.pid


def wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while alive(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


def _group_members(pgid: int) -> list[int]:
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(int(entry.name))
        # Index 2 of the remaining fields is pgrp.
        if fields and fields[2] == str(pgid) and fields[0] not in ("Z", "X"):
            members.append(int(entry.name))
    return members


def _signal(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def stop(*pidfiles: Path, timeout: float = 10.0) -> list[Path]:
    """SIGTERM every process named, SIGKILL those still there after ``timeout``,
    then SIGKILL whatever each left behind in its process group; remove the
    pidfiles. All are signalled first, so slow ones stop in parallel. Returns
    the pidfiles whose process was running."""
    pids = {pidfile: read_pid(pidfile) for pidfile in pidfiles}
    for pid in pids.values():
        if pid is not None:
            _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for pid in pids.values():
        if pid is not None and not wait_gone(pid, max(deadline - time.monotonic(), 0.0)):
            _signal(pid, signal.SIGKILL)
            wait_gone(pid, 5.0)
    for pid in pids.values():
        # A group outlives its leader only through children the leader did
        # not stop (a gunicorn worker, say); the leader's pid stays reserved
        # while its group exists, so these are ours.
        for member in _group_members(pid) if pid is not None else ():
            _signal(member, signal.SIGKILL)
            wait_gone(member, 5.0)
    for pidfile in pidfiles:
        pidfile.unlink(missing_ok=True)
    return [pidfile for pidfile, pid in pids.items() if pid is not None]


def wait_ready(ready: Callable[[], bool], *, pidfile: Path, logfile: Path, name: str,
               timeout: float = 30.0) -> None:
    """Poll ``ready`` until true; fail early, with the log's tail, if the process dies."""
    deadline = time.monotonic() + timeout
    while True:
        if ready():
            return
        if not running(pidfile):
            raise StartError(f"{name} exited during start-up; {tail(logfile)}")
        if time.monotonic() >= deadline:
            raise StartError(f"{name} not ready after {timeout:.0f}s; {tail(logfile)}")
        time.sleep(0.1)


def accepts(address: str) -> bool:
    """Whether ``unix:/path`` or ``host:port`` accepts a connection right now."""
    try:
        parsed = addresses.parse(address)
        if isinstance(parsed, addresses.UnixAddress):
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(1.0)
                sock.connect(parsed.path)
        else:
            with socket.create_connection((parsed.host, parsed.port), timeout=1.0):
                pass
    except OSError:
        return False
    return True


def tail(logfile: Path, lines: int = 15) -> str:
    try:
        text = logfile.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return f"no log at {logfile}"
    return f"last lines of {logfile}:\n" + "\n".join(text)
