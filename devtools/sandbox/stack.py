"""The developer sandbox: every moving part of e2a on one machine, under one directory.

``Sandbox(root).up()`` brings up, under ``root``: a private PostgreSQL cluster
(``pg/``), the schema, dnsmasq serving the sandbox zones, the capture SMTP
server standing in for the internet (``capture/``), the five e2a services
(logs in ``log/``, pidfiles and sockets in ``run/``) and a private Postfix
instance (``postfix/``) wired to them. ``down()`` stops all of it. Both can run
again at any time: up() starts only what is not running, down() stops only
what is.

``make run`` uses ``./var`` and ``Ports.pick()``: the documented ports where
they are free, others where not (a second sandbox, a system Postfix); they
are kept in ``ports.json`` and picked again when none of the sandbox runs.
System tests use a temporary directory and ``Ports.free()``.

``Sandbox(root, joins=other_root)`` is a second host of the same deployment:
its own Postfix, DNS server, capture server and five services, on the first
sandbox's PostgreSQL and secrets (tests/system/test_two_hosts.py runs it in a
network namespace of its own). ``root/local.toml``, when present, overrides
settings of the written configuration (a lower rate limit, say).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tomllib
import urllib.error
import urllib.request
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from e2a.core import config
from e2a.core.accounts import apikeys, dkimkeys
from e2a.core.accounts import registration as accounts
from e2a.core.db import single_connection
from e2a.core.store import agents as agent_store
from e2a.core.store import users as user_store
from sandbox import supervisor
from sandbox.dns import DnsServer
from sandbox.postfix import Instance
from sandbox.postgres import Cluster

SERVICES = ("milter", "policy", "filter", "api", "worker")
MAIL_DOMAIN = "sandbox.test"          # the developer's own domain
SHARED_DOMAIN = "agents.sandbox.test"  # where agents get addresses by slug
MX_HOST = "mx.sandbox.test"           # the sandbox Postfix's myhostname
USER_EMAIL = "you@sandbox.test"
AGENT_SLUG = "hello"
READY_TIMEOUT = 60.0
# libmilter needs ~5 s to leave on SIGTERM; the others are quicker.
STOP_TIMEOUT = 15.0
# Inbound recipients per minute, per client and per agent (policy.rate_*), and
# sends per agent per minute (send.rate_per_agent).
SANDBOX_RATE = 100_000


@dataclass(frozen=True)
class Ports:
    """Loopback ports. The defaults are what ``make run`` documents (never 25)."""

    smtp: int = 2525
    reinject: int = 10026
    submit: int = 10027
    filter: int = 10025
    api: int = 8080
    dns: int = 5353
    capture: int = 2526
    # Each mail-side service's /metrics (metrics.*_listen).
    milter_metrics: int = 9101
    policy_metrics: int = 9102
    filter_metrics: int = 9103
    worker_metrics: int = 9104

    @classmethod
    def free(cls) -> Ports:
        """Ports nobody listens on now (TCP, and UDP too for DNS), all different."""
        return cls._choose(None)

    @classmethod
    def pick(cls, preferred: Ports | None = None) -> Ports:
        """``preferred``'s ports (default: the documented ones) where they are
        free now, free ones for the rest."""
        return cls._choose(preferred or cls())

    @classmethod
    def _choose(cls, preferred: Ports | None) -> Ports:
        names = list(cls.__dataclass_fields__)
        with ExitStack() as held:
            chosen: dict[str, int] = {}
            for name in names:
                wanted = getattr(preferred, name) if preferred is not None else 0
                if wanted and wanted not in chosen.values() and _hold(held, wanted):
                    chosen[name] = wanted
            for name in names:
                while name not in chosen:
                    tcp = held.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
                    tcp.bind(("127.0.0.1", 0))
                    port = tcp.getsockname()[1]
                    if port not in chosen.values() and _hold(held, port, tcp_taken=True):
                        chosen[name] = port
        return cls(**chosen)


def _hold(held: ExitStack, port: int, tcp_taken: bool = False) -> bool:
    """Bind ``port`` on loopback for TCP and UDP (DNS takes both) until
    ``held`` closes, so no later pick gets it; False when either is taken."""
    try:
        if not tcp_taken:
            tcp = held.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            tcp.bind(("127.0.0.1", port))
        udp = held.enter_context(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
        udp.bind(("127.0.0.1", port))
    except OSError:
        return False
    return True


@dataclass(frozen=True)
class Access:
    """What a developer (or a test) needs to use the sandbox."""

    api_url: str
    api_key: str
    user_email: str
    agent_email: str
    smtp_host: str
    smtp_port: int
    config: str
    capture_dir: str
    maillog: str
    log_dir: str

    @property
    def send_example(self) -> str:
        return (f"swaks --server {self.smtp_host}:{self.smtp_port} --from {self.user_email} "
                f"--to {self.agent_email} --header 'Subject: Hello from the sandbox' "
                "--body 'Hi agent, this came through Postfix.'")

    @property
    def read_example(self) -> str:
        """The current API (/v1), as today's SDK speaks it."""
        return (f'curl -s -H "Authorization: Bearer {self.api_key}" '
                f"{self.api_url}/v1/agents/{quote(self.agent_email, safe='')}/messages")

    @property
    def sdk_example(self) -> str:
        """Today's Python SDK (``pip install e2a``) reading the agent's inbox."""
        return (f"E2A_API_URL={self.api_url} E2A_API_KEY={self.api_key} python3 -c "
                "'from e2a.v1 import E2AClient; client = E2AClient(); "
                f'print([m.subject for m in client.messages.list("{self.agent_email}", '
                "read_status=\"all\")])'")

    @property
    def legacy_read_example(self) -> str:
        """The legacy API (/api/v1), kept for 2.x SDK clients."""
        return (f'curl -s -H "Authorization: Bearer {self.api_key}" '
                f"{self.api_url}/api/v1/agents/{quote(self.agent_email, safe='')}/messages")

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["examples"] = {"send": self.send_example, "read": self.read_example,
                           "sdk": self.sdk_example, "read_legacy": self.legacy_read_example}
        return out


class Sandbox:
    def __init__(self, root: Path, ports: Ports | None = None, *,
                 joins: Path | None = None) -> None:
        self.root = Path(root).resolve()
        self._chosen_ports = ports is not None
        self.ports = ports or self._saved_ports() or Ports.pick()
        self.milter_processes = 1  # bench/inbound runs one per core
        # A joining host shares the first host's database and secrets and
        # runs everything else itself.
        self.primary = Sandbox(joins) if joins is not None else None
        self.cluster = self.primary.cluster if self.primary else Cluster(self.root / "pg")
        self._layout()

    def _layout(self) -> None:
        """The parts that listen on self.ports."""
        self.dns = DnsServer(self.root / "dns", self.ports.dns,
                             pidfile=self.pidfile("dnsmasq"), logfile=self.logfile("dnsmasq"))
        for domain in (MAIL_DOMAIN, SHARED_DOMAIN):
            self.dns.add_mail_domain(domain, MX_HOST)
        self.dns.add_a(MX_HOST, "127.0.0.1")
        self.postfix = Instance(
            root=self.root / "postfix", hostname=MX_HOST, smtp_port=self.ports.smtp,
            reinject_port=self.ports.reinject, submit_port=self.ports.submit,
            filter_address=f"127.0.0.1:{self.ports.filter}",
            milter_socket=self.listen("milter"), policy_socket=self.listen("policy"),
            relayhost=f"[127.0.0.1]:{self.ports.capture}",
            socketmap_socket=self.listen("socketmap"),
            # Agent domains (the shared one included) come from the socketmap.
            relay_domains=[MAIL_DOMAIN])

    # -- layout ---------------------------------------------------------

    @property
    def config_path(self) -> Path:
        return self.root / "e2a.toml"

    @property
    def run_dir(self) -> Path:
        return self.root / "run"

    @property
    def log_dir(self) -> Path:
        return self.root / "log"

    @property
    def capture_dir(self) -> Path:
        return self.root / "capture"

    @property
    def summary_path(self) -> Path:
        return self.root / "sandbox.json"

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.api}"

    def pidfile(self, name: str) -> Path:
        return self.run_dir / f"{name}.pid"

    def logfile(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"

    def listen(self, service: str) -> str:
        """Where a service listens; the worker listens nowhere."""
        return {
            "milter": f"unix:{self.run_dir / 'milter.sock'}",
            "policy": f"unix:{self.run_dir / 'policy.sock'}",
            "socketmap": f"unix:{self.run_dir / 'socketmap.sock'}",  # policy's second
            "filter": f"127.0.0.1:{self.ports.filter}",
            "api": f"127.0.0.1:{self.ports.api}",
        }.get(service, "")

    # -- up -------------------------------------------------------------

    def up(self) -> None:
        """Start whatever is not running; return once everything answers."""
        # The postfix user must reach the sockets in run/, postgres its pg/.
        for path in (self.root, self.run_dir, self.log_dir, self.capture_dir):
            path.mkdir(parents=True, exist_ok=True)
            path.chmod(0o755)
        if not self._chosen_ports and not any(
                running for part, running in self.status().items() if part != "postgres"):
            # Nothing of ours listens: any saved port someone else took since
            # (another sandbox) is replaced by a free one.
            fresh = Ports.pick(self.ports)
            if fresh != self.ports:
                self.ports = fresh
                self._layout()
        (self.root / "ports.json").write_text(json.dumps(asdict(self.ports)) + "\n")
        if self.primary is None:
            self.cluster.init()
            self.cluster.start()
        elif not self.cluster.running():
            raise RuntimeError(f"the joined sandbox's PostgreSQL ({self.cluster.data}) "
                               "is not running")
        self.write_config()
        self.migrate()
        self._publish_dkim_key()
        self.dns.start()
        self._start_capture()
        self.start_services()
        if not self.postfix.running():
            self.postfix.write_config()
            self.postfix.start()

    def write_config(self) -> None:
        """root/e2a.toml for the services; the HMAC secret survives rewrites."""
        source = self.primary or self
        secret = source._saved_secret() or secrets.token_hex(32)
        p = self.ports
        values: dict[str, dict[str, Any]] = {
            "database": {"url": self.cluster.url},
            "secrets": {"hmac_secret": secret},
            "http": {"listen": self.listen("api"), "public_url": self.api_url, "workers": 2},
            "mail": {"hostname": MX_HOST, "authserv_id": MX_HOST,
                     "shared_domain": SHARED_DOMAIN},
            "milter": {"listen": self.listen("milter"), "processes": self.milter_processes},
            # Every sandbox client is 127.0.0.1: the production defaults would
            # throttle a developer's (or a test's or bench's) bursts.
            "policy": {"listen": self.listen("policy"),
                       "socketmap_listen": self.listen("socketmap"),
                       "rate_per_client_ip": SANDBOX_RATE,
                       "rate_per_agent": SANDBOX_RATE},
            "filter": {"listen": self.listen("filter"), "reinject": f"127.0.0.1:{p.reinject}"},
            "submit": {"address": f"127.0.0.1:{p.submit}"},
            # Sends per agent per minute: bench/outbound sends bursts from one agent.
            "send": {"rate_per_agent": SANDBOX_RATE},
            # The brakes' volume budgets likewise (a bench sends thousands an
            # hour, each to a new address); the loop brakes keep their
            # defaults, which the tests of them rely on.
            "brakes": {"sends_per_hour": SANDBOX_RATE, "sends_per_day": SANDBOX_RATE,
                       "pause_sends_per_hour": SANDBOX_RATE,
                       "new_recipients_per_hour": SANDBOX_RATE},
            "dns": {"resolver": self.dns.address},
            "metrics": {"milter_listen": f"127.0.0.1:{p.milter_metrics}",
                        "policy_listen": f"127.0.0.1:{p.policy_metrics}",
                        "filter_listen": f"127.0.0.1:{p.filter_metrics}",
                        "worker_listen": f"127.0.0.1:{p.worker_metrics}"},
            # Webhook receivers of a developer (and of tests) listen on loopback.
            "webhooks": {"allow_loopback": True},
            "log": {"level": "info"},
        }
        for section, table in self._local_settings().items():
            values.setdefault(section, {}).update(table)
        lines = ["# Written by `e2a dev up` for the sandbox; rewritten on every run."]
        for section, table in values.items():
            lines.append(f"\n[{section}]")
            # JSON strings and integers are valid TOML values.
            lines += [f"{key} = {json.dumps(value)}" for key, value in table.items()]
        tmp = self.config_path.with_name(self.config_path.name + ".tmp")
        tmp.write_text("\n".join(lines) + "\n")
        tmp.chmod(0o600)  # it holds the HMAC secret
        tmp.replace(self.config_path)

    def _local_settings(self) -> dict[str, dict[str, Any]]:
        """root/local.toml: the developer's (or a test's) overrides."""
        path = self.root / "local.toml"
        if not path.exists():
            return {}
        return tomllib.loads(path.read_text())

    def config(self) -> config.Config:
        # The file alone: a developer's E2A_* variables must not point the
        # sandbox at some other database.
        return config.load(self.config_path, env={})

    def service_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("E2A_")}
        # PYTHONSAFEPATH: a repository checkout as cwd must not shadow
        # pymilter's `milter` module with ours.
        env.update(E2A_CONFIG=str(self.config_path), PYTHONSAFEPATH="1", PYTHONUNBUFFERED="1")
        return env

    def migrate(self) -> None:
        """`e2a db migrate`: the schema and the shared domain, as ops would run it."""
        done = subprocess.run([e2a_command(), "db", "migrate"], env=self.service_env(),
                              cwd=self.root, capture_output=True, text=True, check=False,
                              timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"e2a db migrate failed: {(done.stderr or done.stdout).strip()}")

    def _publish_dkim_key(self) -> None:
        """The shared domain's DKIM key (made by the seed in `e2a db migrate`)
        in the sandbox DNS: receivers, our milter among them, verify the
        signatures of agents' mail against it."""
        with single_connection(self.config()) as conn:
            domain = agent_store.domain_by_name(conn, SHARED_DOMAIN)
        if domain is None or not domain["dkim_public_key"]:
            return
        self.dns.set_txt(dkimkeys.record_host(SHARED_DOMAIN, domain["dkim_selector"]),
                         dkimkeys.public_record(domain["dkim_public_key"]))
        if self.dns.running() and self.dns.conf.read_text() != self.dns.records.render():
            self.dns.reload()  # a new database made a new key

    def _start_capture(self) -> None:
        pidfile, logfile = self.pidfile("capture"), self.logfile("capture")
        if supervisor.running(pidfile):
            return
        address = f"127.0.0.1:{self.ports.capture}"
        # By path and with -P: the sandbox is not an installed package, and
        # its directory (dns.py) must not shadow dnspython.
        supervisor.start([sys.executable, "-P", str(Path(__file__).with_name("capture.py")),
                          "--dir", str(self.capture_dir), "--listen", address],
                         pidfile=pidfile, logfile=logfile, env=self.service_env(),
                         cwd=self.root)
        supervisor.wait_ready(lambda: supervisor.accepts(address), pidfile=pidfile,
                              logfile=logfile, name="capture", timeout=READY_TIMEOUT)

    def sockets(self, name: str) -> list[Path]:
        """The unix sockets a service makes."""
        listens = [self.listen(name)] + ([self.listen("socketmap")] if name == "policy" else [])
        return [Path(a[5:]) for a in listens if a.startswith("unix:")]

    def start_services(self) -> None:
        """Start those of our services that are not running (after a crash, say).
        Each runs under a keeper (sandbox.keeper) that restarts it when
        it dies, as systemd's Restart=on-failure does in production."""
        started: dict[str, int] = {}
        for name in SERVICES:
            if supervisor.running(self.pidfile(name)):
                continue
            sockets = self.sockets(name)
            for path in sockets:
                # A killed libmilter leaves its socket; binding would fail.
                path.unlink(missing_ok=True)
            log = self.logfile(name)
            started[name] = log.stat().st_size if log.exists() else 0
            keeper = [sys.executable, "-m", "sandbox.keeper",
                      *(f"--unlink={path}" for path in sockets), "--"]
            supervisor.start([*keeper, e2a_command(), "serve", name],
                             pidfile=self.pidfile(name), logfile=log, env=self.service_env(),
                             cwd=self.root)
        for name, log_size in started.items():
            supervisor.wait_ready(self._readiness(name, log_size), pidfile=self.pidfile(name),
                                  logfile=self.logfile(name), name=f"e2a serve {name}",
                                  timeout=READY_TIMEOUT)

    def _readiness(self, name: str, log_size: int) -> Any:
        if name == "api":
            return lambda: http_ok(f"{self.api_url}/api/health")
        if name == "worker":
            # It listens nowhere; its start-up line is the sign of life.
            log = self.logfile(name)
            return lambda: log.exists() and log.stat().st_size > log_size
        address = self.listen(name)
        return lambda: supervisor.accepts(address)

    # -- state ----------------------------------------------------------

    def status(self) -> dict[str, bool]:
        """Which parts of this host are running (a joining host's database is
        the first host's part)."""
        state = {"postgres": self.cluster.running()} if self.primary is None else {}
        state.update({"dnsmasq": self.dns.running(),
                      "capture": supervisor.running(self.pidfile("capture"))})
        state.update({name: supervisor.running(self.pidfile(name)) for name in SERVICES})
        state["postfix"] = self.postfix.running()
        return state

    def _saved_ports(self) -> Ports | None:
        try:
            return Ports(**json.loads((self.root / "ports.json").read_text()))
        except (OSError, ValueError, TypeError):
            return None

    def _saved_secret(self) -> str | None:
        try:
            return tomllib.loads(self.config_path.read_text())["secrets"]["hmac_secret"]
        except (OSError, ValueError, KeyError):
            return None

    # -- accounts -------------------------------------------------------

    def bootstrap(self, user_email: str = USER_EMAIL, slug: str = AGENT_SLUG) -> Access:
        """The developer's user, API key and agent, created once and reused:
        the key saved in sandbox.json stays valid while its database lives."""
        cfg = self.config()
        saved = self._saved_key(user_email)
        with single_connection(cfg) as conn:
            user = user_store.user_by_email(conn, user_email)
            if user is None:
                user = accounts.create_user(conn, user_email, "Sandbox developer")
            key = saved
            stored = saved and user_store.api_key_by_hash(conn, apikeys.digest(saved))
            if not stored or stored["user_id"] != user["id"]:
                key = accounts.issue_key(conn, user["id"], name="sandbox").key
            agent_email = f"{slug}@{cfg.mail.shared_domain}"
            if agent_store.agent_by_email(conn, agent_email) is None:
                accounts.register_agent(conn, cfg, user["id"], slug=slug,
                                        name="Sandbox agent", agent_mode="local")
        assert key is not None
        access = Access(api_url=self.api_url, api_key=key, user_email=user_email,
                        agent_email=agent_email, smtp_host="127.0.0.1",
                        smtp_port=self.ports.smtp, config=str(self.config_path),
                        capture_dir=str(self.capture_dir), maillog=str(self.postfix.maillog),
                        log_dir=str(self.log_dir))
        tmp = self.summary_path.with_name(self.summary_path.name + ".tmp")
        tmp.write_text(json.dumps(access.to_json(), indent=2) + "\n")
        tmp.chmod(0o600)  # it holds the API key
        tmp.replace(self.summary_path)
        return access

    def _saved_key(self, user_email: str) -> str | None:
        try:
            saved = json.loads(self.summary_path.read_text())
        except (OSError, ValueError):
            return None
        if saved.get("user_email") != user_email:
            return None
        return saved.get("api_key")

    # -- down -----------------------------------------------------------

    def down(self) -> None:
        """Stop everything, mail first so nothing arrives half-way, Postgres last."""
        errors: list[str] = []
        try:
            self.postfix.stop()
        except Exception as exc:  # keep stopping the rest; report at the end
            errors.append(f"postfix: {exc}")
        supervisor.stop(*(self.pidfile(name) for name in SERVICES), timeout=STOP_TIMEOUT)
        supervisor.stop(self.pidfile("capture"), self.dns.pidfile, timeout=STOP_TIMEOUT)
        for name in ("milter", "policy", "socketmap"):
            Path(self.listen(name)[5:]).unlink(missing_ok=True)
        # A joining host leaves the database to the first host, which stops it.
        if self.primary is None:
            self.cluster.stop()
            if self.cluster.running():
                errors.append(f"postgres in {self.cluster.data} still running")
        if errors:
            raise RuntimeError("; ".join(errors))


def e2a_command() -> str:
    """The `e2a` script next to this interpreter (the venv's), else on PATH."""
    beside = Path(sys.executable).with_name("e2a")
    if beside.exists():
        return str(beside)
    found = shutil.which("e2a")
    if found is None:
        raise RuntimeError("the e2a command is not installed (make venv)")
    return found


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 (our URL)
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False
