"""The Debian package, end to end, on this machine.

Builds the .deb from this tree, installs it with apt (so the services run on
Debian's packaged libraries, not the virtualenv), wires it into a Postfix
configured exactly as Debian configures one (stock master.cf, smtpd
chrooted) with `e2a postfix install`, starts the five services the way
their systemd units do, sends a mail that an agent then reads through the
API, and checks that uninstall, and removing the package, leave main.cf and
master.cf as they were. The package is purged at the end.

Postfix runs as a private instance (`postfix -c DIR`) on loopback ports, so
the machine's own /etc/postfix and port 25 are never touched. There is no
systemd here, so each unit's command line runs under the unit's user with
its environment, minus systemd's sandboxing.

Takes a minute or two (the first run also downloads the dependencies);
E2A_SKIP_DEB=1 skips it locally. CI runs it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import pwd
import shlex
import shutil
import signal
import smtplib
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest
import requests
from sandbox_harness import RunningSandbox, compose, smtp_send, wait_until
from stockpostfix import make_private, postfix, write_stock
from unitfiles import SERVICES, environment_file, service

from e2a.cli.sandbox.stack import Ports
from e2a.core import config, release

pytestmark = [
    pytest.mark.system,
    pytest.mark.skipif(os.geteuid() != 0, reason="installs a package: needs root"),
    pytest.mark.skipif(bool(os.environ.get("E2A_SKIP_DEB")), reason="E2A_SKIP_DEB is set"),
]

REPO = Path(__file__).resolve().parents[2]
PACKAGE = "e2a-postfix"
E2A = "/usr/bin/e2a"
UNITS = Path("/lib/systemd/system")
HOSTNAME = "mx.debtest.test"
SHARED_DOMAIN = "agents.debtest.test"
SYSTEMD_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
READY_TIMEOUT = 90.0
# Maintainer scripts run Debian's Python tools (py3compile, e2a itself), which
# must not inherit the PYTHON* settings meant for the checkout (make test's).
APT_ENV = {**{k: v for k, v in os.environ.items() if not k.startswith("PYTHON")},
           "DEBIAN_FRONTEND": "noninteractive"}
# Wait for dpkg's lock rather than fail when something else is installing.
APT_GET = ("apt-get", "-y", "-q", "-o", "DPkg::Lock::Timeout=600")
LOCK = Path("/run/lock/e2a-deb-test.lock")


def run(*args: str | Path, timeout: float = 300, check: bool = True,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([str(a) for a in args], capture_output=True, text=True, cwd="/",
                          timeout=timeout, check=False, env=env)
    if check and done.returncode != 0:
        raise AssertionError(f"{shlex.join(str(a) for a in args)} failed ({done.returncode}):\n"
                             f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return done


@pytest.fixture(scope="module")
def package() -> Iterator[Path]:
    """The package, built from this tree and installed; purged afterwards.
    Test runs in parallel on one machine take turns: there is one dpkg."""
    out = Path(tempfile.mkdtemp(prefix="e2a-test-deb-"))
    out.chmod(0o755)  # apt's download user reads the .deb from here
    with LOCK.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield from _installed(out)
        finally:
            shutil.rmtree(out, ignore_errors=True)


def _installed(out: Path) -> Iterator[Path]:
    try:
        run(REPO / ".ci" / "build-deb", out, timeout=900)
        [deb] = out.glob(f"{PACKAGE}_*_all.deb")
        install = (*APT_GET, "install", "--no-install-recommends", "--reinstall", deb)
        if run(*install, timeout=900, env=APT_ENV, check=False).returncode != 0:
            # Package lists older than the mirror's files: refresh them once.
            run(*APT_GET, "update", timeout=600, env=APT_ENV)
            run(*install, timeout=900, env=APT_ENV)
        yield deb
    finally:
        run(*APT_GET, "purge", PACKAGE, check=False, env=APT_ENV)


@dataclass
class Host:
    """A mail host as an operator would have it: Debian's Postfix, configured
    and running, and our configuration for the package's services."""

    root: Path
    etc: Path          # Postfix's configuration directory
    spool: Path        # its queue directory (smtpd's chroot)
    ports: Ports
    config: Path       # /etc/e2a/e2a.toml of this host
    original: tuple[bytes, bytes]  # main.cf and master.cf before e2a

    def files(self) -> tuple[bytes, bytes]:
        return (self.etc / "main.cf").read_bytes(), (self.etc / "master.cf").read_bytes()

    def e2a(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """The packaged command, as root, as an operator runs it."""
        env = {"PATH": SYSTEMD_PATH, "LANG": "C.UTF-8", "E2A_CONFIG": str(self.config)}
        return run(E2A, *args, env=env, check=check, timeout=300)


@pytest.fixture(scope="module")
def host(package: Path, sandbox: RunningSandbox) -> Iterator[Host]:
    root = Path(tempfile.mkdtemp(prefix="e2a-test-debhost-"))
    root.chmod(0o755)
    ports = Ports.free()
    etc = root / "etc"
    write_stock(etc, HOSTNAME)
    spool = make_private(etc, root, smtp_port=ports.smtp, relay_domains=SHARED_DOMAIN,
                         relayhost=f"[127.0.0.1]:{sandbox.box.ports.capture}")
    # The operator's own restrictions, for e2a to merge into.
    run("postconf", "-c", etc, "-e", "smtpd_recipient_restrictions=reject_non_fqdn_recipient, "
        "permit_mynetworks, reject_unauth_destination")
    # What the package's postinst makes in /var/spool/postfix, made in this queue.
    run("install", "-d", "-o", "e2a", "-g", "postfix", "-m", "2750", spool / "e2a")
    database = f"e2a_deb_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(sandbox.cluster.url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{database}"')
    config = root / "e2a.toml"
    config.write_text(
        f'[database]\nurl = "{sandbox.cluster.url.replace("@/e2a?", f"@/{database}?")}"\n'
        f'[secrets]\nhmac_secret = "{uuid.uuid4().hex}{uuid.uuid4().hex}"\n'
        f'[http]\nlisten = "127.0.0.1:{ports.api}"\npublic_url = "http://127.0.0.1:{ports.api}"\n'
        'workers = 1\n'
        f'[mail]\nhostname = "{HOSTNAME}"\nshared_domain = "{SHARED_DOMAIN}"\n'
        f'[milter]\nlisten = "unix:{spool}/e2a/milter.sock"\n'
        f'[policy]\nlisten = "unix:{spool}/e2a/policy.sock"\n'
        f'socketmap_listen = "unix:{spool}/e2a/socketmap.sock"\n'
        f'[filter]\nlisten = "127.0.0.1:{ports.filter}"\n'
        f'reinject = "127.0.0.1:{ports.reinject}"\n'
        f'[submit]\naddress = "127.0.0.1:{ports.submit}"\n'
        f'[dns]\nresolver = "{sandbox.dns.address}"\n')
    os.chown(config, 0, pwd.getpwnam("e2a").pw_gid)
    config.chmod(0o640)  # as the package's statoverride has /etc/e2a/e2a.toml
    host = Host(root=root, etc=etc, spool=spool, ports=ports, config=config,
                original=((etc / "main.cf").read_bytes(), (etc / "master.cf").read_bytes()))
    try:
        yield host
    finally:
        postfix(etc, "stop")
        with psycopg.connect(sandbox.cluster.url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        shutil.rmtree(root, ignore_errors=True)


# -- the services, the way their units run them ---------------------------

@dataclass
class Running:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path


def _unit_env(name: str, notify: Path, config: Path) -> dict[str, str]:
    svc = service(name, UNITS)
    account = pwd.getpwnam(svc["User"][0])
    env = {"PATH": SYSTEMD_PATH, "LANG": "C.UTF-8", "HOME": account.pw_dir,
           "USER": account.pw_name, "LOGNAME": account.pw_name, "SHELL": account.pw_shell,
           "NOTIFY_SOCKET": str(notify)}
    for assignment in svc.get("Environment", []):
        env.update(dict(item.split("=", 1) for item in shlex.split(assignment)))
    for file in svc.get("EnvironmentFile", []):
        env.update(environment_file(Path(file.lstrip("-"))))
    # The one difference from the unit: this test's configuration file.
    env["E2A_CONFIG"] = str(config)
    return env


def _as_unit_user(name: str, command: str) -> list[str]:
    svc = service(name, UNITS)
    privileges = ["setpriv", f"--reuid={svc['User'][0]}", f"--regid={svc['Group'][0]}",
                  "--init-groups"]
    if svc.get("NoNewPrivileges") == ["yes"]:
        privileges.append("--no-new-privs")
    return [*privileges, "--", *shlex.split(command)]


@contextlib.contextmanager
def units_running(host: Host) -> Iterator[dict[str, Running]]:
    """ExecCondition, then ExecStart, for each service; yields once every one
    has said READY=1 on its notify socket; SIGTERM (as systemd stops them) after."""
    notify_dir = host.root / "notify"
    notify_dir.mkdir(mode=0o755, exist_ok=True)
    running: dict[str, Running] = {}
    listeners: dict[str, socket.socket] = {}
    try:
        for name in SERVICES:
            notify = notify_dir / f"{name}.sock"
            listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            listener.bind(str(notify))
            notify.chmod(0o666)  # the unit's user sends to it
            listeners[name] = listener
            env = _unit_env(name, notify, host.config)
            svc = service(name, UNITS)
            for condition in svc.get("ExecCondition", []):
                done = subprocess.run(_as_unit_user(name, condition), env=env, cwd="/",
                                      capture_output=True, text=True, timeout=120,
                                      check=False)
                assert done.returncode == 0, f"{name}: ExecCondition: {done.stderr}"
            log = host.root / f"{name}.log"
            with log.open("wb") as out:
                proc = subprocess.Popen(_as_unit_user(name, svc["ExecStart"][0]), env=env,
                                        cwd="/", stdout=out, stderr=out)
            running[name] = Running(name, proc, log)
        for name, listener in listeners.items():
            _wait_ready(running[name], listener)
        yield running
    finally:
        for item in running.values():
            if item.proc.poll() is None:
                item.proc.send_signal(signal.SIGTERM)
        for item in running.values():
            try:
                item.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                item.proc.kill()
                item.proc.wait()
        for listener in listeners.values():
            listener.close()


def _wait_ready(item: Running, listener: socket.socket) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    listener.settimeout(0.5)
    while True:
        try:
            if b"READY=1" in listener.recv(4096).split(b"\n"):
                return
        except TimeoutError:
            pass
        if item.proc.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"{item.name} never said READY=1:\n"
                                 + item.log.read_text(errors="replace")[-3000:])


def _start_postfix(host: Host) -> None:
    done = postfix(host.etc, "start")
    maillog = host.root / "log" / "maillog"
    assert done.returncode == 0, done.stderr
    wait_until(lambda: _accepts(host.ports.smtp), timeout=30,
               what=f"postfix on 127.0.0.1:{host.ports.smtp} ("
                    f"{maillog.read_text(errors='replace')[-2000:] if maillog.exists() else ''})")


def _accepts(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
        return True
    return False


# -- the tests --------------------------------------------------------------

def test_the_package_installs_its_parts(package: Path) -> None:
    assert run(E2A, "--help").stdout.startswith("Usage: e2a")
    conffiles = run("dpkg-query", "-W", "-f=${Conffiles}", PACKAGE).stdout
    assert "/etc/e2a/e2a.toml" in conffiles and "/etc/default/e2a" in conffiles
    toml = os.stat("/etc/e2a/e2a.toml")
    assert (toml.st_uid, toml.st_gid, toml.st_mode & 0o777) == (
        0, pwd.getpwnam("e2a").pw_gid, 0o640)
    sockets = os.stat("/var/spool/postfix/e2a")
    assert pwd.getpwuid(sockets.st_uid).pw_name == "e2a"
    assert sockets.st_mode & 0o7777 == 0o2750
    # A fresh install has no secret: every unit's ExecCondition says "skip".
    unconfigured = run(E2A, "config", "check", check=False,
                       env={"PATH": SYSTEMD_PATH, "E2A_CONFIG": "/etc/e2a/e2a.toml"})
    assert unconfigured.returncode == 1
    assert "secrets.hmac_secret: required" in unconfigured.stderr
    units = sorted(str(p) for p in UNITS.glob("e2a*"))
    assert len(units) == len(SERVICES) + 2  # and e2a.target, e2a-stop.service
    if shutil.which("systemd-analyze"):
        verify = run("systemd-analyze", "verify", *units)
        assert verify.stderr == ""
        for unit in (u for u in units if u.endswith(".service")):
            # Exposure 2.0 or less on systemd's 0-10 scale (the threshold is x10).
            done = run("systemd-analyze", "security", "--offline=yes", "--threshold=20", unit)
            verdict = done.stdout.splitlines()[-1]
            assert "OK" in verdict or "SAFE" in verdict, done.stdout[-500:]


def test_mail_reaches_an_agent_through_the_packaged_services(host: Host,
                                                             sandbox: RunningSandbox) -> None:
    state = ["--state-file", str(host.root / "postfix-install.json")]
    assert host.e2a("db", "migrate").stdout.startswith("applied: 001_schema.sql")

    dry = host.e2a("postfix", "install", "-c", str(host.etc), *state, "--dry-run")
    assert "+smtpd_milters = unix:e2a/milter.sock" in dry.stdout
    assert host.files() == host.original
    host.e2a("postfix", "install", "-c", str(host.etc), *state)
    wired = host.files()
    assert "nothing to change" in host.e2a("postfix", "install", "-c", str(host.etc),
                                           *state).stdout
    assert host.files() == wired

    with units_running(host) as running:
        for item in running.values():
            # Debian's python3 with the private modules, not the virtualenv.
            exe = os.readlink(f"/proc/{item.proc.pid}/exe")
            assert exe.startswith("/usr/bin/python3"), (item.name, exe)
        _start_postfix(host)
        check = host.e2a("postfix", "check", "-c", str(host.etc), check=False)
        assert check.returncode == 0, check.stdout
        doctor = host.e2a("doctor", "--postfix-directory", str(host.etc), check=False)
        assert doctor.returncode == 0, doctor.stdout
        assert "OK   sockets: milter and policy listen" in doctor.stdout

        owner = host.e2a("bootstrap", "--email", "owner@debtest.test", "--json").stdout
        api_key = json.loads(owner)["api_key"]
        agent = f"reader@{SHARED_DOMAIN}"
        host.e2a("agents", "create", "--owner", "owner@debtest.test", "--slug", "reader")

        subject = f"through the package {uuid.uuid4().hex[:8]}"
        reply = smtp_send(host.ports.smtp, "alice@sandbox.test", agent,
                          compose("alice@sandbox.test", agent, subject, "hello from Debian"))
        assert (reply.stage, reply.code) == ("DATA", 250), reply
        unknown = smtp_send(host.ports.smtp, "alice@sandbox.test", f"nobody@{SHARED_DOMAIN}",
                            compose("alice@sandbox.test", "nobody", "x", "y"))
        assert (unknown.stage, unknown.code) == ("RCPT", 550), unknown  # the policy service

        def inbox() -> list[dict]:
            response = requests.get(
                f"http://127.0.0.1:{host.ports.api}/api/v1/agents/{quote(agent, safe='')}"
                "/messages", headers={"Authorization": f"Bearer {api_key}"}, timeout=15)
            assert response.status_code == 200, response.text
            return [m for m in response.json()["messages"] if m["subject"] == subject]

        [message] = wait_until(inbox, timeout=30, what="the message in the agent's inbox")
        assert message["from"].endswith("alice@sandbox.test")
        _reinjection_takes_our_login_only(host)
        # The magic-link pages: the package's templates, rendered by Debian's Jinja2.
        page = requests.get(f"http://127.0.0.1:{host.ports.api}/api/v1/approve",
                            params={"token": "not-a-token"}, timeout=15)
        assert page.status_code == 400, page.text
        assert page.headers["Content-Type"].startswith("text/html")
        assert "This link is not valid" in page.text
        postfix(host.etc, "stop")

    undone = host.e2a("postfix", "uninstall", "-c", str(host.etc), *state)
    assert "master.cf: remove e2a-filter/unix" in undone.stdout
    assert host.files() == host.original


def _reinjection_takes_our_login_only(host: Host) -> None:
    """The installed reinjection service (Debian's Postfix, chrooted smtpd):
    a plain local client is refused, the filter's XCLIENT login is taken."""
    cfg = config.load(host.config, env={})
    for login in ("", release.reinject_login(cfg)):
        with smtplib.SMTP("127.0.0.1", host.ports.reinject, timeout=30) as smtp:
            smtp.ehlo("local.test")
            if login:
                assert smtp.docmd("XCLIENT", f"LOGIN={login}")[0] == 220
                smtp.ehlo("local.test")
            assert smtp.mail("alice@sandbox.test")[0] == 250
            code, text = smtp.rcpt(f"someone@{SHARED_DOMAIN}")
            if login:
                assert code == 250, text
                smtp.rset()
            else:
                assert (code, text[:5]) == (554, b"5.7.1"), text


def test_removing_the_package_unwires_postfix(host: Host, package: Path) -> None:
    """Its prerm takes e2a out of every Postfix it was installed into
    (recorded in /var/lib/e2a/postfix-install.json, the default)."""
    host.e2a("postfix", "install", "-c", str(host.etc))
    assert host.files() != host.original
    run(*APT_GET, "remove", PACKAGE, env=APT_ENV)
    assert host.files() == host.original
    assert not Path(E2A).exists()
