"""A private Postfix instance: its own config, queue and log under one directory.

Used by the sandbox and by system tests. It listens only on 127.0.0.1 ports
(never 25), delivers nothing locally, and relays everything to ``relayhost``
(the capture server standing in for the internet). Several instances run side
by side as long as their directories and ports differ.

Facts this relies on (measured on Debian 12's Postfix 3.7): ``postfix -c``
needs an absolute directory; the queue directory must be root-owned; with no
syslog, Postfix logs through its ``postlog`` service into ``maillog_file``,
and startup errors land there, not on the console, except the master's own
bind errors, which are lost (hence the port check in ``start``). The master
daemonizes, so after a stop it may linger as PID 1's unreaped zombie.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from e2a import postfix as fragments
from e2a.cli.sandbox.supervisor import alive

# Debian's stock master.cf, minus the pipe services for software we do not
# ship, with the smtp listener moved off port 25 and chroot off: unix: sockets
# for the milter and policy service are then plain absolute paths.
STOCK_MASTER_CF = """\
{smtp_address} inet n - n - - smtpd
pickup     unix  n - n 60    1 pickup
cleanup    unix  n - n -     0 cleanup
qmgr       unix  n - n 300   1 qmgr
tlsmgr     unix  - - n 1000? 1 tlsmgr
rewrite    unix  - - n -     - trivial-rewrite
bounce     unix  - - n -     0 bounce
defer      unix  - - n -     0 bounce
trace      unix  - - n -     0 bounce
verify     unix  - - n -     1 verify
flush      unix  n - n 1000? 0 flush
proxymap   unix  - - n -     - proxymap
proxywrite unix  - - n -     1 proxymap
smtp       unix  - - n -     - smtp
relay      unix  - - n -     - smtp
  -o syslog_name=postfix/$service_name
showq      unix  n - n -     - showq
error      unix  - - n -     - error
retry      unix  - - n -     - error
discard    unix  - - n -     - discard
local      unix  - n n -     - local
virtual    unix  - n n -     - virtual
lmtp       unix  - - n -     - lmtp
anvil      unix  - - n -     1 anvil
scache     unix  - - n -     1 scache
postlog    unix-dgram n - n - 1 postlogd
"""

QUEUE_ID = re.compile(r"postfix/[\w./-]+\[\d+\]: ([0-9A-F]{6,}): ")
START_TIMEOUT = 30.0
STOP_TIMEOUT = 20.0


class PostfixError(RuntimeError):
    """A postfix command failed; the message carries the maillog's tail."""


def _split_hostport(address: str) -> tuple[str, str]:
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"expected host:port, got {address!r}")
    return host, port


@dataclass(kw_only=True)
class Instance:
    root: Path                          # holds etc/ spool/ data/ log/
    hostname: str                       # myhostname, e.g. mx.sandbox.test
    smtp_port: int                      # the public smtpd, on 127.0.0.1
    reinject_port: int                  # our content filter hands mail back here
    submit_port: int                    # the API submits outbound mail here
    filter_address: str                 # 127.0.0.1:port of our content filter
    relayhost: str                      # [127.0.0.1]:port of the capture server
    # Static relay domains; the agent domains come from the socketmap.
    relay_domains: list[str] = field(default_factory=list)
    milter_socket: str | None = None    # unix:/abs/path; None: no milter
    policy_socket: str | None = None    # unix:/abs/path; None: no policy service
    socketmap_socket: str | None = None  # unix:/abs/path; None: static relay_domains only
    own_daemon_name: str = "e2a-reinject"
    message_size_limit: int = 10 * 1024 * 1024  # mail.max_message_bytes
    # False: only the submit service hands mail to the filter, not the smtpd
    # and sendmail (Postfix measured alone, with no filter running).
    filter_all_mail: bool = True

    def __post_init__(self) -> None:
        # postfix -c with a relative directory fails without a word.
        self.root = Path(self.root).resolve()

    # -- layout ---------------------------------------------------------

    @property
    def etc(self) -> Path:
        return self.root / "etc"

    @property
    def spool(self) -> Path:
        return self.root / "spool"

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def log_dir(self) -> Path:
        return self.root / "log"

    @property
    def maillog(self) -> Path:
        return self.log_dir / "maillog"

    @property
    def smtp_address(self) -> str:
        return f"127.0.0.1:{self.smtp_port}"

    @property
    def reinject_address(self) -> str:
        return f"127.0.0.1:{self.reinject_port}"

    @property
    def submit_address(self) -> str:
        return f"127.0.0.1:{self.submit_port}"

    # -- configuration --------------------------------------------------

    def _fragment_values(self) -> dict[str, str]:
        filter_host, filter_port = _split_hostport(self.filter_address)
        return {
            "milter_socket": self.milter_socket or "",
            "policy_socket": self.policy_socket or "",
            "socketmap_socket": self.socketmap_socket or "",
            "message_size_limit": str(self.message_size_limit),
            "reinject_address": self.reinject_address,
            "submit_address": self.submit_address,
            "filter_host": filter_host,
            "filter_port": filter_port,
            "own_daemon_name": self.own_daemon_name,
            "chroot": "n",
            "after_filter": "",
        }

    def main_cf_params(self) -> dict[str, str]:
        """Every parameter this instance's main.cf sets, in file order."""
        params = {
            "compatibility_level": "3.6",
            "queue_directory": str(self.spool),
            "data_directory": str(self.data),
            "mail_owner": "postfix",
            "setgid_group": "postdrop",
            "maillog_file": str(self.maillog),
            "maillog_file_prefixes": str(self.log_dir),
            "myhostname": self.hostname,
            "inet_interfaces": "127.0.0.1",
            "inet_protocols": "ipv4",
            "mynetworks": "127.0.0.0/8",
            # No local delivery: every address is an agent or somewhere else.
            "mydestination": "",
            "local_recipient_maps": "",
            "local_transport": "error:5.1.1 no local delivery here",
            "alias_maps": "",
            "alias_database": "",
            "relay_domains": ", ".join(self.relay_domains),
            "relayhost": self.relayhost,
            # The relayhost and the filter are IP literals; nothing to resolve.
            "smtp_dns_support_level": "disabled",
            "smtp_tls_security_level": "none",
            "smtpd_tls_security_level": "none",
            "smtputf8_enable": "yes",
            "biff": "no",
            "append_dot_mydomain": "no",
            "readme_directory": "no",
            # Tests must see deferred mail retried within seconds.
            "queue_run_delay": "1s",
            "minimal_backoff_time": "1s",
            "maximal_backoff_time": "5s",
            "delay_warning_time": "0",
            "in_flow_delay": "0",
            "smtpd_error_sleep_time": "0",
        }
        ours = fragments.main_cf_params(**self._fragment_values())
        if self.socketmap_socket is not None:
            ours["relay_domains"] = ", ".join([*self.relay_domains, ours["relay_domains"]])
        else:
            del ours["relay_domains"]
        params.update(ours)
        if self.policy_socket is None:
            del params["smtpd_recipient_restrictions"]
        if not self.filter_all_mail:
            del params["content_filter"]
        return params

    def master_cf(self) -> str:
        ours = fragments.render("master.cf", **self._fragment_values())
        if self.socketmap_socket is None:
            # No policy service to check the login: an instance without one
            # (Postfix measured alone) lets loopback clients reinject.
            ours = re.sub(r"-o smtpd_client_restrictions=\S+", "-o smtpd_client_restrictions=",
                          ours)
        return STOCK_MASTER_CF.format(smtp_address=self.smtp_address) + "\n" + ours

    def write_config(self) -> None:
        """Create the directories and (re)write etc/main.cf and etc/master.cf."""
        for path in (self.root, self.etc, self.spool, self.log_dir):
            path.mkdir(parents=True, exist_ok=True)
            if os.geteuid() == 0:
                # Postfix refuses a queue or config directory it does not own.
                os.chown(path, 0, 0)
            path.chmod(0o755)
        main = "".join(f"{name} = {value}\n" for name, value in self.main_cf_params().items())
        (self.etc / "main.cf").write_text("# Written by e2a (sandbox Postfix).\n" + main)
        (self.etc / "master.cf").write_text(
            "# Written by e2a (sandbox Postfix).\n" + self.master_cf())

    # -- commands -------------------------------------------------------

    def _run(self, *args: str, check: bool = True,
             timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if k != "MAIL_CONFIG"}
        done = subprocess.run([args[0], "-c", str(self.etc), *args[1:]], check=False,
                              capture_output=True, text=True, cwd="/", env=env,
                              timeout=timeout)
        if check and done.returncode != 0:
            raise PostfixError(
                f"{' '.join(args)} failed ({done.returncode}): "
                f"{(done.stderr or done.stdout).strip()[-1000:]}\n"
                f"--- {self.maillog} (tail) ---\n{self.maillog_tail()}")
        return done

    def postconf(self, *args: str) -> str:
        """``postconf -c etc ARGS``: read (or with -e, change) this instance's settings."""
        return self._run("postconf", *args).stdout

    def check(self) -> None:
        """``postfix check``: creates missing queue directories, raises on errors."""
        self._run("postfix", "check")

    def start(self) -> None:
        """Start (writing the config first if there is none); return once all
        three smtpd ports accept connections. Already running: nothing to do."""
        if self.running():
            return
        if not (self.etc / "main.cf").exists():
            self.write_config()
        self._ports_free()
        self._run("postfix", "start")
        deadline = time.monotonic() + START_TIMEOUT
        for port in (self.smtp_port, self.reinject_port, self.submit_port):
            while not self._accepts(port):
                if time.monotonic() > deadline or not self.running():
                    raise PostfixError(
                        f"postfix in {self.root} not listening on 127.0.0.1:{port}\n"
                        f"--- {self.maillog} (tail) ---\n{self.maillog_tail()}")
                time.sleep(0.05)

    def _ports_free(self) -> None:
        """Postfix's master loses its own bind error (its log service is not up
        yet), so a taken port is found and named here."""
        for name, port in (("smtp", self.smtp_port), ("reinject", self.reinject_port),
                           ("submit", self.submit_port)):
            with socket.socket() as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    probe.bind(("127.0.0.1", port))
                except OSError as exc:
                    raise PostfixError(f"cannot start postfix in {self.root}: {name} port "
                                       f"127.0.0.1:{port}: {exc.strerror}") from None

    @staticmethod
    def _accepts(port: int) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return True
        except OSError:
            return False

    def reload(self) -> None:
        """Make a running instance read its rewritten configuration."""
        self._run("postfix", "reload")

    def stop(self) -> None:
        """Stop the instance and make sure none of its processes is left."""
        if self.running():
            self._run("postfix", "stop", check=False)
        deadline = time.monotonic() + STOP_TIMEOUT
        while self.processes() and time.monotonic() < deadline:
            time.sleep(0.1)
        for pid in self.processes():
            # postfix stop gave up, or a child outlived its master.
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while self.processes():
            if time.monotonic() > deadline:
                raise PostfixError(f"postfix processes of {self.root} survive SIGKILL: "
                                   f"{self.processes()}")
            time.sleep(0.05)

    def master_pid(self) -> int | None:
        """PID of this instance's running master process, else None."""
        try:
            pid = int((self.spool / "pid" / "master.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None
        return pid if pid in self.processes() else None

    def running(self) -> bool:
        return self.master_pid() is not None

    def processes(self) -> list[int]:
        """Live PIDs of this instance: master and children carry our
        MAIL_CONFIG, which tells them apart from another instance's. The
        daemonized master is PID 1's child; a zombie of it counts as gone."""
        marker = f"MAIL_CONFIG={self.etc}".encode()
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                environ = (entry / "environ").read_bytes()
            except OSError:
                continue
            if marker in environ.split(b"\0") and alive(int(entry.name)):
                found.append(int(entry.name))
        return sorted(found)

    # -- queue ----------------------------------------------------------

    def flush(self) -> None:
        """Retry every deferred message now."""
        self._run("postqueue", "-f")

    def queue(self) -> list[dict[str, object]]:
        """The queue as ``postqueue -j`` reports it: one dict per message."""
        out = self._run("postqueue", "-j").stdout
        return [json.loads(line) for line in out.splitlines() if line.strip()]

    def queue_empty(self) -> bool:
        return not self.queue()

    # -- log ------------------------------------------------------------

    def maillog_lines(self) -> list[str]:
        try:
            return self.maillog.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return []

    def maillog_tail(self, lines: int = 30) -> str:
        return "\n".join(self.maillog_lines()[-lines:])

    def grep_log(self, pattern: str) -> list[str]:
        """Maillog lines matching the regular expression ``pattern``."""
        regex = re.compile(pattern)
        return [line for line in self.maillog_lines() if regex.search(line)]

    def wait_for_log(self, pattern: str, timeout: float = 15.0) -> str:
        """The first maillog line matching ``pattern``, waiting up to ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.grep_log(pattern)
            if found:
                return found[0]
            if time.monotonic() > deadline:
                raise TimeoutError(f"no maillog line matches {pattern!r} after {timeout}s\n"
                                   f"--- {self.maillog} (tail) ---\n{self.maillog_tail()}")
            time.sleep(0.05)

    def queue_ids_in_log(self) -> list[str]:
        """Queue ids that appear in the maillog, first appearance first."""
        return list(dict.fromkeys(_queue_ids(self.maillog_lines())))


def _queue_ids(lines: list[str]) -> Iterator[str]:
    for line in lines:
        match = QUEUE_ID.search(line)
        if match:
            yield match.group(1)
