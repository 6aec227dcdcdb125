"""bench/realtime_webhook: how soon a webhook POST follows the SMTP 250.

At a steady inbound rate, one mail after another goes through the sandbox's
Postfix to a cloud-mode agent whose owner also has a webhook subscription to
email.received. A receiver on loopback notes when each POST arrives: the
agent's own webhook (the message, X-E2A-Auth-* headers) and the
subscription's event. Printed: p50, p99 and max of the time from the SMTP
client's 250 to each POST, and whether every message arrived exactly once on
each path.

It brings up a sandbox in a temporary directory (or reuses the one under
``--root``) and stops what it started. Run as root: ``bench/realtime_webhook``.
"""

from __future__ import annotations

import argparse
import base64
import http.server
import json
import os
import re
import secrets
import signal
import smtplib
import statistics
import sys
import threading
import time
from contextlib import ExitStack
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))
from inbound import _interrupt, sandbox_at

from e2a.core.accounts import registration as accounts
from e2a.core.db import single_connection
from sandbox.stack import Sandbox

SENDER = "bench@sandbox.test"
TAG = re.compile(rb"rt-(\d+)-([0-9a-f]{8})")


class Arrivals:
    """When each numbered message reached each path (first arrival), and
    how many times in all."""

    def __init__(self) -> None:
        self.first: dict[str, dict[int, float]] = {"agent": {}, "events": {}}
        self.count: dict[str, dict[int, int]] = {"agent": {}, "events": {}}
        self.lock = threading.Lock()

    def note(self, path: str, number: int, at: float) -> None:
        with self.lock:
            self.first[path].setdefault(number, at)
            self.count[path][number] = self.count[path].get(number, 0) + 1


def receiver(arrivals: Arrivals, run: str) -> http.server.ThreadingHTTPServer:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            at = time.monotonic()
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()
            payload = json.loads(body)
            if self.path == "/agent":
                text = base64.b64decode(payload["raw_message"])
            else:
                text = payload["data"].get("subject", "").encode()
            found = TAG.search(text)
            if found and found.group(2).decode() == run:
                arrivals.note(self.path.strip("/"), int(found.group(1)), at)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def set_up(box: Sandbox, port: int) -> str:
    """A user with a cloud agent POSTing to us and a subscription; the agent."""
    with single_connection(box.config()) as conn:
        user = accounts.create_user(conn, f"bench-{secrets.token_hex(4)}@sandbox.test")
        key = accounts.issue_key(conn, user["id"], name="bench").key
    auth = {"Authorization": f"Bearer {key}"}
    made = requests.post(f"{box.api_url}/api/v1/agents", headers=auth, timeout=15, json={
        "slug": f"rt-{secrets.token_hex(4)}", "agent_mode": "cloud",
        "webhook_url": f"http://127.0.0.1:{port}/agent"})
    made.raise_for_status()
    requests.post(f"{box.api_url}/api/v1/webhooks", headers=auth, timeout=15, json={
        "url": f"http://127.0.0.1:{port}/events", "events": ["email.received"]}
    ).raise_for_status()
    return made.json()["email"]


def message(agent: str, number: int, run: str) -> EmailMessage:
    msg = EmailMessage()
    msg["From"], msg["To"] = SENDER, agent
    msg["Subject"] = f"rt-{number}-{run}"
    msg.set_content("A realtime bench message.\n")
    return msg


def send_steadily(port: int, agent: str, total: int, rate: float, run: str) -> dict[int, float]:
    """Mail number i is sent at start + i / rate (or as soon after as the
    previous one allows); when each one's 250 came."""
    accepted: dict[int, float] = {}
    with smtplib.SMTP("127.0.0.1", port, timeout=60) as client:
        client.ehlo("bench.sandbox.test")
        start = time.monotonic()
        for number in range(total):
            pause = start + number / rate - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            client.send_message(message(agent, number, run), SENDER, [agent])
            accepted[number] = time.monotonic()
    return accepted


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))]


def main() -> int:
    parser = argparse.ArgumentParser(prog="bench/realtime_webhook",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--root", type=Path,
                        help="reuse (or start and keep) the sandbox here; default: a "
                             "temporary one, stopped at the end")
    parser.add_argument("--rate", type=float, default=10.0, help="messages per second")
    parser.add_argument("-m", "--messages", type=int, default=300, help="measured messages")
    parser.add_argument("--warmup", type=int, default=20, help="messages before measuring")
    parser.add_argument("--timeout", type=float, default=60.0,
                        help="seconds to wait for the last POSTs")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bench/realtime_webhook: run as root (the sandbox runs a private Postfix)",
              file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _interrupt)
    run = secrets.token_hex(4)
    arrivals = Arrivals()
    total = args.warmup + args.messages
    with ExitStack() as stack:
        box, _ = stack.enter_context(sandbox_at(args.root))
        server = receiver(arrivals, run)
        stack.callback(server.shutdown)
        agent = set_up(box, server.server_address[1])
        print(f"sending {total} messages at {args.rate:g}/s to {agent}", flush=True)
        accepted = send_steadily(box.ports.smtp, agent, total, args.rate, run)
        deadline = time.monotonic() + args.timeout
        while time.monotonic() < deadline and any(
                len(arrivals.first[p]) < total for p in arrivals.first):
            time.sleep(0.2)
        time.sleep(1.0)  # a late duplicate would arrive meanwhile
    measured = range(args.warmup, total)
    ok = True
    print()
    print(f"{args.messages} messages at {args.rate:g}/s (after {args.warmup} warm-up), "
          f"{os.cpu_count()} CPUs; SMTP 250 -> webhook POST received")
    print(f"{'path':28} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}  arrived")
    for path, label in (("agent", "cloud agent's webhook"), ("events", "subscription event")):
        got = [arrivals.first[path][n] - accepted[n] for n in measured
               if n in arrivals.first[path]]
        twice = sum(1 for n in measured if arrivals.count[path].get(n, 0) > 1)
        if got:
            print(f"{label:28} {statistics.median(got) * 1000:8.1f} "
                  f"{percentile(got, 99) * 1000:8.1f} {max(got) * 1000:8.1f}  "
                  f"{len(got)}/{args.messages}, {twice} twice")
        ok = ok and len(got) == args.messages and twice == 0
    if not ok:
        print("FAILED: a message was lost or delivered twice", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
