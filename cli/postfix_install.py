"""``e2a postfix install|check|uninstall``: wire e2a into an existing Postfix.

Only ever through postconf, never by writing main.cf or master.cf; a backup
of both before every change; what install did is recorded (postfix_record)
so that uninstall takes out exactly that. Postfix itself is not reloaded:
the operator decides when (``postfix reload``).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import click

from e2a.cli import postfix_check
from e2a.cli.context import load_config
from e2a.cli.postconf import Postconf, PostconfError
from e2a.cli.postfix_apply import apply, backup, preview
from e2a.cli.postfix_plan import (
    Plan,
    State,
    WiringError,
    involved_params,
    plan_install,
    plan_uninstall,
    read_wiring,
)
from e2a.cli.postfix_record import DEFAULT_PATH, RecordError, Records

DEFAULT_DIRECTORY = Path("/etc/postfix")

directory_option = click.option(
    "--config-directory", "-c", "directory", default=DEFAULT_DIRECTORY, show_default=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Postfix's configuration directory (as for postfix -c).")
state_option = click.option(
    "--state-file", default=DEFAULT_PATH, show_default=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where install records what it changed, for uninstall.")
dry_run_option = click.option(
    "--dry-run", is_flag=True, help="Print the changes as a unified diff; change nothing.")


@click.group("postfix")
def postfix_group() -> None:
    """Wire e2a into Postfix's main.cf and master.cf (with postconf)."""


@postfix_group.command()
@directory_option
@state_option
@dry_run_option
def install(directory: Path, state_file: Path, dry_run: bool) -> None:
    """Add e2a's milter, policy service and content filter to Postfix."""
    cfg = load_config()
    pc, records = Postconf(directory), Records(state_file)
    try:
        record = records.get(pc.directory)
        wiring = read_wiring(cfg, pc)
        state = State.read(pc, involved_params(wiring, record))
        plan = plan_install(state, wiring, record)
        diff = preview(pc, plan.changes)
    except (PostconfError, WiringError, RecordError, OSError) as exc:
        raise click.ClickException(str(exc)) from None
    if dry_run or not plan.changes:
        _show(pc, plan, diff, dry_run)
        if not dry_run and plan.record != record:
            records.put(pc.directory, plan.record)
        return
    _carry_out(pc, plan, records)
    click.echo("Reload Postfix to use them: postfix reload (or systemctl reload postfix)")


@postfix_group.command()
@directory_option
@state_option
@dry_run_option
@click.option("--all", "every", is_flag=True,
              help="Every configuration directory install recorded (the package's prerm).")
@click.option("--reload", "reload", is_flag=True,
              help="Reload each Postfix that runs and was changed (the package's prerm).")
def uninstall(directory: Path, state_file: Path, dry_run: bool, every: bool,
              reload: bool) -> None:
    """Take out what install added and give back the values it replaced."""
    records = Records(state_file)
    try:
        directories = records.directories() if every else [Postconf(directory).directory]
        for path in directories:
            pc = Postconf(path)
            if _uninstall(pc, records, dry_run, every) and reload:
                _reload_if_running(pc.directory)
    except (PostconfError, RecordError, OSError) as exc:
        raise click.ClickException(str(exc)) from None


def _reload_if_running(directory: Path) -> None:
    """A running Postfix keeps naming our sockets until it reloads: with the
    milter gone, every message would get 451."""
    env = {k: v for k, v in os.environ.items() if k != "MAIL_CONFIG"}

    def postfix(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["postfix", "-c", str(directory), *args], capture_output=True,
                              text=True, env=env, cwd="/", timeout=120, check=False)

    if postfix("status").returncode != 0:
        click.echo(f"{directory}: Postfix is not running; it reads the change when it starts")
        return
    done = postfix("reload")
    if done.returncode != 0:
        raise click.ClickException(f"{directory}: postfix reload failed: "
                                   f"{(done.stderr or done.stdout).strip()}")
    click.echo(f"{directory}: Postfix reloaded")


def _uninstall(pc: Postconf, records: Records, dry_run: bool, every: bool) -> bool:
    """True when the files changed."""
    record = records.get(pc.directory)
    if record is None:
        if not every:
            click.echo(f"{pc.directory}: e2a did not install anything here; nothing to undo")
        return False
    if every and not pc.main_cf.exists():
        click.echo(f"{pc.directory}: gone; forgetting what e2a installed there")
        if not dry_run:
            records.put(pc.directory, None)
        return False
    plan = plan_uninstall(State.read(pc, involved_params(None, record)), record)
    if dry_run or not plan.changes:
        _show(pc, plan, preview(pc, plan.changes), dry_run)
        if not dry_run:
            records.put(pc.directory, None)
        return False
    _carry_out(pc, plan, records)
    click.echo("Reload Postfix to let go of e2a: postfix reload (or systemctl reload postfix)")
    return True


@postfix_group.command()
@directory_option
def check(directory: Path) -> None:
    """Verify the wiring, the sockets and `postfix check`; one line per problem."""
    cfg = load_config()
    pc = Postconf(directory)
    found = postfix_check.problems(cfg, pc)
    for line in found:
        click.echo(line)
    if found:
        raise SystemExit(1)
    click.echo(f"Postfix in {pc.directory} is wired to e2a")


def _show(pc: Postconf, plan: Plan, diff: str, dry_run: bool) -> None:
    for note in plan.notes:
        click.echo(f"note: {note}")
    if not plan.changes:
        click.echo(f"{pc.directory}: nothing to change")
    elif dry_run:
        click.echo(diff, nl=False)


def _carry_out(pc: Postconf, plan: Plan, records: Records) -> None:
    """Backup, then the record (so a failure half-way still leaves uninstall
    knowing what may be ours), then postconf."""
    made = backup(pc)
    if plan.record is not None:
        plan.record["backups"] = [*plan.record["backups"], *made]
    records.put(pc.directory, plan.record)
    apply(pc, plan.changes)
    for note in plan.notes:
        click.echo(f"note: {note}")
    for change in plan.changes:
        click.echo(change.describe())
    click.echo(f"backups: {', '.join(made)}")
