"""``e2a login``, ``e2a whoami``, ``e2a config show|set``: who the CLI is
and where it speaks to."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from e2a.cli.agent import settings
from e2a.cli.agent.client import Api, Exit, Failure, api_options


def _masked(key: str) -> str:
    return key[:12] + "…" if len(key) > 12 else "…"


def describe(account: dict[str, Any]) -> str:
    user = account.get("user") or {}
    scope = account.get("scope", "")
    who = f"{user.get('email', '?')} ({scope} key"
    if account.get("agent_email"):
        who += f" for {account['agent_email']}"
    return who + ")"


@click.command()
@click.option("--url", "api_url", envvar="E2A_API_URL", default="", metavar="URL",
              help="The API's base URL (E2A_API_URL).")
@click.option("--api-key", "api_key", envvar="E2A_API_KEY", default="", metavar="KEY",
              help="The key to store (E2A_API_KEY); asked for when not given.")
def login(api_url: str, api_key: str) -> None:
    """Check an API key against the API and store it with the URL (mode 0600)."""
    stored = settings.load()
    url = api_url or stored.get("url") or click.prompt("API URL")
    url = url.strip().rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise Failure(f"not an http(s) URL: {url}", Exit.USAGE)
    if not api_key:
        # Piped (`pass show e2a | e2a login`): one line, no terminal to hide it on.
        api_key = (click.prompt("API key", hide_input=True) if sys.stdin.isatty()
                   else sys.stdin.readline(4096))
    key = api_key.strip()
    if not key:
        raise Failure("no API key given", Exit.USAGE)
    api = Api(url=url, key=key, stored={})
    account = api.get("/v1/account")
    info = api.info
    values = {**stored, "url": url, "api_key": api.key,
              "shared_domain": str(info.get("shared_domain") or "")}
    if account.get("agent_email"):
        values["agent"] = str(account["agent_email"])
    file = settings.save(values)
    click.echo(f"logged in to {url} as {describe(account)}")
    if values["shared_domain"]:
        click.echo(f"shared domain: {values['shared_domain']}")
    click.echo(f"saved to {file}")


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the API's JSON.")
@api_options
def whoami(api: Api, as_json: bool) -> None:
    """The account (and agent) the key belongs to."""
    account = api.get("/v1/account")
    if as_json:
        click.echo(json.dumps(account, indent=2))
        return
    click.echo(f"{describe(account)} at {api.url}")


@click.command("show")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (the key masked).")
def config_show(as_json: bool) -> None:
    """The CLI's own settings (from `e2a login`), the API key masked."""
    file = settings.path()
    values = settings.load(file)
    if "api_key" in values:
        values["api_key"] = _masked(values["api_key"])
    if as_json:
        click.echo(json.dumps({"path": str(file), **values}, indent=2))
        return
    click.echo(f"# {file}" + ("" if file.exists() else " (not written yet)"))
    for name in settings.KEYS:
        if name in values:
            click.echo(f"{name} = {values[name]}")


@click.command("set")
@click.argument("name", type=click.Choice(settings.KEYS))
@click.argument("value")
def config_set(name: str, value: str) -> None:
    """Set one of the CLI's settings (url, api_key, agent, shared_domain)."""
    values = settings.load()
    if name == "url" and not value.startswith(("http://", "https://")):
        raise Failure(f"not an http(s) URL: {value}", Exit.USAGE)
    values[name] = value.strip()
    file = settings.save(values)
    click.echo(f"{name} saved to {file}")

