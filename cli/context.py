"""What every command needs: the configuration, loaded once, failing in one
line, and a database connection, made the way the services make theirs.

The services get /etc/default/e2a through their units (EnvironmentFile=) and
reach a local PostgreSQL as the OS user e2a (peer authentication, the default
``postgresql:///e2a``). An operator runs ``e2a`` as root: the same file is
read here (it is root's alone, mode 0600), and a connection over the local
socket is opened with the e2a user's identity, so every command sees what the
services see. Both only for the packaged configuration (/etc/e2a/e2a.toml):
an E2A_CONFIG of a sandbox or a test keeps its own database and secrets.
"""

from __future__ import annotations

import contextlib
import functools
import grp
import os
import pwd
import shlex
from collections.abc import Iterator, Mapping
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import click
import psycopg

from e2a.core import config, logs
from e2a.core.db import single_connection

ENVIRONMENT_FILE = Path("/etc/default/e2a")
SERVICE_USER = "e2a"


@functools.cache
def load_config() -> config.Config:
    try:
        cfg = load()
    except config.ConfigError as exc:
        raise click.ClickException(explain(exc)) from None
    logs.setup(cfg.log.level, cfg.log.format)
    return cfg


def load() -> config.Config:
    """config.load with what the services' units add to their environment."""
    return config.load(env=service_environment())


def explain(exc: config.ConfigError) -> str:
    """The error, and why a setting in /etc/default/e2a was not seen."""
    text = str(exc)
    if (packaged() and ": required" in text and ENVIRONMENT_FILE.exists()
            and not os.access(ENVIRONMENT_FILE, os.R_OK)):
        text += f" ({ENVIRONMENT_FILE} may set it, but only root can read it: run as root)"
    return text


def packaged(env: Mapping[str, str] | None = None) -> bool:
    """Whether the configuration in use is the package's /etc/e2a/e2a.toml."""
    env = os.environ if env is None else env
    return env.get("E2A_CONFIG", config.DEFAULT_PATH) == config.DEFAULT_PATH


def service_environment(env: Mapping[str, str] | None = None,
                        file: Path = ENVIRONMENT_FILE) -> dict[str, str]:
    """This process's environment plus the E2A_* settings of /etc/default/e2a
    that it does not set itself (as systemd gives them to the services).
    Unreadable (not root) or absent, the file adds nothing: a unit has
    already passed its contents in the environment."""
    merged = dict(os.environ if env is None else env)
    if not packaged(merged):
        return merged
    try:
        text = file.read_text()
    except (OSError, UnicodeDecodeError):
        return merged
    for name, value in parse_environment_file(text).items():
        if name.startswith("E2A_") and merged.get(name, "") == "":
            merged[name] = value
    return merged


def parse_environment_file(text: str) -> dict[str, str]:
    """systemd's EnvironmentFile= syntax, as far as a settings file uses it:
    NAME=VALUE lines, # and ; comments, optional quotes, ``export`` ignored."""
    values: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        line = line.removeprefix("export ").lstrip()
        name, sep, value = line.partition("=")
        name = name.strip()
        if not sep or not name.isidentifier():
            continue
        value = value.strip()
        if value[:1] in ("'", '"'):
            try:
                parts = shlex.split(value)
            except ValueError:
                continue
            value = parts[0] if parts else ""
        values[name] = value
    return values


def peer_as_service_user(cfg: config.Config) -> bool:
    """Whether to connect with the e2a user's identity: we are root, on the
    packaged configuration, and the URL reaches PostgreSQL over its local
    socket as e2a (or as nobody named, which means the OS user)."""
    if os.geteuid() != 0 or not packaged():
        return False
    url = urlsplit(cfg.database.url)
    query = parse_qs(url.query)
    host = (query.get("host") or [url.hostname or ""])[0]
    user = (query.get("user") or [url.username or ""])[0]
    if host and not host.startswith("/"):
        return False  # TCP: a password, not our identity, decides
    if user not in ("", SERVICE_USER) or url.password:
        return False
    try:
        pwd.getpwnam(SERVICE_USER)
    except KeyError:
        return False
    return True


@contextlib.contextmanager
def service_identity() -> Iterator[None]:
    """Effective uid and gid of the e2a user for the block. PostgreSQL's peer
    authentication reads the effective ids of whoever connects to its socket
    (SO_PEERCRED), and the connection keeps them once made."""
    account = pwd.getpwnam(SERVICE_USER)
    groups = os.getgroups()
    os.setgroups([g.gr_gid for g in grp.getgrall() if SERVICE_USER in g.gr_mem])
    os.setegid(account.pw_gid)
    os.seteuid(account.pw_uid)
    try:
        yield
    finally:
        os.seteuid(0)
        os.setegid(0)
        os.setgroups(groups)


def connect_raw(cfg: config.Config, *, autocommit: bool = False,
                name: str = "cli") -> psycopg.Connection:
    """single_connection, as the services would make it (see the module doc)."""
    if not peer_as_service_user(cfg):
        return single_connection(cfg, autocommit=autocommit, name=name)
    with service_identity():
        return single_connection(cfg, autocommit=autocommit, name=name)


def connect(cfg: config.Config, *, autocommit: bool = False,
            name: str = "cli") -> psycopg.Connection:
    """connect_raw for a command: a failure is one line that says what to do."""
    try:
        return connect_raw(cfg, autocommit=autocommit, name=name)
    except psycopg.OperationalError as exc:
        raise click.ClickException(
            f"cannot connect to the database: {' '.join(str(exc).split())}; "
            f"{database_advice(exc)}") from None


def database_advice(exc: BaseException) -> str:
    """What to do about a failed connection, for the usual causes."""
    text = " ".join(str(exc).split())
    if "role" in text and "does not exist" in text:
        return ("create the role: runuser -u postgres -- createuser e2a "
                "(or set database.url)")
    if "database" in text and "does not exist" in text:
        return "create the database: runuser -u postgres -- createdb -O e2a e2a"
    if "Peer authentication failed" in text:
        return ("connect as the OS user named in database.url, or give it a password "
                "and connect over TCP")
    if "No such file or directory" in text or "Connection refused" in text:
        return "is PostgreSQL running? systemctl status postgresql"
    return "check database.url (/etc/e2a/e2a.toml) and PostgreSQL's log"
