"""`e2a postfix install|check|uninstall` on Debian's stock configuration, with
the real postconf, in a directory of the test's own."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from servicesupport import E2A, free_port
from stockpostfix import make_private, postconf, write_stock
from stockpostfix import postfix as stock_postfix

from e2a.cli import postfix_check
from e2a.cli.postconf import Postconf
from e2a.core import config

pytestmark = pytest.mark.skipif(shutil.which("postconf") is None, reason="no Postfix")


class Host:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.etc = root / "etc"
        self.state = root / "state" / "postfix-install.json"
        self.config = root / "e2a.toml"
        write_stock(self.etc, "mx.test.example")
        self.set_config("")

    def set_config(self, extra: str) -> None:
        self.config.write_text(f'[secrets]\nhmac_secret = "{"k" * 40}"\n' + extra)

    def e2a(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("E2A_")}
        env.update(E2A_CONFIG=str(self.config), PYTHONSAFEPATH="1")
        return subprocess.run([str(E2A), *args], capture_output=True, text=True, env=env,
                              cwd=self.root, timeout=120, check=False)

    def postfix(self, command: str, *args: str) -> subprocess.CompletedProcess[str]:
        return self.e2a("postfix", command, "-c", str(self.etc), *args,
                        *(("--state-file", str(self.state)) if command != "check" else ()))

    def files(self) -> tuple[bytes, bytes]:
        return (self.etc / "main.cf").read_bytes(), (self.etc / "master.cf").read_bytes()


@pytest.fixture
def host() -> Iterator[Host]:
    # Not pytest's tmp_path: Postfix's user must be able to walk down to the sockets.
    root = Path(tempfile.mkdtemp(prefix="e2a-test-postfix-"))
    root.chmod(0o755)
    try:
        yield Host(root)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_dry_run_shows_the_diff_and_changes_nothing(host: Host) -> None:
    before = host.files()
    done = host.postfix("install", "--dry-run")
    assert done.returncode == 0, done.stderr
    assert f"+++ {host.etc}/main.cf (after e2a)" in done.stdout
    assert "+smtpd_milters = unix:e2a/milter.sock" in done.stdout
    assert "+127.0.0.1:10026 inet n   -       y" in done.stdout  # chroot y as Debian's smtpd
    assert host.files() == before
    assert not host.state.exists()
    assert not list(host.etc.glob("*.e2a-backup-*"))


def test_install_is_idempotent_and_uninstall_restores_every_byte(host: Host) -> None:
    # An operator's own settings, in postconf's own style.
    postconf(host.etc, "-e", "smtpd_milters=inet:127.0.0.1:8891",
             "smtpd_recipient_restrictions=reject_non_fqdn_recipient, permit_mynetworks, "
             "reject_unauth_destination",
             "milter_connect_macros=j {daemon_name} v")
    original = host.files()
    done = host.postfix("install")
    assert done.returncode == 0, done.stderr
    assert "main.cf: change smtpd_milters = inet:127.0.0.1:8891 unix:e2a/milter.sock" in (
        done.stdout)
    installed = host.files()
    values = postconf(host.etc, "-h", "smtpd_recipient_restrictions", "milter_connect_macros")
    assert values.splitlines() == [
        "reject_non_fqdn_recipient, check_policy_service unix:e2a/policy.sock, "
        "permit_mynetworks, reject_unauth_destination",
        "j {daemon_name} v {daemon_addr} {client_addr} {client_name} {client_ptr} _"]
    assert {"127.0.0.1:10026", "127.0.0.1:10027", "e2a-filter"} <= {
        line.split()[0] for line in postconf(host.etc, "-M").splitlines()}
    backups = sorted(host.etc.glob("*.e2a-backup-*"))
    assert [b.read_bytes() for b in backups] == list(original)  # main.cf, master.cf

    again = host.postfix("install")
    assert again.returncode == 0 and "nothing to change" in again.stdout
    assert host.files() == installed

    undone = host.postfix("uninstall")
    assert undone.returncode == 0, undone.stderr
    assert host.files() == original
    assert host.postfix("uninstall").stdout.endswith("nothing to undo\n")


def test_uninstall_after_the_operator_edited_keeps_their_edit(host: Host) -> None:
    original = host.files()
    assert host.postfix("install").returncode == 0
    postconf(host.etc, "-e", "message_size_limit=52428800")
    done = host.postfix("uninstall")
    assert done.returncode == 0, done.stderr
    assert "note: main.cf: message_size_limit left as '52428800'" in done.stdout
    postconf(host.etc, "-X", "message_size_limit")
    assert host.files() == original


def test_a_foreign_service_on_our_address_refuses_install(host: Host) -> None:
    postconf(host.etc, "-M", "127.0.0.1:10026/inet=127.0.0.1:10026 inet n - y - - smtpd")
    before = host.files()
    done = host.postfix("install")
    assert done.returncode == 1
    assert "master.cf already has a service 127.0.0.1:10026/inet that is not e2a's" in (
        done.stderr)
    assert host.files() == before


@pytest.mark.skipif(os.geteuid() != 0, reason="postfix check needs root")
def test_check_names_each_problem_and_passes_once_wired(host: Host) -> None:
    spool = host.root / "spool"
    spool.mkdir()
    postconf(host.etc, "-e", f"queue_directory={spool}", f"data_directory={host.root / 'data'}")
    sockets = spool / "e2a"
    sockets.mkdir()
    host.set_config(f'[milter]\nlisten = "unix:{sockets}/milter.sock"\n'
                    f'[policy]\nlisten = "unix:{sockets}/policy.sock"\n'
                    f'socketmap_listen = "unix:{sockets}/socketmap.sock"\n')
    done = host.postfix("check")
    assert done.returncode == 1
    lines = done.stdout.splitlines()
    assert "main.cf: smtpd_milters lacks unix:e2a/milter.sock" in lines
    assert "master.cf: no service e2a-filter/unix" in lines
    assert f"milter: {sockets}/milter.sock does not exist (is the service running?)" in lines

    assert host.postfix("install").returncode == 0
    listeners = []
    for name in ("milter", "policy"):
        sock = socket.socket(socket.AF_UNIX)
        sock.bind(str(sockets / f"{name}.sock"))
        sock.listen()
        listeners.append(sock)
    try:
        (sockets / "policy.sock").chmod(0o600)  # Postfix's user may not connect
        (sockets / "milter.sock").chmod(0o666)
        done = host.postfix("check")
        assert done.returncode == 1
        assert done.stdout.splitlines() == [
            f"policy: user postfix cannot connect to {sockets}/policy.sock (it needs x on "
            "each directory above it and w on the socket)"]
        (sockets / "policy.sock").chmod(0o666)
        done = host.postfix("check")
        assert done.returncode == 0, done.stdout
        assert done.stdout == f"Postfix in {host.etc} is wired to e2a\n"
    finally:
        for sock in listeners:
            sock.close()


@pytest.mark.skipif(os.geteuid() != 0, reason="postfix check needs root")
def test_check_flags_a_socket_a_chrooted_smtpd_cannot_see(host: Host) -> None:
    outside = host.root / "run"
    outside.mkdir()
    host.set_config(f'[milter]\nlisten = "unix:{outside}/milter.sock"\n')
    done = host.postfix("check")
    assert (f"milter: unix:{outside}/milter.sock is outside /var/spool/postfix, where "
            "Postfix's chrooted smtpd cannot see it") in done.stdout.splitlines()


def reinject_entry(host: Host) -> str:
    return next(line for line in postconf(host.etc, "-M").splitlines()
                if line.startswith("127.0.0.1:10026 "))


def wiring_problems(host: Host) -> list[str]:
    cfg = config.load(host.config, env={})
    return postfix_check.wiring_problems(cfg, Postconf(host.etc))


def test_an_operators_content_filter_is_chained_after_ours(host: Host) -> None:
    amavis = "smtp-amavis:[127.0.0.1]:10024"
    postconf(host.etc, "-e", f"content_filter={amavis}")
    original = host.files()
    dry = host.postfix("install", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert f"-content_filter = {amavis}" in dry.stdout
    assert f"-o content_filter={amavis}" in dry.stdout
    assert host.files() == original

    done = host.postfix("install")
    assert done.returncode == 0, done.stderr
    assert postconf(host.etc, "-h", "content_filter") == "e2a-filter:[127.0.0.1]:10025\n"
    assert f" -o content_filter={amavis} " in reinject_entry(host)
    assert wiring_problems(host) == []
    installed = host.files()

    again = host.postfix("install")
    assert again.returncode == 0 and "nothing to change" in again.stdout, again.stdout
    assert host.files() == installed

    # Ours chained to itself would loop: that is drift, not the operator's filter.
    postconf(host.etc, "-P", "127.0.0.1:10026/inet/content_filter=e2a-filter:[127.0.0.1]:10025")
    assert wiring_problems(host) == [
        f"master.cf: service 127.0.0.1:10026/inet is not e2a's: {reinject_entry(host)}"]
    assert host.postfix("install").returncode == 0
    assert host.files() == installed

    undone = host.postfix("uninstall")
    assert undone.returncode == 0, undone.stderr
    assert host.files() == original


def test_without_an_operators_content_filter_reinjection_sets_none(host: Host) -> None:
    original = host.files()
    assert host.postfix("install").returncode == 0
    assert " -o content_filter= " in reinject_entry(host)
    assert wiring_problems(host) == []
    assert host.postfix("uninstall").returncode == 0
    assert host.files() == original


@pytest.mark.skipif(os.geteuid() != 0, reason="starts a private Postfix: needs root")
def test_uninstall_reload_reloads_a_running_postfix_only(host: Host) -> None:
    """The package's prerm: a running Postfix must let go of our sockets at
    once, or it answers every message 451 until someone reloads it."""
    make_private(host.etc, host.root, smtp_port=free_port(), relay_domains="",
                 relayhost="")
    assert host.postfix("install").returncode == 0
    stopped = host.postfix("uninstall", "--reload")
    assert stopped.returncode == 0, stopped.stderr
    assert "Postfix is not running" in stopped.stdout
    assert host.postfix("install").returncode == 0
    assert stock_postfix(host.etc, "start").returncode == 0
    try:
        done = host.postfix("uninstall", "--reload")
        assert done.returncode == 0, done.stderr
        assert f"{host.etc}: Postfix reloaded" in done.stdout
    finally:
        stock_postfix(host.etc, "stop")
