"""Keep one sandbox service running, as systemd's ``Restart=on-failure`` does
in production: ``python -m e2a.cli.sandbox.keeper [--unlink PATH]... -- ARGV``.

The service is this process's child. When it dies of anything but our own
stop (a crash, a kill -9), it is started again after ``--delay`` seconds,
once the sockets it leaves behind (``--unlink``: libmilter does not clean up
after a SIGKILL, and a new one could not bind) are gone. Like systemd's start
limit, BURST failures within INTERVAL seconds end the keeping: the keeper
exits 1 and the sandbox shows the service stopped. SIGTERM or SIGINT is
passed to the service, and the keeper exits when it has.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import time
from collections import deque
from pathlib import Path
from types import FrameType

DELAY = 1.0
BURST = 5
INTERVAL = 60.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="e2a.cli.sandbox.keeper")
    parser.add_argument("--unlink", action="append", default=[], type=Path,
                        help="a socket to remove before each restart")
    parser.add_argument("--delay", type=float, default=DELAY)
    parser.add_argument("--burst", type=int, default=BURST)
    parser.add_argument("--interval", type=float, default=INTERVAL)
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command to keep")
    return Keeper(command, args.unlink, args.delay, args.burst, args.interval).run()


class Keeper:
    def __init__(self, command: list[str], sockets: list[Path], delay: float, burst: int,
                 interval: float) -> None:
        self.command = command
        self.sockets = sockets
        self.delay = delay
        self.burst = burst
        self.interval = interval
        self.stopping = False
        self.child: subprocess.Popen[bytes] | None = None

    def _on_stop(self, signum: int, frame: FrameType | None) -> None:
        self.stopping = True
        if self.child is not None and self.child.poll() is None:
            self.child.send_signal(signum)

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._on_stop)
        signal.signal(signal.SIGINT, self._on_stop)
        failures: deque[float] = deque()
        name = " ".join(self.command)
        while not self.stopping:
            self.child = subprocess.Popen(self.command)
            code = self.child.wait()
            if self.stopping:
                return 0
            if code == 0:
                return 0  # a clean exit is not a failure (Restart=on-failure)
            how = f"signal {-code}" if code < 0 else f"status {code}"
            now = time.monotonic()
            failures.append(now)
            while failures and now - failures[0] > self.interval:
                failures.popleft()
            if len(failures) >= self.burst:
                print(f"keeper: {name} failed {len(failures)} times within "
                      f"{self.interval:.0f}s; not restarting it", file=sys.stderr, flush=True)
                return 1
            print(f"keeper: {name} exited with {how}; restarting in {self.delay:g}s",
                  file=sys.stderr, flush=True)
            deadline = time.monotonic() + self.delay
            while not self.stopping and time.monotonic() < deadline:
                time.sleep(0.05)
            for path in self.sockets:
                path.unlink(missing_ok=True)
        return 0


if __name__ == "__main__":
    sys.exit(main())
