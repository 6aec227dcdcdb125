"""The Debian package on a Debian 12 booted with systemd, as an operator has it.

A container (systemd-nspawn -b --private-network, see nspawnhost.py) with
Debian's Postfix and PostgreSQL 15 running; our .deb, built from this tree,
installed with apt inside it; then docs/operations.md followed step by step,
as root: the database role without sudo, the secret in /etc/default/e2a, `e2a
db migrate`, `e2a postfix install`, `systemctl start e2a.target`, `e2a
doctor`, a first user and an agent. Then: every unit active with its
hardening, a mail through the container's Postfix stored and listed by the
API, PostgreSQL restarted under it, `systemctl restart e2a.target`, `systemctl
stop e2a.target` that returns once the units have stopped, a broken unit that
gives up at systemd's start limit, and `apt purge`
after which Postfix takes ordinary mail again with main.cf and master.cf as
they were.

Marked `systemd`: `pytest -m "not systemd"` skips it locally; CI runs it.
The first run on a machine debootstraps the root file system (a few minutes,
cached in /var/cache/e2a-postfix-tests); later runs take a few minutes.
"""

from __future__ import annotations

import json
import secrets
import shlex
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from nspawnhost import HOSTNAME, REPO, Container, booted, rootfs_tarball, run

pytestmark = pytest.mark.systemd

SHARED_DOMAIN = "agents.systemdtest.test"
OWNER = "owner@systemdtest.test"
UNITS = ("e2a-milter", "e2a-policy", "e2a-filter", "e2a-api", "e2a-worker")
DNS = "127.0.0.1:5353"
API = "http://127.0.0.1:8080"
# What each unit must run with (systemctl show's names and values).
HARDENING = {"User": "e2a", "NoNewPrivileges": "yes", "ProtectSystem": "strict",
             "ProtectHome": "yes", "PrivateTmp": "yes", "PrivateDevices": "yes",
             "RestrictSUIDSGID": "yes", "CapabilityBoundingSet": "",
             "Restart": "on-failure", "StartLimitBurst": "5"}

T = TypeVar("T")


def wait_for(probe: Callable[[], T | None], timeout: float, what: str) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} within {timeout:.0f}s")
        time.sleep(0.5)


class Host:
    """The booted container and what the steps learn on the way."""

    def __init__(self, box: Container, deb: str) -> None:
        self.box = box
        self.deb = deb
        self.api_key = ""
        self.original: tuple[bytes, bytes] = (b"", b"")

    def sh(self, script: str, check: bool = True, timeout: float = 300) -> Any:
        return self.box.sh(script, check=check, timeout=timeout)

    def python(self, code: str, *args: str, check: bool = True) -> Any:
        """Debian's python3 inside (the container has no curl or swaks)."""
        return self.sh(f"python3 -c {shlex.quote(code)} {shlex.join(args)}", check=check)

    def postfix_files(self) -> tuple[bytes, bytes]:
        etc = self.box.root / "etc" / "postfix"
        return (etc / "main.cf").read_bytes(), (etc / "master.cf").read_bytes()

    def smtp(self, sender: str, rcpt: str, subject: str) -> tuple[str, int, str]:
        """One SMTP transaction to the container's Postfix on port 25."""
        out = self.python(SMTP_CLIENT, sender, rcpt, subject).stdout
        stage, code, text = json.loads(out)
        return stage, int(code), text

    def api(self, path: str, method: str = "GET", body: dict[str, Any] | None = None
            ) -> tuple[int, Any]:
        out = self.python(HTTP_CLIENT, method, API + path, self.api_key,
                          json.dumps(body) if body is not None else "").stdout
        status, payload = json.loads(out)
        return int(status), payload

    def unit(self, name: str, *props: str) -> dict[str, str]:
        out = self.sh(f"systemctl show {name} " + " ".join(f"-p {p}" for p in props)).stdout
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def journal(self) -> str:
        return self.sh("journalctl -q --no-pager -n 200 -u 'e2a-*'", check=False).stdout


SMTP_CLIENT = """
import json, smtplib, sys
from email.message import EmailMessage
sender, rcpt, subject = sys.argv[1:4]
msg = EmailMessage()
msg["From"], msg["To"], msg["Subject"] = sender, rcpt, subject
msg["Message-ID"] = smtplib.email.utils.make_msgid()
msg.set_content("hello from a booted Debian")
def out(stage, code, text):
    print(json.dumps([stage, code, text.decode(errors="replace")
                      if isinstance(text, bytes) else text]))
    sys.exit(0)
with smtplib.SMTP("127.0.0.1", 25, timeout=60) as c:
    c.ehlo("client.example.org")
    code, text = c.mail(sender)
    if code != 250: out("MAIL", code, text)
    code, text = c.rcpt(rcpt)
    if code not in (250, 251): out("RCPT", code, text)
    try:
        code, text = c.data(msg.as_bytes())
    except smtplib.SMTPDataError as exc:
        code, text = exc.smtp_code, exc.smtp_error
    out("DATA", code, text)
"""

SET_KEYS = """
import json, re, sys
path, wanted = sys.argv[1], json.loads(sys.argv[2])
section, out = "", []
for line in open(path).read().splitlines():
    header = re.match(r"\\[(\\w+)\\]$", line)
    if header:
        section = header.group(1)
    key = re.match(r"# (\\w+) = ", line)
    if key and key.group(1) in wanted.get(section, {}):
        line = f"{key.group(1)} = {wanted[section].pop(key.group(1))}"
    out.append(line)
assert not any(wanted.values()), wanted
open(path, "w").write("\\n".join(out) + "\\n")
"""

HTTP_CLIENT = """
import json, sys, urllib.request, urllib.error
method, url, key, body = sys.argv[1:5]
req = urllib.request.Request(url, method=method, data=body.encode() or None,
                             headers={"Authorization": "Bearer " + key,
                                      "Content-Type": "application/json"})
try:
    with urllib.request.urlopen(req, timeout=15) as r:
        print(json.dumps([r.status, json.loads(r.read() or b"null")]))
except urllib.error.HTTPError as e:
    print(json.dumps([e.code, e.read().decode(errors="replace")]))
except OSError as e:
    print(json.dumps([0, str(e)]))
"""


@pytest.fixture(scope="module")
def host() -> Iterator[Host]:
    started = time.monotonic()
    # Not a skip: CI must run this (make test-deps installs both).
    for tool in ("systemd-nspawn", "debootstrap"):
        assert shutil.which(tool), f"{tool} is missing: make test-deps"
    tarball = rootfs_tarball()
    work = Path(tempfile.mkdtemp(prefix="e2a-systemd-", dir="/var/tmp"))
    try:
        dist = work / "dist"
        run(REPO / ".ci" / "build-deb", dist, timeout=900)
        [deb] = dist.glob("e2a-postfix_*_all.deb")
        with booted(work, tarball) as box:
            shutil.copy(deb, box.root / "root" / deb.name)
            print(f"container booted after {time.monotonic() - started:.0f}s")
            yield Host(box, f"/root/{deb.name}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
        print(f"test_systemd took {time.monotonic() - started:.0f}s")


def test_install_as_the_documentation_says(host: Host) -> None:
    # Debian's own services are up on the booted host.
    host.sh("systemctl is-active postfix postgresql")
    # operations.md, Install, step 1: the role and database, without sudo.
    host.sh("runuser -u postgres -- createuser e2a")
    host.sh("runuser -u postgres -- createdb -O e2a e2a")
    # Step 2: the package (its dependencies come from apt's cache: no network here).
    host.sh(f"DEBIAN_FRONTEND=noninteractive apt-get install -y -q "
            f"--no-install-recommends {host.deb}", timeout=600)
    # Fresh install, no secret: every unit skipped, none failed.
    assert host.sh("systemctl is-failed e2a-milter", check=False).stdout.strip() != "failed"
    # Step 3: the secret in /etc/default/e2a, the rest in e2a.toml.
    secret = secrets.token_hex(32)
    host.sh(f"echo 'E2A_HMAC_SECRET={secret}' >> /etc/default/e2a")
    # Keys set where the conffile lists them, commented, in their sections.
    host.python(SET_KEYS, "/etc/e2a/e2a.toml", json.dumps({
        "http": {"public_url": f'"{API}"', "workers": "1"},
        "mail": {"hostname": f'"{HOSTNAME}"', "shared_domain": f'"{SHARED_DOMAIN}"'},
        "dns": {"resolver": f'"{DNS}"', "timeout": "2.0"}}))
    # The container has no network: a DNS server of its own for the test names.
    host.sh(f"systemd-run --unit=test-dns dnsmasq --keep-in-foreground --no-resolv "
            f"--no-hosts --listen-address=127.0.0.1 --bind-interfaces --port=5353 "
            f"--mx-host={SHARED_DOMAIN},{HOSTNAME},10 --address=/{HOSTNAME}/127.0.0.1")
    # Step 4 and 5, as root.
    assert host.sh("e2a db migrate").stdout.startswith("applied: ")
    host.original = host.postfix_files()
    assert "+smtpd_milters" in host.sh("e2a postfix install --dry-run").stdout
    host.sh("e2a postfix install")
    # Step 6.
    host.sh("systemctl start e2a.target", timeout=180)
    host.sh("postfix reload")
    doctor = host.sh("e2a doctor", check=False)
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr + host.journal()
    assert "OK   api:" in doctor.stdout
    assert "OK   sockets:" in doctor.stdout
    owner = json.loads(host.sh(f"e2a bootstrap --email {OWNER} --json").stdout)
    host.api_key = owner["api_key"]
    host.sh(f"e2a agents create --owner {OWNER} --slug reader")


def test_every_unit_runs_hardened(host: Host) -> None:
    for name in UNITS:
        props = host.unit(name, "ActiveState", "SubState", "NRestarts", "MainPID",
                          *HARDENING)
        assert (props["ActiveState"], props["SubState"]) == ("active", "running"), (
            name, props, host.journal())
        assert props["NRestarts"] == "0", (name, host.journal())
        for key, value in HARDENING.items():
            assert props[key] == value, (name, key, props[key])
        uid = host.sh(f"awk '/^Uid:/ {{print $3}}' /proc/{props['MainPID']}/status").stdout
        assert uid.strip() == host.sh("id -u e2a").stdout.strip(), name
    # The system call filter is in force (not dropped for the API).
    api = host.unit("e2a-api", "SystemCallFilter")["SystemCallFilter"]
    assert api.startswith("~") is False and "setuid" not in api.split()


def test_a_mail_is_stored_and_listed(host: Host) -> None:
    # An agent registered through the API without agent_mode: local.
    status, made = host.api("/api/v1/agents", "POST", {"slug": "viaapi"})
    assert status == 201, made
    agent = f"reader@{SHARED_DOMAIN}"
    subject = f"through systemd {secrets.token_hex(4)}"
    reply = host.smtp("alice@example.org", agent, subject)
    assert reply[:2] == ("DATA", 250), reply
    _listed(host, agent, subject)


def _listed(host: Host, agent: str, subject: str) -> None:
    def inbox() -> list[dict[str, Any]] | None:
        status, body = host.api(f"/api/v1/agents/{agent}/messages")
        if status != 200:
            return None
        return [m for m in body["messages"] if m["subject"] == subject]

    wait_for(inbox, 30, f"{subject!r} in {agent}'s inbox")


def test_mail_is_stored_after_postgresql_restarts(host: Host) -> None:
    host.sh("systemctl restart postgresql", timeout=120)
    agent = f"reader@{SHARED_DOMAIN}"
    subject = f"after the restart {secrets.token_hex(4)}"

    def accepted() -> tuple[str, int, str] | None:
        reply = host.smtp("alice@example.org", agent, subject)
        assert reply[1] < 500, reply  # a 4xx while it reconnects, never a bounce
        return reply if reply[:2] == ("DATA", 250) else None

    wait_for(accepted, 30, "250 after PostgreSQL's restart")
    _listed(host, agent, subject)
    for name in UNITS:
        assert host.unit(name, "NRestarts")["NRestarts"] == "0", (name, host.journal())


def test_restart_and_stop_of_the_target(host: Host) -> None:
    host.sh("systemctl restart e2a.target", timeout=180)
    for name in UNITS:
        assert host.unit(name, "ActiveState")["ActiveState"] == "active", host.journal()
    failed = host.sh("systemctl list-units --failed --plain --no-legend 'e2a*'").stdout
    assert failed.strip() == ""
    # Stop returns once every unit has stopped (backups, upgrades rely on it).
    host.sh("systemctl stop e2a.target", timeout=180)
    for name in UNITS:
        assert host.unit(name, "ActiveState")["ActiveState"] == "inactive", name
    host.sh("systemctl start e2a.target", timeout=180)
    assert host.sh("e2a doctor", check=False).returncode == 0, host.journal()


def test_a_failing_unit_gives_up_after_the_start_limit(host: Host) -> None:
    """Restarted on failure, but not forever: after 5 failed starts within 2
    minutes the unit stays failed and says why."""
    dropin = "/run/systemd/system/e2a-policy.service.d"
    host.sh(f"mkdir -p {dropin} && printf '[Service]\\nEnvironment="
            f"E2A_POLICY_LISTEN=unix:/nonexistent/policy.sock\\n' > {dropin}/broken.conf "
            "&& systemctl daemon-reload")
    try:
        host.sh("systemctl restart e2a-policy", check=False, timeout=60)

        seen: list[dict[str, str]] = []

        def gave_up() -> bool:
            seen.append(host.unit("e2a-policy", "ActiveState", "Result", "NRestarts"))
            # systemd 252 keeps Result=exit-code and says it in the journal.
            return seen[-1]["ActiveState"] == "failed" and "Start request repeated too quickly" in (
                host.sh("journalctl -q --no-pager -u e2a-policy", check=False).stdout)

        try:
            wait_for(gave_up, 90, "e2a-policy hitting its start limit")
        except AssertionError as exc:
            journal = host.sh("journalctl -q --no-pager -n 40 -u e2a-policy", check=False)
            raise AssertionError(f"{exc}: {seen[-1]}\n{journal.stdout}") from None
        restarts = seen[-1]["NRestarts"]
        assert int(restarts) in (4, 5), seen[-1]
        time.sleep(5)  # and it stays down: no restart after the limit
        assert host.unit("e2a-policy", "ActiveState", "NRestarts") == {
            "ActiveState": "failed", "NRestarts": restarts}
    finally:
        host.sh(f"rm -rf {dropin} && systemctl daemon-reload && "
                "systemctl reset-failed e2a-policy")
    host.sh("systemctl start e2a-policy", timeout=60)
    assert host.sh("e2a doctor", check=False).returncode == 0, host.journal()


def test_purge_leaves_postfix_as_it_was(host: Host) -> None:
    assert host.postfix_files() != host.original
    host.sh("DEBIAN_FRONTEND=noninteractive apt-get purge -y -q e2a-postfix", timeout=300)
    assert host.postfix_files() == host.original
    # No manual reload: the running Postfix takes ordinary mail at once.
    reply = host.smtp("alice@example.org", f"root@{HOSTNAME}", "after the purge")
    assert reply[:2] == ("DATA", 250), reply
    assert host.sh("systemctl list-units --plain --no-legend 'e2a*'").stdout.strip() == ""
