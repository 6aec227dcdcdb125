"""bench/realtime: how soon an agent hears of new mail after the SMTP 250.

At a steady inbound rate, mail goes through the sandbox's Postfix (policy
service, milter, PostgreSQL) and the time from the SMTP client's 250 to

- the WebSocket frame, for a local-mode agent connected to the API (the
  milter's NOTIFY, the API process's LISTEN, the client's greenlet), and
- the webhook POSTs, for a cloud-mode agent and a subscription to
  email.received (the worker; bench/realtime_webhook measures that alone),

is printed as p50, p99 and max, with a check that every message arrived
exactly once on every path. A frame can beat the 250: the milter commits (and
NOTIFYs) before Postfix answers the client, so small or negative times are
real.

It brings up a sandbox in a temporary directory (or reuses the one under
``--root``) and stops what it started. Run as root: ``bench/realtime``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import signal
import statistics
import sys
import threading
import time
from contextlib import ExitStack
from pathlib import Path
from urllib.parse import quote, urlencode

import requests
import websocket

sys.path.insert(0, str(Path(__file__).resolve().parent))
from inbound import sandbox_at
from realtime_webhook import Arrivals, _interrupt, percentile, receiver, send_steadily, set_up

from e2a.core.accounts import registration as accounts
from e2a.core.db import single_connection
from sandbox.stack import Sandbox

SUBJECT = re.compile(r"^rt-(\d+)-([0-9a-f]{8})$")


class Frames:
    """A WebSocket client on its own thread: when each numbered message's
    frame arrived (first time) and how many times in all."""

    def __init__(self, url: str, run: str) -> None:
        self.first: dict[int, float] = {}
        self.count: dict[int, int] = {}
        self._run = run
        self._ws = websocket.create_connection(url, timeout=10)
        self._ws.settimeout(None)
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while True:
            try:
                text = self._ws.recv()
            except (websocket.WebSocketException, OSError):
                return
            at = time.monotonic()
            if not text:
                continue
            found = SUBJECT.match(json.loads(text).get("subject", ""))
            if found and found.group(2) == self._run:
                number = int(found.group(1))
                self.first.setdefault(number, at)
                self.count[number] = self.count.get(number, 0) + 1

    def close(self) -> None:
        self._ws.close()


def local_agent(box: Sandbox) -> tuple[str, str]:
    """A user of its own with a local-mode agent: (key, address)."""
    with single_connection(box.config()) as conn:
        user = accounts.create_user(conn, f"bench-ws-{secrets.token_hex(4)}@sandbox.test")
        key = accounts.issue_key(conn, user["id"], name="bench").key
    made = requests.post(f"{box.api_url}/api/v1/agents", timeout=15,
                         headers={"Authorization": f"Bearer {key}"},
                         json={"slug": f"rt-ws-{secrets.token_hex(4)}", "agent_mode": "local"})
    made.raise_for_status()
    return key, made.json()["email"]


def ws_url(api_url: str, email: str, key: str) -> str:
    return (api_url.replace("http://", "ws://", 1)
            + f"/api/v1/agents/{quote(email, safe='')}/ws?{urlencode({'token': key})}")


def wait_for_all(arrived: list[dict[int, float]], total: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(len(a) < total for a in arrived):
        time.sleep(0.2)
    time.sleep(1.0)  # a late duplicate would arrive meanwhile


Row = tuple[str, list[float], int]  # label, latencies (s), messages seen twice


def measure_websocket(box: Sandbox, args: argparse.Namespace) -> list[Row]:
    run = secrets.token_hex(4)
    total = args.warmup + args.messages
    key, agent = local_agent(box)
    frames = Frames(ws_url(box.api_url, agent, key), run)
    try:
        print(f"websocket: {total} messages at {args.rate:g}/s to {agent}", flush=True)
        accepted = send_steadily(box.ports.smtp, agent, total, args.rate, run)
        wait_for_all([frames.first], total, args.timeout)
    finally:
        frames.close()
    measured = range(args.warmup, total)
    return [("websocket frame",
             [frames.first[n] - accepted[n] for n in measured if n in frames.first],
             sum(1 for n in measured if frames.count.get(n, 0) > 1))]


def measure_webhooks(box: Sandbox, args: argparse.Namespace) -> list[Row]:
    run = secrets.token_hex(4)
    total = args.warmup + args.messages
    arrivals = Arrivals()
    server = receiver(arrivals, run)
    try:
        agent = set_up(box, server.server_address[1])
        print(f"webhooks: {total} messages at {args.rate:g}/s to {agent}", flush=True)
        accepted = send_steadily(box.ports.smtp, agent, total, args.rate, run)
        wait_for_all(list(arrivals.first.values()), total, args.timeout)
    finally:
        server.shutdown()
    measured = range(args.warmup, total)
    rows = []
    for path, label in (("agent", "cloud agent's webhook POST"),
                        ("events", "subscription event POST")):
        first, count = arrivals.first[path], arrivals.count[path]
        rows.append((label, [first[n] - accepted[n] for n in measured if n in first],
                     sum(1 for n in measured if count.get(n, 0) > 1)))
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(prog="bench/realtime", description=__doc__.split("\n")[0])
    parser.add_argument("--root", type=Path,
                        help="reuse (or start and keep) the sandbox here; default: a "
                             "temporary one, stopped at the end")
    parser.add_argument("--rate", type=float, default=20.0, help="messages per second")
    parser.add_argument("-m", "--messages", type=int, default=600,
                        help="measured messages per path (600 at 20/s: 30 s)")
    parser.add_argument("--warmup", type=int, default=20, help="messages before measuring")
    parser.add_argument("--timeout", type=float, default=60.0,
                        help="seconds to wait for the last arrivals")
    parser.add_argument("--paths", default="websocket,webhook",
                        help="comma-separated: websocket, webhook")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bench/realtime: run as root (the sandbox runs a private Postfix)",
              file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _interrupt)
    paths = {p.strip() for p in args.paths.split(",") if p.strip()}
    rows: list[Row] = []
    with ExitStack() as stack:
        box, _ = stack.enter_context(sandbox_at(args.root))
        if "websocket" in paths:
            rows += measure_websocket(box, args)
        if "webhook" in paths:
            rows += measure_webhooks(box, args)
    print()
    print(f"{args.messages} messages per path at {args.rate:g}/s (after {args.warmup} "
          f"warm-up), {os.cpu_count()} CPUs; from the SMTP client's 250 to:")
    print(f"{'':28} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}  arrived")
    ok = True
    for label, got, twice in rows:
        if got:
            print(f"{label:28} {statistics.median(got) * 1000:8.1f} "
                  f"{percentile(got, 99) * 1000:8.1f} {max(got) * 1000:8.1f}  "
                  f"{len(got)}/{args.messages}, {twice} twice")
        else:
            print(f"{label:28} {'-':>8} {'-':>8} {'-':>8}  0/{args.messages}")
        ok = ok and len(got) == args.messages and twice == 0
    if not ok:
        print("FAILED: a message was lost or announced twice", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
