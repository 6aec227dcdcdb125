"""The verify-only stack Debian operators run today, for bench/inbound.

Debian 12's pyspf-milter (SPF), opendkim (DKIM verify) and opendmarc (DMARC)
as milters, in that order, on a Postfix instance relaying to smtp-sink. Each
runs as its own process from a config file of ours (Debian's shipped
settings, plus what the bench needs: our sockets and PID files, loopback
clients verified rather than skipped as internal, one authserv-id that
opendmarc trusts), and all resolve through the sandbox's DNS:

- opendmarc (glibc's resolver, no setting for it) and pyspf-milter (pyspf on
  pydns, none either) read /etc/resolv.conf, which can only name port 53:
  they run inside the namespaces of ``dnsrelay.py``, where a private
  resolv.conf names the relay's address, port 53, and the relay forwards
  every query to the sandbox DNS;
- opendkim (libunbound) has ``Nameservers``, but libunbound will not query
  a loopback address, so it runs in those namespaces too, ``Nameservers``
  naming the relay's address. The unbound settings that would let it query
  the sandbox DNS directly (``do-not-query-localhost: no``) go in a
  ``ResolverConfiguration`` file, which opendkim re-parses concurrently
  under load: unbound's parser is not thread-safe, and opendkim died
  ("fatal flex scanner internal error", measured with 20 sessions).
  libunbound also answers every name under .test NXDOMAIN itself (RFC
  6761), hence bench/inbound's signed domain under .example.

Postfix's cleanup hands each milter the message as the previous ones left
it, so opendmarc reads the spf= and dkim= results of the two before it from
their Authentication-Results headers, and the sink's copy carries all three.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from email.parser import BytesHeaderParser
from email.policy import compat32
from pathlib import Path

import dnsrelay

from sandbox import supervisor
from sandbox.postfix import Instance

AUTHSERV_ID = "verify.bench.example"
# The bench's clients connect from loopback, which each milter would skip as
# internal mail by default; this address (TEST-NET-1) takes that place.
NOT_OUR_CLIENT = "192.0.2.1"
# Package -> the binary the bench runs.
PACKAGES = {"pyspf-milter": "/usr/bin/pyspf-milter", "opendkim": "/usr/sbin/opendkim",
            "opendmarc": "/usr/sbin/opendmarc"}
GROUPS = ("pyspf-milter", "opendkim", "opendmarc")  # CPU groups, in milter order
POLICY_RC_D = Path("/usr/sbin/policy-rc.d")
CHECKS = ("spf", "dkim", "dmarc")
START_TIMEOUT = 30.0
# pyspf-milter 3.0.4 keys a per-connection cache of SPF results by a random
# number below 100,000 drawn per message: two messages of one connection
# that draw the same number make the second's end of data raise, and Postfix
# answers 451 (measured: about one run in four with 20 sessions of 50
# messages). Its own main, with that cache emptied at each MAIL FROM: what
# every message of a one-message connection gets.
PYSPF_MILTER = """\
import sys
import spf_engine.milter_spf as m
envfrom = m.spfMilter.envfrom
def fresh_envfrom(self, *args):
    self.instance_dict.clear()
    return envfrom(self, *args)
m.spfMilter.envfrom = fresh_envfrom
sys.argv[0] = "/usr/bin/pyspf-milter"
m.main()
"""


def missing_packages() -> list[str]:
    return [name for name, binary in PACKAGES.items() if not Path(binary).exists()]


def install_packages(names: list[str]) -> None:
    """apt-get install, with no packaged service started (policy-rc.d denies
    it, ours only for the install's length) or enabled at boot."""
    print(f"verify stack: installing {' '.join(names)} with apt-get", flush=True)
    ours = not POLICY_RC_D.exists()
    if ours:
        POLICY_RC_D.write_text("#!/bin/sh\n# e2a bench/inbound: no service starts.\nexit 101\n")
        POLICY_RC_D.chmod(0o755)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        # opendmarc's history database is not needed to verify: no MySQL set-up.
        subprocess.run(["debconf-set-selections"], check=True, env=env, text=True,
                       input="opendmarc opendmarc/dbconfig-install boolean false\n")
        subprocess.run(["apt-get", "install", "-y", "--no-install-recommends", *names],
                       check=True, env=env)
    finally:
        if ours:
            POLICY_RC_D.unlink()
    _keep_services_off(names)


def _keep_services_off(names: list[str]) -> None:
    if Path("/run/systemd/system").is_dir():
        subprocess.run(["systemctl", "disable", "--now", *names], check=False)
        return
    for name in names:
        subprocess.run(["update-rc.d", name, "disable"], check=False,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        subprocess.run([f"/etc/init.d/{name}", "stop"], check=False,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def ensure_packages() -> str | None:
    """None once the three milters are installed, else why they are not."""
    missing = missing_packages()
    if not missing:
        return None
    if shutil.which("apt-get") is None:
        return f"{', '.join(missing)} missing and no apt-get to install them"
    try:
        install_packages(missing)
    except (OSError, subprocess.CalledProcessError) as exc:
        return f"installing {', '.join(missing)} failed: {exc}"
    missing = missing_packages()
    return f"{', '.join(missing)} still missing after apt-get" if missing else None


@dataclass
class Milter:
    name: str
    socket: Path
    process: subprocess.Popen[bytes]


def _milter_dir(workdir: Path, user: str) -> Path:
    """A directory the milter, once it has dropped to ``user``, writes its
    socket and PID file in; Postfix's smtpd reaches the socket through it."""
    path = workdir / user
    path.mkdir()
    entry = pwd.getpwnam(user)
    os.chown(path, entry.pw_uid, entry.pw_gid)
    path.chmod(0o755)
    return path


def opendkim_conf(run: Path) -> str:
    return "\n".join([
        # Debian 12's /etc/opendkim.conf, minus TrustAnchorFile: the sandbox's
        # zones are unsigned, and DNSSEC validation against the real root
        # would find every answer bogus.
        "Syslog yes", "SyslogSuccess yes", "Canonicalization relaxed/simple",
        "OversignHeaders From", "UserID opendkim",
        # The bench's own: verify only, everyone, through the sandbox DNS.
        "Mode v", f"InternalHosts {NOT_OUR_CLIENT}", f"Nameservers {dnsrelay.ADDRESS}",
        f"AuthservID {AUTHSERV_ID}", "Background no", "UMask 000",
        f"Socket local:{run}/opendkim.sock", f"PidFile {run}/opendkim.pid", ""])


def opendmarc_conf(run: Path, ignore_hosts: Path) -> str:
    return "\n".join([
        # Debian 12's /etc/opendmarc.conf.
        "PublicSuffixList /usr/share/publicsuffix/public_suffix_list.dat", "Syslog true",
        "UserID opendmarc",
        # The bench's own: the SPF and DKIM results of the two milters before it.
        f"AuthservID {AUTHSERV_ID}", f"TrustedAuthservIDs {AUTHSERV_ID}",
        f"IgnoreHosts {ignore_hosts}", "Background false", "UMask 0000",
        f"Socket local:{run}/opendmarc.sock", f"PidFile {run}/opendmarc.pid", ""])


def pyspf_conf(run: Path) -> str:
    return "\n".join([
        # Debian 12's /etc/pyspf-milter/pyspf-milter.conf.
        "debugLevel = 1", "TestOnly = 1", "HELO_reject = Fail", "Mail_From_reject = Fail",
        "PermError_reject = False", "TempError_Defer = False", "UserID = pyspf-milter",
        # The bench's own. UMask 0, as for the others: Postfix's smtpd (user
        # postfix) connects to the socket.
        "UMask = 0", f"skip_addresses = {NOT_OUR_CLIENT}/32",
        f"InternalHosts = {NOT_OUR_CLIENT}", f"Authserv_Id = {AUTHSERV_ID}",
        f"Socket = local:{run}/pyspf-milter.sock", f"PidFile = {run}/pyspf-milter.pid", ""])


@contextmanager
def dns_relay(workdir: Path, dns_port: int) -> Iterator[int]:
    """dnsrelay.py's PID once its namespaces are ready; stopped afterwards."""
    resolv = workdir / "resolv.conf"
    resolv.write_text(f"nameserver {dnsrelay.ADDRESS}\n")
    resolv.chmod(0o644)
    proc = subprocess.Popen([sys.executable, "-P", str(Path(__file__).with_name("dnsrelay.py")),
                             str(dns_port), str(resolv)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        if line.strip() != "ready":
            proc.kill()
            raise RuntimeError(f"dnsrelay.py did not start: {proc.communicate()[1].strip()}")
        yield proc.pid
    finally:
        _stop(proc)


def _stop(proc: subprocess.Popen) -> None:  # type: ignore[type-arg]
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextmanager
def milter(name: str, argv: list[str], sock: Path, log: Path) -> Iterator[Milter]:
    """A milter in the foreground, its PID ours; up once its socket accepts."""
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
    try:
        _wait_up(lambda: sock.exists() and supervisor.accepts(f"unix:{sock}"),
                 lambda: proc.poll() is None, f"{name} at {sock}", log)
        yield Milter(name, sock, proc)
    finally:
        _stop(proc)


def _wait_up(ready: Callable[[], bool], alive: Callable[[], bool], what: str,
             log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while not ready():
        if not alive() or time.monotonic() > deadline:
            raise RuntimeError(f"{what}: not up; its output:\n{log.read_text(errors='replace')}")
        time.sleep(0.1)


@dataclass
class Stack:
    postfix: Instance
    milters: list[Milter]
    relay_pid: int


@contextmanager
def verify_stack(workdir: Path, *, dns_port: int, smtp_port: int, reinject_port: int,
                 submit_port: int, filter_port: int, sink_port: int) -> Iterator[Stack]:
    """The three milters and their Postfix, relaying to the sink on ``sink_port``."""
    root = workdir / "verify-stack"
    root.mkdir()
    root.chmod(0o755)
    with ExitStack() as stack:
        relay_pid = stack.enter_context(dns_relay(root, dns_port))
        in_relay_ns = ["nsenter", f"--target={relay_pid}", "--net", "--mount", "--"]
        milters = []
        run = _milter_dir(root, "pyspf-milter")
        conf = root / "pyspf-milter.conf"
        conf.write_text(pyspf_conf(run))
        milters.append(stack.enter_context(milter(
            "pyspf-milter", [*in_relay_ns, "/usr/bin/python3", "-c", PYSPF_MILTER, str(conf)],
            run / "pyspf-milter.sock", root / "pyspf-milter.log")))
        run = _milter_dir(root, "opendkim")
        conf = root / "opendkim.conf"
        conf.write_text(opendkim_conf(run))
        milters.append(stack.enter_context(milter(
            "opendkim", [*in_relay_ns, PACKAGES["opendkim"], "-f", "-x", str(conf)],
            run / "opendkim.sock", root / "opendkim.log")))
        run = _milter_dir(root, "opendmarc")
        ignore = root / "opendmarc-ignore-hosts"
        ignore.write_text(NOT_OUR_CLIENT + "\n")
        conf = root / "opendmarc.conf"
        conf.write_text(opendmarc_conf(run, ignore))
        milters.append(stack.enter_context(milter(
            "opendmarc", [*in_relay_ns, PACKAGES["opendmarc"], "-f", "-c", str(conf)],
            run / "opendmarc.sock", root / "opendmarc.log")))
        instance = Instance(
            root=root / "postfix", hostname=AUTHSERV_ID, smtp_port=smtp_port,
            reinject_port=reinject_port, submit_port=submit_port,
            filter_address=f"127.0.0.1:{filter_port}", relayhost=f"[127.0.0.1]:{sink_port}",
            # The generated main.cf's smtpd_milters takes a list: the three, in order.
            milter_socket=",".join(f"unix:{m.socket}" for m in milters),
            policy_socket=None, filter_all_mail=False)
        instance.write_config()
        instance.start()
        stack.callback(instance.stop)
        yield Stack(instance, milters, relay_pid)


def verdicts(dump: Path, names: set[str]) -> Counter[str]:
    """How many of the sink's files ``names`` carry spf=pass, dkim=pass and
    dmarc=pass in an Authentication-Results header of our authserv-id."""
    counts: Counter[str] = Counter()
    parser = BytesHeaderParser(policy=compat32)
    for name in names:
        with (dump / name).open("rb") as fp:
            headers = parser.parse(fp)
        passed = set()
        for value in headers.get_all("Authentication-Results", []):
            text = " ".join(str(value).split())
            if text.split(";", 1)[0].strip() != AUTHSERV_ID:
                continue
            passed |= {check for check in CHECKS if f"{check}=pass" in text}
        counts.update(passed)
    return counts
