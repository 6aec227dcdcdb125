"""bench/inbound: inbound throughput through the full path against bare Postfix.

One run drives Postfix's ``smtp-source`` at

  (a) the sandbox's Postfix: policy service at RCPT, milter at end of data,
      every message stored for an agent in PostgreSQL (then discarded), and
  (b) a second Postfix instance, same binaries and same generated main.cf,
      with no milter and no policy service, relaying to ``smtp-sink``,

and prints messages per second for both and their ratio. It checks the work
was done: (a) must have stored one row per message, (b) must have delivered
every message to the sink. It brings up a sandbox in a temporary directory
(or reuses the one under ``--root``), and stops everything it started. The
sandbox DNS it starts answers with a 300 s TTL, as real zones do, so the
milter's resolver cache works as in production (a reused sandbox keeps the
TTL 0 it was started with: every message then queries DNS).

Run as root (a private Postfix needs it): ``bench/inbound`` (see README).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from e2a.core.db import single_connection
from sandbox import supervisor
from sandbox.postfix import Instance
from sandbox.stack import Ports, Sandbox

SMTP_SOURCE = "/usr/sbin/smtp-source"
SMTP_SINK = "/usr/sbin/smtp-sink"
SENDER = "bench@sandbox.test"  # SPF passes for loopback in the sandbox DNS
SINK_RECIPIENT = "sink@bench.example"
WARMUP_MESSAGES = 200
DNS_TTL = 300  # seconds; a common TTL for SPF and DMARC records


@dataclass(frozen=True)
class Result:
    path: str
    messages: int
    seconds: float
    done: int  # stored rows (a) or messages at the sink (b)
    done_what: str

    @property
    def rate(self) -> float:
        return self.messages / self.seconds


def smtp_source(port: int, recipient: str, *, sessions: int, messages: int, length: int,
                timeout: float) -> float:
    """Seconds smtp-source took to have every message accepted."""
    argv = [SMTP_SOURCE, "-s", str(sessions), "-m", str(messages), "-l", str(length),
            "-f", SENDER, "-t", recipient, f"127.0.0.1:{port}"]
    started = time.monotonic()
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    elapsed = time.monotonic() - started
    if done.returncode != 0 or done.stderr.strip():
        # smtp-source exits on the first reply it did not expect (a 4xx, a 5xx).
        raise RuntimeError(f"{' '.join(argv)} failed ({done.returncode}): "
                           f"{(done.stderr or done.stdout).strip()[-2000:]}")
    return elapsed


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: not after {timeout:.0f} s")
        time.sleep(0.2)


@contextmanager
def sandbox_at(root: Path | None) -> Iterator[tuple[Sandbox, str]]:
    """The sandbox and its agent's address; one we start is stopped afterwards."""
    owned = root is None
    if root is None:
        root = Path(tempfile.mkdtemp(prefix="e2a-bench-"))
        root.chmod(0o755)  # postgres and postfix users reach into it
    box = Sandbox(root, Ports.free() if owned else None)
    # Real zones answer with a TTL, and the milter caches answers for it; the
    # sandbox's default of 0 would make every message query DNS afresh.
    box.dns.ttl = DNS_TTL
    try:
        print(f"sandbox: {'starting' if owned else 'reusing'} {root}", flush=True)
        box.up()
        yield box, box.bootstrap().agent_email
    finally:
        if owned:
            box.down()
            shutil.rmtree(root, ignore_errors=True)


@contextmanager
def sink(workdir: Path, port: int) -> Iterator[Path]:
    """smtp-sink writing one file per message into a directory (to count them)."""
    dump = workdir / "sink"
    dump.mkdir()
    dump.chmod(0o777)  # smtp-sink drops to nobody
    proc = subprocess.Popen([SMTP_SINK, "-u", "nobody", "-d", f"{dump}/%H%M%S.",
                             f"127.0.0.1:{port}", "256"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_for(lambda: supervisor.accepts(f"127.0.0.1:{port}"), 10, "smtp-sink listening")
        yield dump
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextmanager
def bare_postfix(workdir: Path, ports: Ports) -> Iterator[Instance]:
    """Postfix as the sandbox runs it, minus our milter, policy service and filter,
    relaying everything to the sink on ``ports.capture``."""
    instance = Instance(
        root=workdir / "bare-postfix", hostname="bare.bench.example",
        smtp_port=ports.smtp, reinject_port=ports.reinject, submit_port=ports.submit,
        filter_address=f"127.0.0.1:{ports.filter}", relayhost=f"[127.0.0.1]:{ports.capture}",
        milter_socket=None, policy_socket=None, filter_all_mail=False)
    instance.write_config()
    instance.start()
    try:
        yield instance
    finally:
        instance.stop()


def stored_rows(box: Sandbox, agent: str) -> int:
    with single_connection(box.config()) as conn:
        return conn.execute("SELECT count(*) AS n FROM messages WHERE recipient = %s",
                            (agent,)).fetchone()["n"]


def run_full(box: Sandbox, agent: str, args: argparse.Namespace, messages: int) -> Result:
    before = stored_rows(box, agent)
    seconds = smtp_source(box.ports.smtp, agent, sessions=args.sessions, messages=messages,
                          length=args.length, timeout=args.timeout)
    # 250 comes after the commit: every row is there when smtp-source is done.
    return Result("full: policy + milter -> PostgreSQL", messages, seconds,
                  stored_rows(box, agent) - before, "rows stored")


def run_bare(bare: Instance, dump: Path, args: argparse.Namespace, messages: int) -> Result:
    before = len(os.listdir(dump))
    seconds = smtp_source(bare.smtp_port, SINK_RECIPIENT, sessions=args.sessions,
                          messages=messages, length=args.length, timeout=args.timeout)
    # Accepted is not yet delivered: wait until the sink has them all.
    wait_for(lambda: len(os.listdir(dump)) - before >= messages and bare.queue_empty(),
             args.timeout, "bare Postfix delivering to smtp-sink")
    return Result("bare: Postfix -> smtp-sink", messages, seconds,
                  len(os.listdir(dump)) - before, "at the sink")


def main() -> int:
    parser = argparse.ArgumentParser(prog="bench/inbound", description=__doc__.split("\n")[0])
    parser.add_argument("--root", type=Path,
                        help="reuse (or start and keep) the sandbox here; default: a "
                             "temporary one, stopped at the end")
    parser.add_argument("-s", "--sessions", type=int, default=20, help="parallel SMTP sessions")
    parser.add_argument("-m", "--messages", type=int, default=2000, help="messages per path")
    parser.add_argument("-l", "--length", type=int, default=4096, help="message body bytes")
    parser.add_argument("--rounds", type=int, default=1,
                        help="measure both paths this many times, bare then full; the "
                             "median of the rounds' ratios counts")
    parser.add_argument("--timeout", type=float, default=300.0,
                        help="seconds any one step may take")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bench/inbound: run as root (the sandbox runs a private Postfix)",
              file=sys.stderr)
        return 2
    for tool in (SMTP_SOURCE, SMTP_SINK):
        if not Path(tool).exists():
            print(f"bench/inbound: {tool} missing (apt-get install postfix)", file=sys.stderr)
            return 2
    signal.signal(signal.SIGTERM, _interrupt)

    with ExitStack() as stack:
        workdir = Path(tempfile.mkdtemp(prefix="e2a-bench-work-"))
        workdir.chmod(0o755)
        stack.callback(shutil.rmtree, workdir, ignore_errors=True)
        box, agent = stack.enter_context(sandbox_at(args.root))
        ports = Ports.free()
        dump = stack.enter_context(sink(workdir, ports.capture))
        bare = stack.enter_context(bare_postfix(workdir, ports))

        print(f"warming up both paths ({WARMUP_MESSAGES} messages each)", flush=True)
        run_full(box, agent, args, WARMUP_MESSAGES)
        run_bare(bare, dump, args, WARMUP_MESSAGES)

        rounds: list[tuple[Result, Result]] = []
        for n in range(args.rounds):
            # Bare first, full right after: the machine's other load is as
            # alike as it gets for the two halves of one ratio.
            bare_result = run_bare(bare, dump, args, args.messages)
            full_result = run_full(box, agent, args, args.messages)
            rounds.append((bare_result, full_result))
            for result in (bare_result, full_result):
                print(f"round {n + 1}: {result.path}: {result.messages} messages in "
                      f"{result.seconds:.2f} s = {result.rate:.1f} msg/s; "
                      f"{result.done} {result.done_what}", flush=True)
            print(f"round {n + 1}: ratio {full_result.rate / bare_result.rate:.2f}", flush=True)

    print()
    print(f"smtp-source -s {args.sessions} -m {args.messages} -l {args.length}, "
          f"{args.rounds} round(s), {os.cpu_count()} CPUs")
    print(f"{'path':40} {'msg/s':>8}  work done")
    for side in (1, 0):
        results = [pair[side] for pair in rounds]
        print(f"{results[0].path:40} {statistics.median(r.rate for r in results):8.1f}  "
              + ", ".join(f"{r.done}/{r.messages} {r.done_what}" for r in results))
    ratios = [full.rate / bare.rate for bare, full in rounds]
    print(f"ratio full / bare: {statistics.median(ratios):.2f}"
          + (f" (median of {', '.join(f'{r:.2f}' for r in ratios)})" if len(ratios) > 1 else ""))
    if not all(r.done == r.messages for pair in rounds for r in pair):
        print("FAILED: a path did not store or deliver every message", file=sys.stderr)
        return 1
    return 0


def _interrupt(signum: int, frame: FrameType | None) -> None:
    """A SIGTERM (a CI timeout) unwinds like Ctrl-C, so everything is stopped."""
    raise KeyboardInterrupt


if __name__ == "__main__":
    sys.exit(main())
