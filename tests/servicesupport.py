"""Running our services as the real `e2a serve ...` subprocesses in tests,
and small socket helpers they share."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from e2a.core.config import Config

E2A = Path(sys.executable).with_name("e2a")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def free_udp_tcp_port() -> int:
    """A loopback port free for both UDP and TCP (a DNS server takes both)."""
    while True:
        with socket.socket() as tcp:
            tcp.bind(("127.0.0.1", 0))
            port = tcp.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port


def write_config(cfg: Config, path: Path, extra: str = "", database_url: str = "") -> Path:
    """A config file for a subprocess: the test cluster, plus ``extra`` TOML."""
    path.write_text(
        f'[database]\nurl = "{database_url or cfg.database.url}"\n'
        f'[secrets]\nhmac_secret = "{cfg.secrets.hmac_secret}"\n'
        f'[mail]\nshared_domain = "{cfg.mail.shared_domain}"\n'
        f'hostname = "{cfg.mail.hostname}"\n' + extra)
    return path


@contextmanager
def serve(service: str, config: Path, log_path: Path, ready: str,
          timeout: float = 20.0) -> Iterator[subprocess.Popen[bytes]]:
    """`e2a serve SERVICE`, once ``ready`` shows in its log; killed if the test
    has not stopped it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("E2A_")}
    env["E2A_CONFIG"] = str(config)
    with log_path.open("wb") as log:
        proc = subprocess.Popen([str(E2A), "serve", service], stdout=log, stderr=log,
                                env=env, cwd=config.parent)
    try:
        deadline = time.monotonic() + timeout
        while ready not in log_path.read_text():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"e2a serve {service} did not log {ready!r}:\n"
                                     + log_path.read_text())
            time.sleep(0.05)
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def terminate(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> tuple[int, float]:
    """SIGTERM; the exit code and how long the process took to go."""
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    code = proc.wait(timeout)
    return code, time.monotonic() - started
