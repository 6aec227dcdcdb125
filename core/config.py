"""One configuration file, read once, with environment overrides.

The file is TOML (``E2A_CONFIG``, default ``/etc/e2a/e2a.toml``). Every key has
an environment override ``E2A_<SECTION>_<KEY>``; secrets and URLs also have the
short names operators expect (``E2A_DATABASE_URL``, ``E2A_HMAC_SECRET``,
``E2A_PUBLIC_URL``). A bad value stops the program with one line naming the key.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from e2a.core.net import addresses

DEFAULT_PATH = "/etc/e2a/e2a.toml"


class ConfigError(Exception):
    """A configuration value is missing or wrong; str() is the one line to show."""


def _url(value: str, schemes: tuple[str, ...]) -> str | None:
    parts = urlsplit(value)
    if parts.scheme not in schemes:
        return f"must be a URL starting with {' or '.join(s + '://' for s in schemes)}"
    return None


def _address(value: str) -> str | None:
    """``unix:/path``, ``inet:host:port`` or ``host:port``."""
    try:
        parsed = addresses.parse(value)
    except ValueError:
        return "must be unix:/path or host:port"
    if isinstance(parsed, addresses.UnixAddress) and not parsed.path.startswith("/"):
        return "unix: needs an absolute path"
    return None


def _secret(value: str) -> str | None:
    if len(value) < 32:
        return "must be at least 32 characters (generate one: openssl rand -hex 32)"
    return None


def _host_port(value: str) -> str | None:
    if value.startswith("unix:"):
        return "must be host:port"
    return _address(value)


def _domain(value: str) -> str | None:
    if value and ("." not in value or value != value.lower() or " " in value):
        return "must be a lowercase domain name such as agents.example.com"
    return None


def _mailbox(value: str) -> str | None:
    local, at, domain = value.rpartition("@")
    if not at or not local or " " in value or not domain or _domain(domain.lower()):
        return "must be an email address such as approvals@agents.example.com"
    return None


def _networks(value: list[str]) -> str | None:
    for item in value:
        try:
            ipaddress.ip_network(item, strict=False)
        except ValueError:
            return f"{item!r} is not an IP address or network (such as 10.0.0.0/8)"
    return None


def _choice(*allowed: str) -> Callable[[str], str | None]:
    def check(value: str) -> str | None:
        return None if value in allowed else f"must be one of {', '.join(allowed)}"

    return check


def _positive(value: float) -> str | None:
    return None if value > 0 else "must be greater than 0"


def _off_or_positive(value: int) -> str | None:
    return None if value >= 0 else "must be 0 (off) or greater"


@dataclass(frozen=True)
class Key:
    section: str
    name: str
    type: type
    default: Any  # REQUIRED when there is no sane default
    check: Callable[[Any], str | None] | None = None
    env: str | None = None  # short alias besides E2A_<SECTION>_<KEY>

    @property
    def dotted(self) -> str:
        return f"{self.section}.{self.name}"

    @property
    def env_names(self) -> tuple[str, ...]:
        long = f"E2A_{self.section}_{self.name}".upper()
        return (self.env, long) if self.env and self.env != long else (long,)


REQUIRED = object()

KEYS: tuple[Key, ...] = (
    Key("database", "url", str, "postgresql:///e2a",
        lambda v: _url(v, ("postgresql", "postgres")), env="E2A_DATABASE_URL"),
    Key("database", "pool_size", int, 10, _positive),
    # Seconds the mail paths (milter, policy service) wait for a database
    # connection before answering 4xx: with PostgreSQL down, an SMTP client
    # hears "try later" within this, not after its own timeout.
    Key("database", "connect_timeout", float, 1.0, _positive),
    Key("secrets", "hmac_secret", str, REQUIRED, _secret, env="E2A_HMAC_SECRET"),
    # Encrypts DKIM private keys at rest; derived from hmac_secret when unset.
    Key("secrets", "encryption_key", str, "", lambda v: v and _secret(v),
        env="E2A_ENCRYPTION_KEY"),
    Key("http", "listen", str, "127.0.0.1:8080", _address),
    Key("http", "public_url", str, "http://127.0.0.1:8080",
        lambda v: _url(v, ("http", "https")), env="E2A_PUBLIC_URL"),
    Key("http", "workers", int, 2, _positive),
    # Seconds between the pings on an agent's WebSocket.
    Key("http", "ws_ping_seconds", float, 30.0, _positive),
    # Requests per minute per API key, counted in Postgres across every API
    # process; 0 turns the limit off.
    Key("http", "requests_per_minute", int, 600, _off_or_positive),
    # Request bodies: larger ones are refused (413) before they are read.
    # max_body_bytes holds every JSON body but a send's; max_send_body_bytes
    # (send, reply, forward, approve with edits) 0 means: the largest send
    # the send.* and mail.* limits allow, base64 and all (send_body_bound).
    Key("http", "max_body_bytes", int, 1024 * 1024, _positive),
    Key("http", "max_send_body_bytes", int, 0, _off_or_positive),
    # The reverse proxies in front of the API (addresses or networks): only a
    # request from one of them has its X-Forwarded-For believed, which then
    # names the client (the rightmost address that is not a trusted proxy).
    # Empty: the connection's own peer is the client.
    Key("http", "trusted_proxies", list, [], _networks),
    Key("mail", "hostname", str, "", _domain),
    Key("mail", "authserv_id", str, ""),
    Key("mail", "shared_domain", str, "", _domain),
    Key("mail", "max_message_bytes", int, 10 * 1024 * 1024, _positive),
    Key("mail", "max_recipients", int, 50, _positive),
    # Inside Postfix's queue directory: Debian's smtpd runs chrooted there and
    # could not reach /run (e2a postfix install writes it as e2a/milter.sock).
    Key("milter", "listen", str, "unix:/var/spool/postfix/e2a/milter.sock", _address),
    # milter_macro_daemon_name of our reinjection service: mail that Postfix
    # hands the milter under this name came through our own content filter.
    Key("milter", "own_daemon_name", str, "e2a-reinject"),
    # Processes serving the milter socket (each with its own libmilter threads
    # and database pool): one per core the milter should use.
    Key("milter", "processes", int, 1, _positive),
    Key("policy", "listen", str, "unix:/var/spool/postfix/e2a/policy.sock", _address),
    # Postfix's relay_domains asks here (socketmap) which domains are ours,
    # so a domain verified through the API is accepted without a reload.
    Key("policy", "socketmap_listen", str, "unix:/var/spool/postfix/e2a/socketmap.sock",
        _address),
    # Inbound recipients per minute, counted in Postgres so every MX host
    # shares one count. IPv6 clients count per /64. 0 turns a limit off.
    Key("policy", "rate_per_client_ip", int, 120, _off_or_positive),
    Key("policy", "rate_per_agent", int, 600, _off_or_positive),
    Key("filter", "listen", str, "127.0.0.1:10025", _host_port),
    Key("filter", "reinject", str, "127.0.0.1:10026", _host_port),
    Key("submit", "address", str, "127.0.0.1:10027", _host_port),
    # Seconds each SMTP step of a submission may take before the API gives up (503).
    Key("submit", "timeout", float, 30.0, _positive),
    # What one API send may carry (docs/contract.md), and how many sends an agent
    # may make per minute, counted in Postgres across every API process
    # (0: no limit).
    Key("send", "rate_per_agent", int, 60, _off_or_positive),
    Key("send", "max_attachments", int, 10, _positive),
    Key("send", "max_attachment_bytes", int, 10_000_000, _positive),
    Key("send", "max_attachments_total_bytes", int, 25_000_000, _positive),
    # host:port of the one resolver every lookup of ours uses; empty means the
    # system's /etc/resolv.conf.
    Key("dns", "resolver", str, "", lambda v: v and _host_port(v)),
    Key("dns", "timeout", float, 5.0, _positive),
    # A domain registered but never verified is a claim on the name; after
    # this many seconds (default 7 days) the worker removes it, and anyone
    # may register the name again, so nobody holds a name they cannot prove.
    Key("domains", "unverified_expiry_seconds", int, 7 * 24 * 3600, _positive),
    Key("worker", "poll_interval", float, 1.0, _positive),
    # Held messages (human in the loop): the owner's notification comes from
    # notify_from (default approvals@<reply_domain>); its Reply-To is an
    # approve-...@<reply_domain> address that acts on the reply. The reply
    # domain must be one this Postfix accepts mail for (default: the shared
    # agent domain, else mail.hostname).
    Key("hitl", "notify_from", str, "", lambda v: v and _mailbox(v)),
    Key("hitl", "reply_domain", str, "", _domain),
    # Notification mails per owner in any hour: an agent looping on held
    # sends must not flood its owner. What waits is summed up in the next one.
    Key("hitl", "notify_per_hour", int, 10, _positive),
    # Sandbox and tests only: lets agents' webhook URLs be http(s) on loopback
    # (see e2a.core.webhooks.urls). Never on a deployment.
    Key("webhooks", "allow_loopback", bool, False),
    # Seconds one webhook POST may take in all (connect, send, the answer's head).
    Key("webhooks", "timeout", float, 15.0, _positive),
    # POSTs in flight at once per worker process.
    Key("webhooks", "concurrency", int, 8, _positive),
    # Subscriptions per user.
    Key("webhooks", "max_per_user", int, 50, _positive),
    # A subscription is switched off once its attempts have failed this many
    # times in a row AND for this long (both, so a burst of events during a
    # short outage does not do it); 0 failures: never.
    Key("webhooks", "disable_after_failures", int, 20, _off_or_positive),
    Key("webhooks", "disable_after_seconds", int, 86400, _positive),
    # Prometheus /metrics of each mail-side service, host:port; empty: off.
    # Loopback by default: the numbers are not secret, but not for the world.
    Key("metrics", "milter_listen", str, "127.0.0.1:9101", lambda v: v and _host_port(v)),
    Key("metrics", "policy_listen", str, "127.0.0.1:9102", lambda v: v and _host_port(v)),
    Key("metrics", "filter_listen", str, "127.0.0.1:9103", lambda v: v and _host_port(v)),
    Key("metrics", "worker_listen", str, "127.0.0.1:9104", lambda v: v and _host_port(v)),
    # Loop and abuse brakes (core/outbound/brakes.py), per agent; each can
    # be overridden for one agent (PUT /v1/agents/{email}/brakes). 0 turns a
    # limit off. Over sends_per_hour or sends_per_day an agent's mail is
    # throttled (429 at the API, 451 at the content filter); its attempts in
    # an hour past pause_sends_per_hour pause its outbound mail until the
    # owner resumes it. A bounce rate (hard bounces / sends today, once at
    # least bounce_min_sends were sent) over bounce_rate_max throttles too.
    Key("brakes", "sends_per_hour", int, 200, _off_or_positive),
    Key("brakes", "sends_per_day", int, 2000, _off_or_positive),
    Key("brakes", "pause_sends_per_hour", int, 600, _off_or_positive),
    # Recipients an agent never sent to before, per hour: over it, throttled.
    Key("brakes", "new_recipients_per_hour", int, 100, _off_or_positive),
    Key("brakes", "bounce_rate_max", float, 0.2, _positive),
    Key("brakes", "bounce_min_sends", int, 20, _positive),
    # An agent's answer to auto-generated mail (vacation notices, bounces,
    # lists: core/protection/autoreply.py): hold it for a person, refuse it,
    # or allow it.
    Key("brakes", "auto_reply_action", str, "hold", _choice("hold", "refuse", "allow")),
    # Messages between agents of this deployment on one conversation per
    # hour; past it the next ones are held for a person.
    Key("brakes", "thread_turns_per_hour", int, 10, _off_or_positive),
    Key("log", "level", str, "info", _choice("debug", "info", "warning", "error")),
    Key("log", "format", str, "text", _choice("text", "json")),
)

SECTIONS = sorted({k.section for k in KEYS})


class Section:
    """Attribute access to one section's values: ``cfg.database.url``."""

    def __init__(self, values: Mapping[str, Any]) -> None:
        self.__dict__.update(values)

    def __repr__(self) -> str:
        return f"Section({self.__dict__!r})"


class Config:
    def __init__(self, values: Mapping[str, Mapping[str, Any]], source: str) -> None:
        self.source = source
        for section in SECTIONS:
            setattr(self, section, Section(values[section]))
        mail = self.mail  # type: ignore[attr-defined]
        # Defaults that depend on the host, settled once here.
        if not mail.hostname:
            mail.hostname = socket.getfqdn().lower()
        if not mail.authserv_id:
            mail.authserv_id = mail.hostname
        http = self.http  # type: ignore[attr-defined]
        if not http.max_send_body_bytes:
            http.max_send_body_bytes = send_body_bound(
                max(self.send.max_attachments_total_bytes,  # type: ignore[attr-defined]
                    mail.max_message_bytes), http.max_body_bytes)
        hitl = self.hitl  # type: ignore[attr-defined]
        if not hitl.reply_domain:
            hitl.reply_domain = mail.shared_domain or mail.hostname
        if not hitl.notify_from:
            hitl.notify_from = f"approvals@{hitl.reply_domain}"

    def get(self, dotted: str) -> Any:
        section, name = dotted.split(".", 1)
        return getattr(getattr(self, section), name)


def send_body_bound(content_bytes: int, other_bytes: int) -> int:
    """The JSON body of a send carrying ``content_bytes`` of files, base64
    encoded (4 characters per 3 bytes), beside ``other_bytes`` of the rest."""
    return (content_bytes + 2) // 3 * 4 + other_bytes


def _coerce(key: Key, raw: Any, origin: str) -> Any:
    if key.type is bool:
        if isinstance(raw, bool):
            return raw
        if isinstance(raw, str) and raw.lower() in ("1", "true", "yes", "on", "0", "false",
                                                     "no", "off"):
            return raw.lower() in ("1", "true", "yes", "on")
    elif key.type is int:
        if isinstance(raw, int) and not isinstance(raw, bool):
            return raw
        if isinstance(raw, str) and raw.strip().lstrip("-").isdigit():
            return int(raw)
    elif key.type is float:
        if isinstance(raw, int | float) and not isinstance(raw, bool):
            return float(raw)
        if isinstance(raw, str):
            try:
                return float(raw)
            except ValueError:
                pass
    elif key.type is str and isinstance(raw, str):
        return raw.strip()
    elif key.type is list:
        # A TOML array of strings, or (from the environment) a comma-separated string.
        if isinstance(raw, str) and origin.startswith("environment"):
            raw = raw.split(",")
        if isinstance(raw, list) and all(isinstance(item, str) for item in raw):
            return [item.strip() for item in raw if item.strip()]
    raise ConfigError(f"{origin}: {key.dotted}: must be a {key.type.__name__}, got {raw!r}")


def load(path: str | os.PathLike[str] | None = None,
         env: Mapping[str, str] | None = None) -> Config:
    """Read the file (if any), apply environment overrides, validate everything."""
    env = os.environ if env is None else env
    explicit = path is not None or "E2A_CONFIG" in env
    file = Path(path if path is not None else env.get("E2A_CONFIG", DEFAULT_PATH))
    data: dict[str, Any] = {}
    if file.exists():
        try:
            data = tomllib.loads(file.read_text())
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{file}: not valid TOML: {exc}") from None
        except OSError as exc:
            raise ConfigError(f"{file}: cannot read: {exc.strerror}") from None
    elif explicit:
        raise ConfigError(f"{file}: no such configuration file (E2A_CONFIG)")
    known = {k.dotted for k in KEYS}
    for section, table in data.items():
        if section not in SECTIONS or not isinstance(table, dict):
            raise ConfigError(f"{file}: [{section}]: unknown section")
        for name in table:
            if f"{section}.{name}" not in known:
                raise ConfigError(f"{file}: {section}.{name}: unknown key")
    values: dict[str, dict[str, Any]] = {s: {} for s in SECTIONS}
    for key in KEYS:
        origin, raw = str(file), data.get(key.section, {}).get(key.name, key.default)
        for name in key.env_names:
            if env.get(name, "") != "":
                origin, raw = f"environment {name}", env[name]
                break
        if raw is REQUIRED:
            raise ConfigError(
                f"{file}: {key.dotted}: required, not set (or set {key.env_names[0]})")
        value = _coerce(key, raw, origin)
        problem = key.check(value) if key.check else None
        if problem:
            raise ConfigError(f"{origin}: {key.dotted}: {problem}")
        values[key.section][key.name] = value
    return Config(values, str(file))


def render_example() -> str:
    """A commented TOML file with every key at its default (``e2a config example``)."""
    lines = ["# e2a-postfix configuration. Every key shows its default.", ""]
    for section in SECTIONS:
        lines.append(f"[{section}]")
        for key in (k for k in KEYS if k.section == section):
            envs = ", ".join(key.env_names)
            if key.default is REQUIRED:
                lines.append(f"# {key.name} = \"...\"   # required; env {envs}")
            else:
                lines.append(f"# {key.name} = {_toml_value(key.default)}   # env {envs}")
        lines.append("")
    return "\n".join(lines)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    return repr(value)
