"""``e2a agents register|list|show|update|delete``: the account's agents,
through /v1/agents."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from e2a.cli.agent.client import Api, Exit, Failure, agent_path, api_options, table

COLUMNS = [("email", "email"), ("name", "name"), ("created", "created_at")]


def _show(agent: dict[str, Any], as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(agent, indent=2))
        return
    for label, key in (("Email", "email"), ("Name", "name"), ("Domain", "domain"),
                       ("Verified", "domain_verified"), ("Created", "created_at"),
                       ("Deleted", "deleted_at")):
        if agent.get(key) not in (None, ""):
            click.echo(f"{label + ':':<10}{agent[key]}")


@click.command("register")
@click.argument("address", metavar="SLUG|EMAIL")
@click.option("--name", default="", help="A display name.")
@click.option("--json", "as_json", is_flag=True, help="Print the API's JSON.")
@api_options
def register(api: Api, address: str, name: str, as_json: bool) -> None:
    """Create an agent: a slug on the shared domain, or an address on your domain."""
    body: dict[str, Any] = {"email": api.address(address)}
    if name:
        body["name"] = name
    _show(api.request("POST", "/v1/agents", json=body), as_json)


@click.command("list")
@click.option("--deleted", is_flag=True, help="The trash instead.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@api_options
def list_agents(api: Api, deleted: bool, as_json: bool) -> None:
    """The account's agents, newest first."""
    agents = list(api.pages("/v1/agents", deleted="true" if deleted else None))
    if as_json:
        for agent in agents:
            click.echo(json.dumps(agent))
    elif agents:
        click.echo(table(agents, COLUMNS))
    else:
        click.echo("no agents" + (" in the trash" if deleted else ""))


@click.command("show")
@click.argument("address", metavar="SLUG|EMAIL")
@click.option("--json", "as_json", is_flag=True, help="Print the API's JSON.")
@api_options
def show(api: Api, address: str, as_json: bool) -> None:
    """One agent."""
    _show(api.get(agent_path(api.address(address))), as_json)


@click.command("update")
@click.argument("address", metavar="SLUG|EMAIL")
@click.option("--name", required=True, help="The new display name.")
@click.option("--json", "as_json", is_flag=True, help="Print the API's JSON.")
@api_options
def update(api: Api, address: str, name: str, as_json: bool) -> None:
    """Rename an agent."""
    _show(api.request("PATCH", agent_path(api.address(address)), json={"name": name},
                      idempotent=True), as_json)


@click.command("delete")
@click.argument("address", metavar="SLUG|EMAIL")
@click.option("--permanent", is_flag=True, help="Erase at once instead of the trash.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.option("--json", "as_json", is_flag=True, help="Print the API's JSON.")
@api_options
def delete(api: Api, address: str, permanent: bool, yes: bool, as_json: bool) -> None:
    """Delete an agent (to the trash for 30 days, or --permanent); asks first."""
    email = api.address(address)
    if not yes:
        if not sys.stdin.isatty():
            raise Failure("not a terminal to confirm on: give --yes", Exit.USAGE)
        what = "erase" if permanent else "move to the trash"
        click.confirm(f"{what} {email}?", abort=True)
    params = {"confirm": "DELETE"}
    if permanent:
        params["permanent"] = "true"
    done = api.request("DELETE", agent_path(email), params=params, idempotent=True)
    if as_json:
        click.echo(json.dumps(done, indent=2))
    else:
        click.echo(f"deleted {done.get('email', email)} "
                   f"({'erased' if permanent else 'in the trash, restorable'})")


COMMANDS = (register, list_agents, show, update, delete)
