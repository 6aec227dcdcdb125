"""bench/outbound: API send -> message at the internet's door.

Concurrent clients POST /api/v1/send to the sandbox's API; each message goes
through Postfix's submit service, our content filter (row lookup, hold
decision, DKIM signature), the reinjection service and out to the capture
server, the sandbox's stand-in for the internet. Printed: messages per
second end to end, p50/p99/max of the latency from the POST to the message's
arrival at the capture server (the capture file's time), and of the POST
itself (compose, record, submit). It checks that every message arrived
exactly once.

It brings up a sandbox in a temporary directory (or reuses the one under
``--root``) and stops what it started. Run as root: ``bench/outbound``.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import secrets
import shutil
import signal
import smtplib
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))
import cpu
from inbound import SINK_RECIPIENT, bare_meter, bare_postfix, load, sandbox_at, sandbox_meter, sink
from realtime_webhook import _interrupt, percentile

from e2a.core.accounts import registration as accounts
from e2a.core.db import single_connection
from e2a.core.store import users as user_store
from sandbox.stack import Ports, Sandbox

RECIPIENT_DOMAIN = "elsewhere.test"  # not the sandbox's: relayed to the capture server
# The API allows 600 requests a minute per key (http.requests_per_minute):
# each key sends at most this many in one run.
PER_KEY = 500
# How often the capture directory is listed. A message's arrival is its
# file's time, not when the bench sees it, so listing more often measures
# nothing better, and each listing (of every file so far) is CPU taken
# from the paths measured on the same cores.
POLL_SECONDS = 0.25
SUBJECT = re.compile(rb"^Subject: ob-(\d+)-([0-9a-f]{8})\r?$", re.MULTILINE)


@dataclass
class Run:
    tag: str
    sent_at: dict[int, float] = field(default_factory=dict)  # wall clock, before the POST
    post_seconds: dict[int, float] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    arrived: dict[int, float] = field(default_factory=dict)  # capture file time
    duplicates: int = 0


class CaptureWatch:
    """Reads the capture directory as files appear: which message of the
    run arrived when (the file's modification time: written on receipt)."""

    def __init__(self, directory: Path, run: Run) -> None:
        self.directory = directory
        self.run = run
        self.seen = {p.name for p in directory.glob("*.eml")}

    def poll(self) -> None:
        for path in self.directory.glob("*.eml"):
            if path.name in self.seen:
                continue
            self.seen.add(path.name)
            head = path.read_bytes().split(b"\r\n\r\n", 1)[0]
            found = SUBJECT.search(head)
            if not found or found.group(2).decode() != self.run.tag:
                continue
            number = int(found.group(1))
            if number in self.run.arrived:
                self.run.duplicates += 1
            else:
                self.run.arrived[number] = path.stat().st_mtime

    def wait(self, count: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while len(self.run.arrived) < count and time.monotonic() < deadline:
            self.poll()
            time.sleep(POLL_SECONDS)
        time.sleep(1.0)  # a late duplicate would show now
        self.poll()


def api_keys(box: Sandbox, user_email: str, count: int) -> list[str]:
    with single_connection(box.config()) as conn:
        user = user_store.user_by_email(conn, user_email)
        return [accounts.issue_key(conn, user["id"], name=f"bench-outbound-{n}").key
                for n in range(count)]


def send_all(api_url: str, agent: str, keys: list[str], numbers: range, run: Run,
             concurrency: int) -> None:
    local = threading.local()

    def one(number: int) -> None:
        session = getattr(local, "session", None)
        if session is None:
            session = local.session = requests.Session()
        key = keys[number % len(keys)]
        body = {"from": agent, "to": [f"bench-{number}@{RECIPIENT_DOMAIN}"],
                "subject": f"ob-{number}-{run.tag}",
                "body": "A benchmark message.\n" * 20}
        run.sent_at[number] = time.time()
        started = time.monotonic()
        try:
            response = session.post(f"{api_url}/api/v1/send", json=body, timeout=60,
                                    headers={"Authorization": f"Bearer {key}"})
        except requests.RequestException as exc:
            run.failures.append(f"{number}: {exc}")
            return
        run.post_seconds[number] = time.monotonic() - started
        if response.status_code != 200:
            run.failures.append(f"{number}: {response.status_code} {response.text[:200]}")

    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(one, numbers))


def smtp_message(sender: str, number: int, tag: str) -> bytes:
    """About what the API composes for the same send: ~1 KB, plain text."""
    return (f"From: <{sender}>\r\nTo: <bench-{number}@{RECIPIENT_DOMAIN}>\r\n"
            f"Subject: ob-{number}-{tag}\r\nDate: Mon, 07 Dec 2026 18:00:00 +0000\r\n"
            f"Message-ID: <ob-{number}-{tag}@bench.example>\r\nMIME-Version: 1.0\r\n"
            "Content-Type: text/plain; charset=utf-8\r\n"
            "Content-Transfer-Encoding: 7bit\r\n\r\n"
            + "A benchmark message.\r\n" * 20).encode()


def smtp_send_all(port: int, sender: str, numbers: range, run: Run, concurrency: int,
                  rcpt: str | None = None) -> None:
    """``concurrency`` SMTP clients, one connection each, sending in turn."""
    todo = list(reversed(numbers))
    lock = threading.Lock()

    def client() -> None:
        with smtplib.SMTP("127.0.0.1", port, local_hostname="client.bench.example",
                          timeout=60) as smtp:
            while True:
                with lock:
                    if not todo:
                        return
                    number = todo.pop()
                run.sent_at[number] = time.time()
                started = time.monotonic()
                try:
                    smtp.sendmail(sender, [rcpt or f"bench-{number}@{RECIPIENT_DOMAIN}"],
                                  smtp_message(sender, number, run.tag))
                except smtplib.SMTPException as exc:
                    run.failures.append(f"{number}: {exc}")
                    continue
                run.post_seconds[number] = time.monotonic() - started

    threads = [threading.Thread(target=client) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def measure(box: Sandbox, agent: str, keys: list[str], messages: int, concurrency: int,
            timeout: float, *, via: str = "api") -> Run:
    """Send ``messages`` through the API or as plain SMTP from the agent's
    address, and wait for them at the capture server."""
    run = Run(secrets.token_hex(4))
    watch = CaptureWatch(box.capture_dir, run)
    stop = threading.Event()

    def watch_meanwhile() -> None:
        while not stop.is_set():
            watch.poll()
            time.sleep(POLL_SECONDS)

    watcher = threading.Thread(target=watch_meanwhile, daemon=True)
    watcher.start()
    try:
        if via == "api":
            send_all(box.api_url, agent, keys, range(messages), run, concurrency)
        else:
            smtp_send_all(box.ports.smtp, agent, range(messages), run, concurrency)
    finally:
        stop.set()
        watcher.join()
    watch.wait(messages - len(run.failures), timeout)
    return run


def rate(run: Run) -> float:
    if not run.arrived:
        return 0.0
    return len(run.arrived) / (max(run.arrived.values()) - min(run.sent_at.values()))


def report(run: Run, messages: int, concurrency: int, title: str = "API send -> capture",
           request: str = "POST /api/v1/send (200)") -> bool:
    latencies = [(run.arrived[n] - run.sent_at[n]) * 1000 for n in run.arrived]
    posts = [s * 1000 for s in run.post_seconds.values()]
    print()
    print(f"{title}: {messages} messages, {concurrency} concurrent clients, "
          f"{os.cpu_count()} CPUs, load {load()}")
    if latencies:
        span = max(run.arrived.values()) - min(run.sent_at.values())
        print(f"end to end: {len(run.arrived)} messages in {span:.2f} s = "
              f"{len(run.arrived) / span:.1f} msg/s")
        print(f"{'latency (ms)':34} {'p50':>8} {'p99':>8} {'max':>8}")
        for name, values in (("send -> capture server", latencies),
                             (request, posts)):
            print(f"{name:34} {percentile(values, 50):8.1f} {percentile(values, 99):8.1f} "
                  f"{max(values):8.1f}")
    ok = (not run.failures and len(run.arrived) == messages and not run.duplicates)
    print(f"arrived {len(run.arrived)}/{messages}, duplicates {run.duplicates}, "
          f"failed requests {len(run.failures)}")
    for failure in run.failures[:5]:
        print(f"  {failure}", file=sys.stderr)
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(prog="bench/outbound", description=__doc__.split("\n")[0])
    parser.add_argument("--root", type=Path,
                        help="reuse (or start and keep) the sandbox here; default: a "
                             "temporary one, stopped at the end")
    parser.add_argument("-m", "--messages", type=int, default=300, help="measured messages")
    parser.add_argument("-c", "--concurrency", type=int, default=8,
                        help="clients sending at once")
    parser.add_argument("--warmup", type=int, default=20, help="messages sent first, unmeasured")
    parser.add_argument("--timeout", type=float, default=120.0,
                        help="seconds to wait for the last message to arrive")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bench/outbound: run as root (the sandbox runs a private Postfix)",
              file=sys.stderr)
        return 2
    if not 0 < args.messages <= 20_000 or not 0 < args.concurrency <= 64:
        print("bench/outbound: --messages 1-20000, --concurrency 1-64", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _interrupt)
    workdir = Path(tempfile.mkdtemp(prefix="e2a-bench-work-"))
    workdir.chmod(0o755)
    try:
        return _bench(args, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def bare_relay(workdir: Path, messages: int, concurrency: int, timeout: float,
               warmup: int) -> tuple[float, dict[str, float]]:
    """msg/s of a bare Postfix relaying the same size of message to smtp-sink,
    from the same number of SMTP clients; CPU ms per message."""
    ports = Ports.free()
    with sink(workdir, ports.capture) as dump, bare_postfix(workdir, ports) as bare:
        meter = bare_meter(bare, dump)

        def one(count: int) -> tuple[float, dict[str, float]]:
            run = Run(secrets.token_hex(4))
            before = len(os.listdir(dump))
            snap = meter.snapshot()
            started = time.monotonic()
            smtp_send_all(bare.smtp_port, "bench@bench.example", range(count), run,
                          concurrency, rcpt=SINK_RECIPIENT)
            deadline = time.monotonic() + timeout
            while len(os.listdir(dump)) - before < count and time.monotonic() < deadline:
                time.sleep(0.01)
            seconds = time.monotonic() - started
            if run.failures or len(os.listdir(dump)) - before < count:
                raise RuntimeError(f"bare relay: {run.failures[:3]} "
                                   f"{len(os.listdir(dump)) - before}/{count} at the sink")
            return count / seconds, cpu.per_message_ms(snap, meter.snapshot(), count)

        one(warmup)
        return one(messages)


def _bench(args: argparse.Namespace, workdir: Path) -> int:
    print(f"bare relay ({args.messages} messages, {args.concurrency} SMTP clients)", flush=True)
    bare_rate, bare_cpu = bare_relay(workdir, args.messages, args.concurrency, args.timeout,
                                     args.warmup)
    print(f"bare relay: {bare_rate:.1f} msg/s; load {load()}", flush=True)
    with sandbox_at(args.root) as (box, agent):
        access = box.bootstrap()
        keys = api_keys(box, access.user_email,
                        max(args.concurrency, math.ceil(args.messages / PER_KEY)))
        meter = sandbox_meter(box)
        results = {}
        for via, title, request in (("api", "API send -> capture", "POST /api/v1/send (200)"),
                                    ("smtp", "agent SMTP -> capture", "SMTP transaction (250)")):
            print(f"{title}: warming up ({args.warmup} messages)", flush=True)
            warm = measure(box, agent, keys, args.warmup, args.concurrency, args.timeout,
                           via=via)
            if warm.failures or len(warm.arrived) != args.warmup:
                report(warm, args.warmup, args.concurrency, title, request)
                print("FAILED: the warm-up did not get through", file=sys.stderr)
                return 1
            print(f"{title}: sending {args.messages} messages from {agent}", flush=True)
            snap = meter.snapshot()
            run = measure(box, agent, keys, args.messages, args.concurrency, args.timeout,
                          via=via)
            used = cpu.per_message_ms(snap, meter.snapshot(), args.messages)
            ok = report(run, args.messages, args.concurrency, title, request)
            results[title] = (run, used, ok)
    print()
    print(f"{'path':34} {'msg/s':>8} {'ratio':>6}  (load {load()})")
    print(f"{'bare relay -> smtp-sink':34} {bare_rate:8.1f} {1:6.2f}")
    for title, (run, _, _) in results.items():
        print(f"{title:34} {rate(run):8.1f} {rate(run) / bare_rate:6.2f}")
    print()
    print(cpu.table_header())
    print(cpu.table_line("bare relay -> smtp-sink", bare_cpu))
    for title, (_, used, _) in results.items():
        print(cpu.table_line(title, used))
    if not all(ok for _, _, ok in results.values()):
        print("FAILED: not every message arrived exactly once", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
