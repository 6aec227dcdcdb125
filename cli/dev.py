"""`e2a dev up|down|status`: the developer sandbox (what `make run` / `make stop` call)."""

from __future__ import annotations

import importlib
import json
import os
import sys
from pathlib import Path
from typing import Any

import click

# The sandbox's Sandbox and Access (devtools/sandbox/stack.py): loaded from
# the checkout at run time, so the installed package names no such module.
Sandbox = Any
Access = Any

root_option = click.option(
    "--root", type=click.Path(file_okay=False, path_type=Path), default=Path("var"),
    show_default=True, help="Directory holding the sandbox's data, logs and sockets.")


join_option = click.option(
    "--join", type=click.Path(file_okay=False, exists=True, path_type=Path), default=None,
    help="Root of a running sandbox: be a second host of it (its PostgreSQL and secrets, "
         "everything else of its own).")


@click.group()
def dev() -> None:
    """Developer sandbox: Postgres, Postfix, DNS, a capture server and all services."""


@dev.command()
@root_option
@join_option
@click.option("--json", "as_json", is_flag=True, help="Print sandbox.json instead of text.")
def up(root: Path, join: Path | None, as_json: bool) -> None:
    """Start the sandbox (again): only what is not running is started."""
    if os.geteuid() != 0:
        raise click.ClickException("the sandbox runs a private Postfix instance: run as root")
    sandbox = _sandbox(root, join)
    try:
        sandbox.up()
        access = sandbox.bootstrap()
    except RuntimeError as exc:  # a part that did not start; the message says which
        raise click.ClickException(
            f"{exc}\nThe parts already started keep running; `e2a dev down` stops them.") from None
    if as_json:
        click.echo(json.dumps(access.to_json(), indent=2))
    else:
        click.echo(describe(access, sandbox.summary_path))


@dev.command()
@root_option
@join_option
def down(root: Path, join: Path | None) -> None:
    """Stop every process of the sandbox; its data stays for the next `up`."""
    sandbox = _sandbox(root, join)
    try:
        sandbox.down()
    except RuntimeError as exc:
        raise click.ClickException(str(exc)) from None
    left = [name for name, running in sandbox.status().items() if running]
    if left:
        raise click.ClickException(f"still running: {', '.join(left)}")
    click.echo(f"sandbox in {sandbox.root} stopped")


@dev.command()
@root_option
@join_option
def status(root: Path, join: Path | None) -> None:
    """Say which parts of the sandbox are running."""
    for name, running in _sandbox(root, join).status().items():
        click.echo(f"{name:10} {'running' if running else 'stopped'}")


def _sandbox(root: Path, join: Path | None = None) -> Sandbox:
    # Imported on use: every `e2a` command loads this module, and `e2a serve`
    # has no business importing the sandbox. The sandbox is developer tooling
    # in the checkout (devtools/sandbox, on the virtualenv's path by `make
    # venv`), never part of the installed package.
    _devtools_on_path()
    try:
        stack = importlib.import_module("sandbox.stack")
    except ImportError:
        raise click.ClickException(
            "the sandbox lives in a checkout of the repository (devtools/): "
            "run `make run` there") from None
    return stack.Sandbox(root, joins=join)


def _devtools_on_path() -> None:
    """Put the checkout's devtools/ on sys.path when this module runs from one.

    An editable install (`make venv`) also adds it with a .pth file; this
    covers a virtualenv made by hand.
    """
    devtools = Path(__file__).resolve().parents[1] / "devtools"
    if (devtools / "sandbox").is_dir() and str(devtools) not in sys.path:
        sys.path.insert(0, str(devtools))


def describe(access: Access, summary: Path) -> str:
    return f"""\
The e2a sandbox is up.

  API          {access.api_url}
  API key      {access.api_key}
  SMTP         {access.smtp_host}:{access.smtp_port}  (the sandbox Postfix)
  Your user    {access.user_email}
  Your agent   {access.agent_email}
  Internet     {access.capture_dir}/*.eml  (mail leaving the sandbox lands here)
  Logs         {access.log_dir}/  and  {access.maillog}

Send a mail to your agent through Postfix:

  {access.send_example}

Read it with today's SDK (pip install e2a), or through the /v1 API:

  {access.sdk_example}

  {access.read_example}

SDK 2.x clients keep the legacy API under /api/v1:

  {access.legacy_read_example}

The same as JSON: {summary}
Stop everything: make stop  (or: e2a dev down)"""
