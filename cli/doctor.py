"""``e2a doctor``: is this host ready to carry mail for agents?

One line per finding, ``OK``, ``WARN`` or ``FAIL``, then exit status 1 when
anything failed. Nothing here changes anything (beyond the migration
runner's bookkeeping table, created if missing).
"""

from __future__ import annotations

import http.client
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import click
import dns.exception
import psycopg

from e2a.cli import context, postfix_check
from e2a.cli.postconf import Postconf
from e2a.cli.postfix_install import DEFAULT_DIRECTORY
from e2a.core import config, domaindns, localhttp, logs
from e2a.core import dns as e2a_dns
from e2a.core.db import migrate
from e2a.core.store import agents as agent_store
from e2a.core.store import health

MAX_SKEW = 2.0  # seconds between our clock and the database's before we warn
# Fewer different characters than this in a secret of the required length
# means it was typed, not generated.
MIN_DISTINCT = 10


@dataclass(frozen=True)
class Finding:
    status: str  # OK, WARN or FAIL
    check: str
    detail: str

    def line(self) -> str:
        return f"{self.status:<4} {self.check}: {self.detail}"


def ok(check: str, detail: str) -> Finding:
    return Finding("OK", check, detail)


def warn(check: str, detail: str) -> Finding:
    return Finding("WARN", check, detail)


def fail(check: str, detail: str) -> Finding:
    return Finding("FAIL", check, detail)


def check_database(cfg: config.Config) -> Iterator[Finding]:
    """Reachable, migrated, and its clock against ours."""
    try:
        with context.connect_raw(cfg, autocommit=True, name="doctor") as conn:
            pending = migrate.pending(conn)
            before = time.time()
            their_now = health.clock(conn)
            after = time.time()
    except (psycopg.Error, migrate.MigrationError) as exc:
        detail = " ".join(str(exc).split()) or type(exc).__name__
        if isinstance(exc, psycopg.OperationalError):
            detail += f"; {context.database_advice(exc)}"
        yield fail("database", detail)
        return
    if pending:
        yield fail("database", f"reachable; migrations not applied: {', '.join(pending)} "
                               "(run e2a db migrate)")
    else:
        yield ok("database", "reachable, every migration applied")
    ours = datetime.fromtimestamp((before + after) / 2, UTC)
    skew = abs((their_now - ours).total_seconds())
    if skew > MAX_SKEW:
        yield warn("clock", f"{skew:.1f}s apart from the database's (check NTP on both)")
    else:
        yield ok("clock", f"within {MAX_SKEW:.0f}s of the database's ({skew:.2f}s)")


def check_secrets(cfg: config.Config) -> Iterator[Finding]:
    # config.load already refused a missing or short secret; values never shown.
    for key, value in (("secrets.hmac_secret", cfg.secrets.hmac_secret),
                       ("secrets.encryption_key", cfg.secrets.encryption_key)):
        if not value:
            yield ok("secrets", f"{key} not set: derived from secrets.hmac_secret")
        elif len(set(value)) < MIN_DISTINCT:
            yield warn("secrets", f"{key} has {len(value)} characters but only "
                                  f"{len(set(value))} different ones: generate one "
                                  "(openssl rand -hex 32)")
        else:
            yield ok("secrets", f"{key} set ({len(value)} characters)")


def check_dns(cfg: config.Config) -> Iterator[Finding]:
    """The resolver answers (core.dns must be configured)."""
    name = cfg.mail.shared_domain or cfg.mail.hostname
    where = cfg.dns.resolver or "the resolvers of /etc/resolv.conf"
    try:
        exchanges = e2a_dns.mx(name)
    except dns.exception.DNSException as exc:
        yield fail("dns", f"{where} did not answer for {name}: {exc} (set dns.resolver "
                          "to a resolver that answers, or fix /etc/resolv.conf)")
        return
    yield ok("dns", f"{where} answers (MX of {name}: {', '.join(exchanges) or 'none'})")


def check_shared_domain(cfg: config.Config) -> Iterator[Finding]:
    """The records the shared domain must publish (the same probe as a user's
    domain gets), with what to publish when one is missing."""
    if not cfg.mail.shared_domain:
        return
    try:
        with context.connect_raw(cfg, name="doctor") as conn:
            row = agent_store.domain_by_name(conn, cfg.mail.shared_domain)
    except psycopg.Error:
        return  # the database finding has said so
    if row is None:
        yield warn("shared domain", f"{cfg.mail.shared_domain} is not in the database yet "
                                    "(run e2a db migrate)")
        return
    try:
        found = domaindns.probe(cfg, row)
    except domaindns.DnsUnavailable as exc:
        yield warn("shared domain", str(exc))
        return
    wanted = domaindns.records(cfg, row)
    mx, dkim = wanted["mx"], wanted["dkim"]
    advice = {
        "mx": f"publish {mx['host']}. MX {mx['priority']} {mx['value']}.",
        "spf": f"publish {row['domain']}. TXT \"v=spf1 mx -all\" (or include:{cfg.mail.hostname})",
        "dkim": f"publish {dkim['host']}. TXT \"{dkim['value']}\"",
    }
    for kind, state in (("mx", found.mx), ("spf", found.spf), ("dkim", found.dkim)):
        if state == domaindns.FOUND:
            yield ok("shared domain", f"{row['domain']}: {kind} record published")
        elif state == domaindns.MISSING:
            yield warn("shared domain", f"{row['domain']}: {kind} record missing: "
                                        f"{advice[kind]}")


def check_postfix(cfg: config.Config, directory: Path) -> Iterator[Finding]:
    pc = Postconf(directory)
    wiring = postfix_check.wiring_problems(cfg, pc)
    yield from (fail("postfix", f"{p} (run e2a postfix install, then postfix reload)")
                for p in wiring)
    if wiring and wiring[0].startswith("postfix: "):
        return
    if os.geteuid() == 0:
        checked = postfix_check.postfix_check_problems(pc)
        yield from (fail("postfix", f"{p} (Postfix's own check: fix what it names in "
                                    f"{pc.directory}, then postfix reload)") for p in checked)
    else:
        # Postfix lets only the superuser run `postfix check`.
        checked = []
        yield warn("postfix", "postfix check skipped: only root may run it (run e2a doctor "
                              "as root)")
    if not wiring and not checked:
        passes = "; postfix check passes" if os.geteuid() == 0 else ""
        yield ok("postfix", f"{pc.directory} is wired to e2a{passes}")
    sockets = postfix_check.socket_problems(cfg, pc)
    yield from (fail("sockets", f"{p} (systemctl start e2a.target; journalctl -u "
                                f"'e2a-*' says why one does not start)") for p in sockets)
    if not sockets:
        yield ok("sockets", "milter and policy listen and Postfix's user can reach them")


def check_api(cfg: config.Config, timeout: float = 5.0) -> Iterator[Finding]:
    """GET /api/health on http.listen: a worker serves, and its database answers."""
    listen = cfg.http.listen.removeprefix("inet:")
    try:
        status = localhttp.get_status(listen, "/api/health", timeout)
    except (OSError, http.client.HTTPException) as exc:
        yield fail("api", f"no answer on {listen}: {exc} (systemctl status e2a-api; "
                          "journalctl -u e2a-api)")
        return
    if status == 200:
        yield ok("api", f"{listen} serves; /api/health answers 200")
    elif status == 503:
        yield fail("api", f"{listen} serves, but its database does not answer (503): "
                          "the database finding says why")
    else:
        yield fail("api", f"/api/health on {listen} answered {status}: is something else "
                          "listening there? (http.listen)")


@click.command()
@click.option("--postfix-directory", "directory", default=DEFAULT_DIRECTORY,
              show_default=True, type=click.Path(file_okay=False, path_type=Path),
              help="Postfix's configuration directory.")
def doctor(directory: Path) -> None:
    """Check the database, secrets, DNS, Postfix wiring, sockets, the API and clock."""
    try:
        cfg = context.load()
    except config.ConfigError as exc:
        click.echo(fail("config", context.explain(exc)).line())
        raise SystemExit(1) from None
    logs.setup(cfg.log.level, cfg.log.format)
    # Lines of our own only; a library's warning would split the report.
    logging.getLogger().setLevel(logging.ERROR)
    click.echo(ok("config", cfg.source).line())
    e2a_dns.configure(cfg)
    failed = False
    for check in (check_database(cfg), check_secrets(cfg), check_dns(cfg),
                  check_shared_domain(cfg), check_postfix(cfg, directory),
                  check_api(cfg)):
        for finding in check:
            click.echo(finding.line())
            failed |= finding.status == "FAIL"
    if failed:
        raise SystemExit(1)
