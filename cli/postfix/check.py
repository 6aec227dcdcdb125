"""``e2a postfix check``: is Postfix wired to e2a, and can it reach our sockets?

Each function returns problems, one line each; none means fine. ``e2a
doctor`` shows the same findings under its own headings.
"""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import socket
import stat
import subprocess
from pathlib import Path

from e2a.cli.postfix import merge
from e2a.cli.postfix.plan import WiringError, chained_filter, postfix_address, read_wiring
from e2a.cli.postfix.postconf import Postconf, PostconfError, same_entry
from e2a.core.config import Config
from e2a.core.net import addresses
from e2a.core.net.addresses import UnixAddress

CONNECT_TIMEOUT = 2.0


def wiring_problems(cfg: Config, pc: Postconf) -> list[str]:
    """Our main.cf parameters and master.cf services, present and as e2a needs them."""
    try:
        wiring = read_wiring(cfg, pc)
        values = pc.effective(*wiring.params)
        services = pc.services()
        # The operator's own filter, chained after ours, is theirs to choose.
        wiring = wiring.chained(chained_filter(services.get(wiring.reinject_key)))
    except (PostconfError, WiringError) as exc:
        return [f"postfix: {exc}"]
    found = []
    for name, ours in wiring.params.items():
        value = values.get(name, "")
        rule = merge.rule(name)
        missing = rule.missing(value, ours)
        if missing and rule.list:
            found.append(f"main.cf: {name} lacks {', '.join(missing)}")
        elif missing:
            found.append(f"main.cf: {name} = {value}, e2a needs {ours}")
    for key, ours in wiring.services.items():
        current = services.get(key)
        if current is None:
            found.append(f"master.cf: no service {key}")
        elif not same_entry(current, ours):
            found.append(f"master.cf: service {key} is not e2a's: {current}")
    return found


def socket_problems(cfg: Config, pc: Postconf) -> list[str]:
    """The milter and policy sockets: listening, and open to Postfix's user
    from where its (maybe chrooted) smtpd looks."""
    try:
        wiring = read_wiring(cfg, pc)
        found = pc.effective("queue_directory", "mail_owner")
    except (PostconfError, WiringError) as exc:
        return [f"postfix: {exc}"]
    queue, owner = found["queue_directory"], found["mail_owner"]
    problems = []
    for service, listen in (("milter", cfg.milter.listen), ("policy", cfg.policy.listen)):
        if wiring.chroot == "y" and postfix_address(listen, queue).startswith("unix:/"):
            problems.append(f"{service}: {listen} is outside {queue}, where Postfix's "
                            "chrooted smtpd cannot see it")
        problems += [f"{service}: {p}" for p in listening_problems(listen, owner)]
    return problems


def listening_problems(listen: str, user: str) -> list[str]:
    address = addresses.parse(listen)
    if not isinstance(address, UnixAddress):
        family = socket.AF_INET6 if ":" in address.host else socket.AF_INET
        if _connects((address.host, address.port), family):
            return []
        return [f"nothing listens on {address}"]
    path = address.path
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return [f"{path} does not exist (is the service running?)"]
    except PermissionError:
        return [f"{path}: cannot look at it: permission denied"]
    if not stat.S_ISSOCK(mode):
        return [f"{path} is not a socket"]
    problems = []
    if not writable_by(Path(path), user):
        problems.append(f"user {user} cannot connect to {path} (it needs x on each "
                        "directory above it and w on the socket)")
    if not _connects(path, socket.AF_UNIX):
        problems.append(f"{path} refuses connections (is the service running?)")
    return problems


def writable_by(path: Path, user: str) -> bool:
    """Would ``user`` pass the permission checks to connect to socket ``path``?"""
    try:
        account = pwd.getpwnam(user)
    except KeyError:
        return False
    gids = {account.pw_gid} | {g.gr_gid for g in grp.getgrall() if user in g.gr_mem}
    try:
        checks = [(parent, 0o1) for parent in reversed(path.parents)] + [(path, 0o2)]
        return all(_allows(os.stat(p), account.pw_uid, gids, bit) for p, bit in checks)
    except OSError:
        return False


def _allows(st: os.stat_result, uid: int, gids: set[int], bit: int) -> bool:
    """The kernel's rule: the owner's bits, else the group's, else the others'."""
    if uid == 0:
        return True
    if st.st_uid == uid:
        return bool(st.st_mode & (bit << 6))
    if st.st_gid in gids:
        return bool(st.st_mode & (bit << 3))
    return bool(st.st_mode & bit)


def _connects(address: str | tuple[str, int], family: int) -> bool:
    with contextlib.suppress(OSError), socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.settimeout(CONNECT_TIMEOUT)
        sock.connect(address)
        return True
    return False


def postfix_check_problems(pc: Postconf) -> list[str]:
    """``postfix check``: Postfix's own verdict on its configuration and files."""
    env = {k: v for k, v in os.environ.items() if k != "MAIL_CONFIG"}
    try:
        done = subprocess.run(["postfix", "-c", str(pc.directory), "check"], check=False,
                              capture_output=True, text=True, env=env, cwd="/", timeout=120)
    except FileNotFoundError:
        return ["postfix check: the postfix command is not installed"]
    if done.returncode == 0:
        return []
    lines = [line.strip() for line in (done.stderr + done.stdout).splitlines() if line.strip()]
    return [f"postfix check: {line}" for line in lines] or [
        f"postfix check: failed with status {done.returncode}"]


def problems(cfg: Config, pc: Postconf) -> list[str]:
    found = wiring_problems(cfg, pc)
    if found and found[0].startswith("postfix: "):
        return found  # no readable configuration: the rest would repeat it
    return found + socket_problems(cfg, pc) + postfix_check_problems(pc)
