"""bench/inbound: inbound throughput through the full path against bare Postfix.

One run drives Postfix's ``smtp-source`` at

  (a) the sandbox's Postfix: policy service at RCPT, milter at end of data,
      every message stored for an agent in PostgreSQL (then discarded), and
  (b) a second Postfix instance, same binaries and same generated main.cf,
      with no milter and no policy service, relaying to ``smtp-sink``,
  (c) a third one like (b) with the verify-only stack Debian operators run
      today as its milters: pyspf-milter, opendkim and opendmarc, resolving
      through the sandbox DNS (see verifystack.py; ``--no-verify-stack``
      leaves it out; the packages are installed with apt-get if missing),

and prints messages per second for each and their ratios. It checks the work
was done: (a) must have stored one row per message, (b) and (c) must have
delivered every message to their sink, and (c) must have found SPF, DKIM and
DMARC pass on every signed message (its Authentication-Results headers at
the sink). It brings up a sandbox in a temporary directory
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
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

sys.path.insert(0, str(Path(__file__).resolve().parent))  # -P: bench/ is not on the path
import cpu
import smtpload
import verifystack

from e2a.core.accounts import dkimkeys
from e2a.core.accounts.dkimkeys import SigningKey
from e2a.core.db import single_connection
from e2a.core.mta import dkimsign
from sandbox import supervisor
from sandbox.postfix import Instance
from sandbox.stack import Ports, Sandbox

SMTP_SOURCE = "/usr/sbin/smtp-source"
SMTP_SINK = "/usr/sbin/smtp-sink"
SENDER = "bench@sandbox.test"  # SPF passes for loopback in the sandbox DNS
SINK_RECIPIENT = "sink@bench.example"
WARMUP_MESSAGES = 300
# SPF, DKIM and DMARC p=reject in the sandbox DNS. Not under .test: the verify
# stack's opendkim (libunbound) answers .test names NXDOMAIN itself.
SIGNED_DOMAIN = "signed-sender.example"
SIGNED_SELECTOR = "bench"
DNS_TTL = 300  # seconds; a common TTL for SPF and DMARC records
SINK_PIDS: dict[str, int] = {}  # sink directory name -> smtp-sink's PID


@dataclass(frozen=True)
class Result:
    path: str
    messages: int
    seconds: float
    done: int  # stored rows (a) or messages at the sink (b, c)
    done_what: str
    cpu_ms: dict[str, float] = field(default_factory=dict)  # per message, per group
    passed: Counter[str] = field(default_factory=Counter)  # verify stack: spf/dkim/dmarc=pass

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
def sandbox_at(root: Path | None, *, durable: bool = True,
               prepare: Callable[[Sandbox], None] | None = None) -> Iterator[tuple[Sandbox, str]]:
    """The sandbox and its agent's address; one we start is stopped afterwards.

    ``durable``: a cluster we create keeps fsync and synchronous_commit on,
    as production does (the tests' sandbox turns them off): a commit then
    costs a WAL flush, part of what is measured. ``prepare`` runs before
    the sandbox starts (extra DNS records)."""
    owned = root is None
    if root is None:
        root = Path(tempfile.mkdtemp(prefix="e2a-bench-"))
        root.chmod(0o755)  # postgres and postfix users reach into it
    box = Sandbox(root, Ports.free() if owned else None)
    box.cluster.fast = not durable
    if prepare is not None:
        prepare(box)
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
def sink(workdir: Path, port: int, name: str = "sink") -> Iterator[Path]:
    """smtp-sink writing one file per message into a directory (to count them);
    its PID in ``SINK_PIDS`` (for the CPU table)."""
    dump = workdir / name
    dump.mkdir()
    dump.chmod(0o777)  # smtp-sink drops to nobody
    proc = subprocess.Popen([SMTP_SINK, "-u", "nobody", "-d", f"{dump}/%H%M%S.",
                             f"127.0.0.1:{port}", "256"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    SINK_PIDS[name] = proc.pid
    try:
        wait_for(lambda: supervisor.accepts(f"127.0.0.1:{port}"), 10, "smtp-sink listening")
        yield dump
    finally:
        del SINK_PIDS[name]
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


def sandbox_meter(box: Sandbox) -> cpu.Meter:
    """CPU per group of the sandbox's processes; the bench itself (the client
    side, and smtp-source as its reaped child) counts under others."""
    services = {name: [cpu.pidfile(box.pidfile(name))]
                for name in ("milter", "policy", "worker", "filter", "api")}
    return cpu.Meter({
        "Postfix": [box.postfix.master_pid()],
        "PostgreSQL": [cpu.pidfile(box.cluster.data / "postmaster.pid")],
        **services,
        "others": [os.getpid(), cpu.pidfile(box.dns.pidfile),
                   cpu.pidfile(box.pidfile("capture"))],
    })


def bare_meter(bare: Instance, dump: Path) -> cpu.Meter:
    return cpu.Meter({"Postfix": [bare.master_pid()],
                      "others": [os.getpid(), SINK_PIDS[dump.name]]})


def verify_meter(stack: verifystack.Stack, dump: Path, box: Sandbox) -> cpu.Meter:
    """A group per milter; the DNS relay, like the sandbox DNS, under others."""
    return cpu.Meter({
        "Postfix": [stack.postfix.master_pid()],
        **{m.name: [m.process.pid] for m in stack.milters},
        "others": [os.getpid(), SINK_PIDS[dump.name], stack.relay_pid,
                   cpu.pidfile(box.dns.pidfile)],
    })


def stored_rows(box: Sandbox, agent: str) -> int:
    with single_connection(box.config()) as conn:
        return conn.execute("SELECT count(*) AS n FROM messages WHERE recipient = %s",
                            (agent,)).fetchone()["n"]


class Workload:
    """What the SMTP client sends: smtp-source's generated messages
    (unsigned), or copies of one DKIM-signed message from a domain with
    SPF, DKIM and DMARC p=reject, each copy with its own Message-ID."""

    def __init__(self, name: str, args: argparse.Namespace, sender: str,
                 key: SigningKey | None = None, to: str = "") -> None:
        self.name, self.args, self.sender, self.key, self.to = name, args, sender, key, to
        self.serial = 0

    def prepare(self, count: int) -> list[bytes]:
        if self.key is None:
            return []
        copies = []
        for _ in range(count):
            self.serial += 1
            copies.append(dkimsign.sign(signed_message_text(self.sender, self.to, self.serial),
                                        self.key))
        return copies

    def send(self, port: int, recipient: str, count: int, copies: list[bytes]) -> float:
        if self.key is None:
            return smtp_source(port, recipient, sessions=self.args.sessions, messages=count,
                               length=self.args.length, timeout=self.args.timeout)
        return smtpload.send(port, self.sender, recipient, copies,
                             sessions=self.args.sessions, timeout=self.args.timeout)


def signed_message_text(sender: str, to: str, serial: int) -> bytes:
    """~4.9 KB once signed: a plain-text letter of ordinary line lengths."""
    line = b"The quarterly figures are attached below; please check them before Friday.\r\n"
    body = line * 55
    head = (f"From: Bench Sender <{sender}>\r\nTo: <{to}>\r\n"
            f"Subject: Quarterly figures, copy {serial}\r\n"
            f"Date: Mon, 07 Dec 2026 18:00:00 +0000\r\n"
            f"Message-ID: <{serial}.{os.getpid()}.{time.time_ns()}@{SIGNED_DOMAIN}>\r\n"
            "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
            "Content-Transfer-Encoding: 7bit\r\n\r\n").encode()
    return head + body


def signing_key() -> tuple[SigningKey, str]:
    pair = dkimkeys.generate(SIGNED_SELECTOR)
    return SigningKey(SIGNED_DOMAIN, SIGNED_SELECTOR, pair.private_pem), pair.public_key


def publish_signed_domain(box: Sandbox, public: str) -> None:
    box.dns.add_mail_domain(SIGNED_DOMAIN, "mx.sandbox.test",
                            dmarc="v=DMARC1; p=reject; adkim=r; aspf=r")
    box.dns.add_txt(f"{SIGNED_SELECTOR}._domainkey.{SIGNED_DOMAIN}",
                    dkimkeys.public_record(public))


def prepare_sandbox(box: Sandbox, public: str, args: argparse.Namespace) -> None:
    publish_signed_domain(box, public)
    box.milter_processes = args.milter_processes


def verdicts(box: Sandbox, agent: str, since: int) -> str:
    """How the milter judged the rows stored after row count ``since``."""
    with single_connection(box.config()) as conn:
        rows = conn.execute(
            "SELECT spf, dkim, dmarc, count(*) AS n FROM (SELECT spf, dkim, dmarc FROM messages"
            " WHERE recipient = %s ORDER BY created_at OFFSET %s) m"
            " GROUP BY spf, dkim, dmarc", (agent, since)).fetchall()
    return ", ".join(f"spf={r['spf']} dkim={r['dkim']} dmarc={r['dmarc']}: {r['n']}"
                     for r in rows)


def run_full(box: Sandbox, agent: str, workload: Workload, messages: int,
             meter: cpu.Meter | None = None) -> Result:
    copies = workload.prepare(messages)
    before = stored_rows(box, agent)
    cpu_before = meter.snapshot() if meter else {}
    seconds = workload.send(box.ports.smtp, agent, messages, copies)
    # 250 comes after the commit: every row is there when the client is done.
    cpu_after = meter.snapshot() if meter else {}
    done = stored_rows(box, agent) - before
    return Result(f"{workload.name} full: policy + milter -> PG", messages, seconds, done,
                  "rows stored" + (f" ({verdicts(box, agent, before)})" if meter else ""),
                  cpu.per_message_ms(cpu_before, cpu_after, messages) if meter else {})


def run_bare(bare: Instance, dump: Path, workload: Workload, messages: int,
             meter: cpu.Meter | None = None) -> Result:
    return run_relayed(bare, dump, workload, messages, meter,
                       f"{workload.name} bare: Postfix -> smtp-sink")


def run_verify(stack: verifystack.Stack, dump: Path, workload: Workload, messages: int,
               meter: cpu.Meter | None = None) -> Result:
    return run_relayed(stack.postfix, dump, workload, messages, meter,
                       f"{workload.name} verify: SPF+DKIM+DMARC", verdicts=True)


def run_relayed(instance: Instance, dump: Path, workload: Workload, messages: int,
                meter: cpu.Meter | None, path: str, verdicts: bool = False) -> Result:
    """Through a Postfix relaying to its sink; ``verdicts``: count the
    verify stack's passes in the delivered copies."""
    copies = workload.prepare(messages)
    before = set(os.listdir(dump))
    cpu_before = meter.snapshot() if meter else {}
    try:
        seconds = workload.send(instance.smtp_port, SINK_RECIPIENT, messages, copies)
    except Exception as exc:
        # A refusal's cause (a milter's error, say) is in that Postfix's log only.
        raise RuntimeError(f"{path}: {exc}\n--- {instance.maillog} (tail) ---\n"
                           f"{instance.maillog_tail(40)}") from exc
    # Accepted is not yet delivered: wait until the sink has them all.
    wait_for(lambda: len(os.listdir(dump)) - len(before) >= messages and instance.queue_empty(),
             workload.args.timeout, f"{path}: delivering to smtp-sink")
    cpu_after = meter.snapshot() if meter else {}
    new = set(os.listdir(dump)) - before
    passed = verifystack.verdicts(dump, new) if verdicts else Counter()
    what = "at the sink" + (" (" + ", ".join(f"{c}=pass: {passed[c]}"
                                             for c in verifystack.CHECKS) + ")"
                            if verdicts else "")
    return Result(path, messages, seconds, len(new), what,
                  cpu.per_message_ms(cpu_before, cpu_after, messages) if meter else {}, passed)


def main() -> int:
    args = parse_args()
    if os.geteuid() != 0:
        print("bench/inbound: run as root (the sandbox runs a private Postfix)",
              file=sys.stderr)
        return 2
    for tool in (SMTP_SOURCE, SMTP_SINK):
        if not Path(tool).exists():
            print(f"bench/inbound: {tool} missing (apt-get install postfix)", file=sys.stderr)
            return 2
    if args.verify_stack:
        why = verifystack.ensure_packages()
        if why is not None:
            print(f"bench/inbound: the verify-only stack cannot run: {why}; "
                  "--no-verify-stack leaves it out", file=sys.stderr)
            return 2
    signal.signal(signal.SIGTERM, _interrupt)
    names = [w.strip() for w in args.workloads.split(",") if w.strip()]
    key, public = signing_key()

    with ExitStack() as stack:
        workdir = Path(tempfile.mkdtemp(prefix="e2a-bench-work-"))
        workdir.chmod(0o755)
        stack.callback(shutil.rmtree, workdir, ignore_errors=True)
        box, agent = stack.enter_context(
            sandbox_at(args.root, prepare=lambda b: prepare_sandbox(b, public, args)))
        ports = Ports.free()
        dump = stack.enter_context(sink(workdir, ports.capture))
        bare = stack.enter_context(bare_postfix(workdir, ports))
        paths: list[tuple[str, Callable[..., Result], cpu.Meter]] = [
            ("bare", lambda w, n, m=None: run_bare(bare, dump, w, n, m), bare_meter(bare, dump))]
        if args.verify_stack:
            vports = Ports.free()
            vdump = stack.enter_context(sink(workdir, vports.capture, "verify-sink"))
            vstack = stack.enter_context(verifystack.verify_stack(
                workdir, dns_port=box.dns.port, smtp_port=vports.smtp,
                reinject_port=vports.reinject, submit_port=vports.submit,
                filter_port=vports.filter, sink_port=vports.capture))
            paths.append(("verify", lambda w, n, m=None: run_verify(vstack, vdump, w, n, m),
                          verify_meter(vstack, vdump, box)))
        paths.append(("full", lambda w, n, m=None: run_full(box, agent, w, n, m),
                      sandbox_meter(box)))
        groups = [*cpu.GROUPS[:-1], *(verifystack.GROUPS if args.verify_stack else ()),
                  cpu.GROUPS[-1]]
        workloads = {"signed": Workload("signed", args, f"news@{SIGNED_DOMAIN}", key, agent),
                     "unsigned": Workload("unsigned", args, SENDER)}
        chosen = [workloads[n] for n in names]
        print(f"load: {load()}; milter processes: {box.config().milter.processes}; "
              f"PostgreSQL fsync={pg_setting(box, 'fsync')} "
              f"synchronous_commit={pg_setting(box, 'synchronous_commit')}", flush=True)
        for workload in chosen:
            print(f"warming up {', '.join(p[0] for p in paths)} ({args.warmup} "
                  f"{workload.name} messages each)", flush=True)
            for _, run, _ in paths:
                run(workload, args.warmup)

        rounds: dict[str, list[dict[str, Result]]] = {w.name: [] for w in chosen}
        for n in range(args.rounds):
            for workload in chosen:
                # Bare first, the others right after: the machine's other load
                # is as alike as it gets for the parts of one ratio.
                results = {name: run(workload, args.messages, meter)
                           for name, run, meter in paths}
                rounds[workload.name].append(results)
                for result in results.values():
                    print(f"round {n + 1}: {result.path}: {result.messages} messages in "
                          f"{result.seconds:.2f} s = {result.rate:.1f} msg/s; "
                          f"{result.done} {result.done_what}", flush=True)
                print(f"round {n + 1}: {workload.name}: " + "; ".join(
                    f"{label} {value:.2f}" for label, value in ratios(results).items())
                    + f"; load {load()}", flush=True)
                print(cpu.table_header(groups))
                for result in results.values():
                    print(cpu.table_line(result.path, result.cpu_ms, groups))
                print(flush=True)

    return summary(args, rounds)


def ratios(results: dict[str, Result]) -> dict[str, float]:
    """full / bare, and with the verify stack: verify / bare and verify / full."""
    out = {"full / bare": results["full"].rate / results["bare"].rate}
    if "verify" in results:
        out["verify / bare"] = results["verify"].rate / results["bare"].rate
        out["verify / full"] = results["verify"].rate / results["full"].rate
    return out


def unverified(workload: str, result: Result) -> bool:
    """The verify stack must have passed SPF, DKIM and DMARC on every signed
    message; the unsigned ones (no signature) are only reported."""
    return workload == "signed" and any(result.passed[c] != result.messages
                                        for c in verifystack.CHECKS)


def summary(args: argparse.Namespace, rounds: dict[str, list[dict[str, Result]]]) -> int:
    print()
    print(f"-s {args.sessions} -m {args.messages} (unsigned -l {args.length}), "
          f"{args.rounds} round(s), {os.cpu_count()} CPUs, load {load()}")
    print(f"{'path':44} {'msg/s':>8}  work done")
    failed = unchecked = False
    for name, per_round in rounds.items():
        for side in per_round[0]:
            results = [r[side] for r in per_round]
            print(f"{results[0].path:44} {statistics.median(r.rate for r in results):8.1f}  "
                  + ", ".join(f"{r.done}/{r.messages}" for r in results)
                  + ("; pass " + ", ".join("/".join(str(r.passed[c]) for r in results) + f" {c}"
                                           for c in verifystack.CHECKS)
                     if side == "verify" else ""))
            unchecked |= side == "verify" and any(unverified(name, r) for r in results)
        for label in ratios(per_round[0]):
            values = [ratios(r)[label] for r in per_round]
            print(f"{name}: ratio {label}: {statistics.median(values):.2f}"
                  + (f" (median of {', '.join(f'{v:.2f}' for v in values)})"
                     if len(values) > 1 else ""))
        failed |= not all(r.done == r.messages for results in per_round
                          for r in results.values())
    if failed:
        print("FAILED: a path did not store or deliver every message", file=sys.stderr)
    if unchecked:
        print("FAILED: the verify stack did not pass SPF, DKIM and DMARC on every signed "
              "message", file=sys.stderr)
    return 1 if failed or unchecked else 0


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench/inbound", description=__doc__.split("\n")[0])
    parser.add_argument("--root", type=Path,
                        help="reuse (or start and keep) the sandbox here; default: a "
                             "temporary one, stopped at the end")
    parser.add_argument("-s", "--sessions", type=int, default=20, help="parallel SMTP sessions")
    parser.add_argument("-m", "--messages", type=int, default=2000, help="messages per path")
    parser.add_argument("-l", "--length", type=int, default=4096,
                        help="message body bytes of the unsigned workload")
    parser.add_argument("--warmup", type=int, default=WARMUP_MESSAGES,
                        help="messages per path and workload before measuring")
    parser.add_argument("--workloads", default="signed,unsigned",
                        help="comma-separated: signed (one DKIM-signed message from a "
                             "p=reject domain), unsigned (smtp-source's)")
    parser.add_argument("--milter-processes", type=int, default=os.cpu_count() or 1,
                        help="milter.processes of a sandbox this run starts (default: "
                             "one per CPU)")
    parser.add_argument("--rounds", type=int, default=1,
                        help="measure every path this many times, bare, verify, then "
                             "full; the median of the rounds' ratios counts")
    parser.add_argument("--no-verify-stack", dest="verify_stack", action="store_false",
                        help="leave out the verify-only stack (pyspf-milter, opendkim, "
                             "opendmarc), and do not install it")
    parser.add_argument("--timeout", type=float, default=300.0,
                        help="seconds any one step may take")
    return parser.parse_args()


def load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def pg_setting(box: Sandbox, name: str) -> str:
    with single_connection(box.config()) as conn:
        return str(conn.execute(f"SHOW {name}").fetchone()[name])


def _interrupt(signum: int, frame: FrameType | None) -> None:
    """A SIGTERM (a CI timeout) unwinds like Ctrl-C, so everything is stopped."""
    raise KeyboardInterrupt


if __name__ == "__main__":
    sys.exit(main())
