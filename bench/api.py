"""bench/api: inbox API latency with 100,000 messages for one agent, over HTTP.

    bench/api [--messages 100000] [--requests 300] [--root DIR] [--deep-page 1000]

Starts a private PostgreSQL cluster (under --root, kept for the next run, or
in a temporary directory removed afterwards), loads the messages through the
store in batches (as the milter would store them, minus SMTP), starts
``e2a serve api`` (gunicorn, the configured workers) on a free loopback port
and prints p50/p99 latency of:

- listing a page of 50: the first page, a deep page reached by following
  next_token, each without and with a filter (and with a filter no message
  matches, the worst case: the whole mailbox is scanned);
- fetching one message (the first read of each, so it also marks it read);
- listing conversations.

Requests run one after another from one keep-alive client, so the figures
are latencies, not throughput. Everything it started is stopped at the end.
Run as root (the cluster belongs to the postgres user). A database kept under
--root from before a schema change cannot be reused: remove the directory.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import requests

from e2a.core import config
from e2a.core.accounts import registration as accounts
from e2a.core.db import migrate, single_connection
from e2a.core.ids import new_id
from e2a.core.inbound import attest
from e2a.core.store import agents as agent_store
from e2a.core.store import messages as message_store
from e2a.core.store import users as user_store
from sandbox.postgres import Cluster

BENCH_USER = "bench@bench.example"
SLUG = "bench-inbox"
SHARED_DOMAIN = "agents.bench.example"
BATCH = 2000
E2A = Path(sys.executable).with_name("e2a")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def write_config(path: Path, cluster: Cluster, port: int) -> Path:
    path.write_text(
        f'[database]\nurl = "{cluster.url}"\n'
        f'[secrets]\nhmac_secret = "{secrets.token_hex(32)}"\n'
        f'[mail]\nshared_domain = "{SHARED_DOMAIN}"\nhostname = "mx.bench.example"\n'
        f'[http]\nlisten = "127.0.0.1:{port}"\n'
        # Counted as on a deployment (a write per request), never reached.
        'requests_per_minute = 100000000\n'
        '[log]\nlevel = "warning"\n')
    return path


def message_row(agent: dict, n: int) -> dict:
    """Message ``n``: 50 senders, a thread of 5 for half of them, ~1.5 KB."""
    message_id = new_id("msg")
    sender = f"sender{n % 50:02}@example{n % 7}.org"
    subject = f"Report {n} on topic {n % 100}"
    raw = (f"From: {sender}\r\nTo: {agent['email']}\r\nSubject: {subject}\r\n"
           f"Message-ID: <{message_id}@example.org>\r\n\r\n"
           + "All work and no play makes a dull agent.\r\n" * 35).encode()
    return {
        "id": message_id, "user_id": agent["user_id"], "agent_id": agent["id"],
        "recipient": agent["email"], "sender": sender, "envelope_sender": sender,
        "to_recipients": [agent["email"]], "cc": [], "reply_to": [], "subject": subject,
        "email_message_id": f"<{message_id}@example.org>", "in_reply_to": "",
        "references_ids": [],
        "conversation_id": f"conv_bench_{n // 10:06}" if n % 2 else None,
        "raw_message": raw, "size_bytes": len(raw),
        "auth_headers": {attest.PREFIX + "Body-Hash": attest.body_hash(raw)},
        "spf": "pass", "dkim": "none", "dmarc": "none", "verified": False,
        "entity_type": "human", "queue_id": "", "dedupe_key": None,
    }


def prepare(cfg: config.Config, count: int) -> tuple[dict, str]:
    """The bench agent holding ``count`` messages (loading what is missing) and
    a fresh API key for it."""
    with single_connection(cfg, autocommit=True) as conn:
        try:
            migrate.migrate(conn)
        except migrate.MigrationError as exc:
            raise SystemExit(f"bench/api: {exc} (a kept --root from an older schema: "
                             "remove the directory)") from None
    with single_connection(cfg) as conn:
        accounts.seed_shared_domain(conn, cfg)
        user = user_store.user_by_email(conn, BENCH_USER) or accounts.create_user(
            conn, BENCH_USER)
        agent = agent_store.agent_by_email(conn, f"{SLUG}@{SHARED_DOMAIN}") or \
            accounts.register_agent(conn, cfg, user["id"], slug=SLUG)
        key = accounts.issue_key(conn, user["id"], name="bench").key
        conn.commit()
        have = message_store.count_for_agent(conn, agent["id"])
        started = time.monotonic()
        for first in range(have, count, BATCH):
            message_store.insert_inbound_many(
                conn, [message_row(agent, n) for n in range(first, min(first + BATCH, count))])
            conn.commit()
        if count > have:
            print(f"loaded {count - have} messages in {time.monotonic() - started:.1f} s")
    # Fresh statistics and visibility map: what a long-running database has.
    with single_connection(cfg, autocommit=True) as conn:
        message_store.vacuum_analyze(conn)
    return agent, key


@contextmanager
def api_server(config_path: Path, port: int, log_path: Path) -> Iterator[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("E2A_")}
    env["E2A_CONFIG"] = str(config_path)
    base = f"http://127.0.0.1:{port}"
    with log_path.open("wb") as log:
        proc = subprocess.Popen([str(E2A), "serve", "api"], stdout=log, stderr=log, env=env)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if requests.get(base + "/api/health", timeout=1).status_code == 200:
                    break
            except requests.RequestException:  # not listening yet, or still booting
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("e2a serve api did not come up:\n" + log_path.read_text())
            time.sleep(0.1)
        yield base
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def measure(label: str, requests_count: int, call: Callable[[int], None]) -> None:
    for i in range(min(10, requests_count)):  # warm the worker, its pool and the cache
        call(i)
    times = []
    for i in range(requests_count):
        started = time.perf_counter()
        call(i)
        times.append((time.perf_counter() - started) * 1000)
    cuts = statistics.quantiles(times, n=100, method="inclusive")
    print(f"{label:<58} p50 {cuts[49]:7.2f} ms   p99 {cuts[98]:7.2f} ms")


def run(args: argparse.Namespace, root: Path) -> None:
    os.chmod(root, 0o755)  # noqa: S103 - the cluster runs as the postgres user
    cluster = Cluster(root)
    cluster.init()
    cluster.start()
    try:
        port = free_port()
        config_path = write_config(root / "bench.toml", cluster, port)
        cfg = config.load(config_path, env={})
        agent, key = prepare(cfg, args.messages)
        with api_server(config_path, port, root / "api.log") as base:
            bench(args, base, agent["email"], key)
    finally:
        cluster.stop()


def bench(args: argparse.Namespace, base: str, email: str, key: str) -> None:
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {key}"
    path = f"{base}/api/v1/agents/{email.replace('@', '%40')}"

    def page(params: dict) -> dict:
        result = session.get(f"{path}/messages", params={"page_size": 50, **params},
                             timeout=30)
        result.raise_for_status()
        return result.json()

    def token_at(depth: int, params: dict) -> str:
        token = ""
        for _ in range(depth - 1):
            token = page({**params, **({"token": token} if token else {})})["next_token"]
        return token

    print(f"{args.messages} messages for {email}; {args.requests} requests per line; "
          f"deep page = page {args.deep_page}; {os.cpu_count()} CPUs, load average "
          f"{os.getloadavg()[0]:.1f} (latencies rise with it)")
    sender_filter = {"from": "sender07@"}  # one sender in 50
    nothing = {"subject_contains": "no message has this"}
    deep = token_at(args.deep_page, {})
    # The filter keeps one message in 50, so its pages run out 50 times sooner.
    filtered_page = max(2, args.deep_page // 50)
    deep_filtered = token_at(filtered_page, sender_filter)
    measure("list, first page", args.requests, lambda i: page({}))
    measure(f"list, page {args.deep_page} (next_token)", args.requests,
            lambda i: page({"token": deep}))
    measure("list, first page, from=sender07@ (2% match)", args.requests,
            lambda i: page(sender_filter))
    measure(f"list, page {filtered_page}, from=sender07@ (next_token)", args.requests,
            lambda i: page({**sender_filter, "token": deep_filtered}))
    measure("list, first page, subject_contains matching nothing", args.requests,
            lambda i: page(nothing))
    measure("list, first page, conversation_id", args.requests,
            lambda i: page({"conversation_id": "conv_bench_004001", "direction": "all"}))
    ids = []
    token = ""
    while len(ids) < args.requests + 10:
        listed = page({"sort": "asc", **({"token": token} if token else {})})
        ids += [m["message_id"] for m in listed["messages"]]
        token = listed["next_token"]

    def fetch(i: int) -> None:
        result = session.get(f"{path}/messages/{ids[i]}", timeout=30)
        result.raise_for_status()
        assert result.json()["status"] == "read"

    measure("get one message (first read: marks it read)", args.requests, fetch)
    measure("get one message again (already read)", args.requests, fetch)
    measure("list conversations (up to 100)", min(args.requests, 100),
            lambda i: session.get(f"{path}/conversations", timeout=30).raise_for_status())
    print(f"load average at the end: {os.getloadavg()[0]:.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--deep-page", type=int, default=1000)
    parser.add_argument("--root", type=Path,
                        help="keep the database here and reuse it next time")
    args = parser.parse_args()
    if args.root:
        args.root.mkdir(parents=True, exist_ok=True)
        run(args, args.root.resolve())
        return
    root = Path(tempfile.mkdtemp(prefix="e2a-bench-"))
    try:
        run(args, root)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
