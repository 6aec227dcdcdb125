"""A Debian 12 booted with systemd, in a container (systemd-nspawn -b), for
tests that need the real service manager (tests/system/test_systemd.py).

The root file system comes from debootstrap once and is kept as a tarball in
a cache directory (E2A_NSPAWN_CACHE, default /var/cache/e2a-postfix-tests):
later runs, and CI in another checkout on the same machine, unpack it in
seconds. It has Postfix and PostgreSQL installed (as an operator's host has
them before our package) and the package's dependencies downloaded, so apt
inside the container, which has no network (--private-network), installs
our .deb as it would on a real host. The tarball's name carries a hash of
what went into it: a new dependency in debian/control makes a new one.

The container is not registered with machined (this machine's PID 1 is not
systemd); commands run in it through nsenter into its init's namespaces.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
CACHE = Path(os.environ.get("E2A_NSPAWN_CACHE", "/var/cache/e2a-postfix-tests"))
# What an operator's host has before our package: a booted Debian with
# Postfix, PostgreSQL and Python (Debian's standard system has it); dnsmasq
# answers the test's DNS names (the container has no network, and `e2a
# doctor` asks a resolver).
BASE = ("systemd", "systemd-sysv", "dbus", "ca-certificates")
INSTALLED = ("postfix", "postgresql", "dnsmasq-base", "python3")
HOSTNAME = "mx.systemdtest.test"
CONTAINER_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Maintainer scripts and Debian's Python must not inherit the checkout's PYTHON*.
HOST_ENV = {**{k: v for k, v in os.environ.items() if not k.startswith("PYTHON")},
            "DEBIAN_FRONTEND": "noninteractive", "PATH": CONTAINER_PATH}


def run(*args: str | Path, timeout: float = 600, check: bool = True,
        env: dict[str, str] | None = None,
        input: str | None = None) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([str(a) for a in args], capture_output=True, text=True, cwd="/",
                          timeout=timeout, check=False, env=env or HOST_ENV, input=input)
    if check and done.returncode != 0:
        raise AssertionError(f"{shlex.join(str(a) for a in args)} failed ({done.returncode}):\n"
                             f"{done.stdout[-4000:]}\n{done.stderr[-4000:]}")
    return done


def package_dependencies() -> list[str]:
    """The Debian packages our .deb depends on by name (debian/control)."""
    control = (REPO / "debian" / "control").read_text()
    binary = control.split("\nPackage:", 1)[1]
    depends = re.search(r"^Depends:(.*?)(?=^\S)", binary, re.M | re.S)
    assert depends is not None
    names = []
    for item in depends.group(1).split(","):
        item = item.split("#")[0].strip()
        if item and not item.startswith("${"):
            names.append(item.split()[0])
    return sorted(set(names))


def rootfs_tarball() -> Path:
    """The cached root file system, made now if missing (a few minutes)."""
    wanted = "\n".join([SUITE, MIRROR, *BASE, *INSTALLED, *package_dependencies(), "v2"])
    key = hashlib.sha256(wanted.encode()).hexdigest()[:16]
    tarball = CACHE / f"debian-{SUITE}-{key}.tar"
    CACHE.mkdir(parents=True, exist_ok=True)
    with (CACHE / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two runs at once build it once
        if not tarball.exists():
            _build(tarball)
            for old in CACHE.glob(f"debian-{SUITE}-*.tar"):
                if old != tarball:
                    old.unlink()  # made for another package list: never used again
    return tarball


def _build(tarball: Path) -> None:
    root = Path(tempfile.mkdtemp(prefix="e2a-rootfs-", dir=CACHE))
    try:
        run("debootstrap", "--variant=minbase", f"--include={','.join(BASE)}", SUITE, root,
            MIRROR, timeout=1800)
        root.chmod(0o755)  # mkdtemp's 0700 would lock every service user out of /
        (root / "etc" / "hostname").write_text(HOSTNAME + "\n")
        (root / "etc" / "mailname").write_text(HOSTNAME + "\n")
        # systemd makes a fresh machine-id at each boot from an empty file.
        (root / "etc" / "machine-id").write_text("")
        # No service starts while apt runs in the chroot (policy-rc.d 101).
        policy = root / "usr" / "sbin" / "policy-rc.d"
        policy.write_text("#!/bin/sh\nexit 101\n")
        policy.chmod(0o755)
        (root / "root" / "debconf").write_text(
            f"postfix postfix/main_mailer_type select Internet Site\n"
            f"postfix postfix/mailname string {HOSTNAME}\n")
        # nspawn without --boot: a chroot with /proc, /sys and /dev, which
        # PostgreSQL's postinst needs to make its cluster; the host's network.
        inside = ("systemd-nspawn", "--quiet", "--register=no", "--keep-unit", "-D", root,
                  "--setenv=DEBIAN_FRONTEND=noninteractive")
        run(*inside, "debconf-set-selections", "/root/debconf")
        (root / "root" / "debconf").unlink()
        run(*inside, "apt-get", "install", "-y", "-q", "--no-install-recommends", *INSTALLED,
            timeout=1800)
        assert (root / "etc" / "postgresql" / "15" / "main").is_dir(), "no PostgreSQL cluster"
        # Our package's dependencies, downloaded only: apt installs them with
        # the .deb inside the booted container.
        run(*inside, "apt-get", "install", "-y", "-q", "--no-install-recommends",
            "--download-only", *package_dependencies(), timeout=1800)
        policy.unlink()
        partial = tarball.with_suffix(".partial")
        run("tar", "--numeric-owner", "--xattrs", "-cf", partial, "-C", root, ".",
            timeout=1800)
        partial.rename(tarball)
    finally:
        shutil.rmtree(root, ignore_errors=True)


@dataclass
class Container:
    root: Path
    name: str
    proc: subprocess.Popen[bytes]
    console: Path

    def init_pid(self) -> int:
        """PID (here) of the container's systemd: nspawn's one child."""
        children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
        for child in children.read_text().split():
            return int(child)
        raise LookupError("the container has no init yet")

    def sh(self, script: str, check: bool = True, timeout: float = 300,
           input: str | None = None) -> subprocess.CompletedProcess[str]:
        """A root shell command inside, with a clean environment."""
        return run("nsenter", "-t", str(self.init_pid()), "-a", "--", "/usr/bin/env", "-i",
                   f"PATH={CONTAINER_PATH}", "LANG=C.UTF-8", "HOME=/root", "USER=root",
                   "LOGNAME=root", "TERM=dumb", "/bin/sh", "-c", script,
                   check=check, timeout=timeout, input=input)

    def console_text(self) -> str:
        return self.console.read_text(errors="replace") if self.console.exists() else ""


def _boot_finished(box: Container) -> bool:
    if box.proc.poll() is not None:
        raise AssertionError(f"the container stopped while booting:\n{box.console_text()[-3000:]}")
    with contextlib.suppress(LookupError, OSError, AssertionError,
                             subprocess.TimeoutExpired):
        state = box.sh("systemctl is-system-running", check=False, timeout=20).stdout.strip()
        return state in ("running", "degraded")
    return False


@contextlib.contextmanager
def booted(work: Path, tarball: Path) -> Iterator[Container]:
    """The cached file system unpacked under ``work`` and booted; powered off after."""
    root = work / "root"
    root.mkdir()
    run("tar", "--numeric-owner", "--xattrs", "-xf", tarball, "-C", root, timeout=900)
    # "/" as on any Debian: service users (postfix, messagebus) must traverse it.
    root.chmod(0o755)
    name = f"e2a-test-{os.getpid()}"
    console = work / "console.log"
    with console.open("wb") as out:
        proc = subprocess.Popen(
            ["systemd-nspawn", "--quiet", "-D", str(root), "--boot", "--private-network",
             "--register=no", "--keep-unit", f"--machine={name}",
             f"--hostname={HOSTNAME}"],
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=HOST_ENV)
    box = Container(root=root, name=name, proc=proc, console=console)
    try:
        deadline = time.monotonic() + 120
        while not _boot_finished(box):
            if time.monotonic() > deadline:
                raise AssertionError(f"no boot within 120 s:\n{box.console_text()[-3000:]}")
            time.sleep(0.5)
        yield box
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)  # nspawn: power the container off
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
