"""``e2a keys create|list|revoke``: API keys, administered from the host."""

from __future__ import annotations

import json
from typing import Any

import click
import psycopg

from e2a.cli.context import connect, load_config
from e2a.core import accounts
from e2a.core.store import agents as agent_store
from e2a.core.store import keys as key_store
from e2a.core.store import users as user_store
from e2a.core.timefmt import rfc3339

COLUMNS = ("id", "prefix", "name", "scope", "created", "last used", "revoked")


@click.group("keys")
def keys() -> None:
    """API keys: create (shown once), list, revoke."""


def _owner(conn: psycopg.Connection, email: str) -> dict[str, Any]:
    user = user_store.user_by_email(conn, email)
    if user is None:
        raise click.ClickException(f"no user with email {email}")
    return user


@keys.command("create")
@click.option("--owner", required=True, help="Email of the owning user.")
@click.option("--agent", "agent_email", default="",
              help="Scope the key to this agent of the owner (default: the whole account).")
@click.option("--name", default="", help="A label to tell keys apart.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def create(owner: str, agent_email: str, name: str, as_json: bool) -> None:
    """Create a key and print it, once: only its hash is stored."""
    cfg = load_config()
    with connect(cfg) as conn:
        user = _owner(conn, owner)
        agent_id = None
        if agent_email:
            agent = agent_store.agent_for_user(conn, user["id"], agent_email)
            if agent is None:
                raise click.ClickException(f"{owner} has no agent {agent_email}")
            agent_id = agent["id"]
        key = accounts.issue_key(conn, user["id"], name=name, agent_id=agent_id)
    scope = agent_email.lower() if agent_email else "account"
    if as_json:
        click.echo(json.dumps({"id": key.id, "api_key": key.key, "scope": scope}))
    else:
        click.echo(f"key {key.id} ({scope})")
        click.echo(f"API key (shown once, store it now): {key.key}")


@keys.command("list")
@click.option("--owner", required=True, help="Email of the owning user.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def list_keys(owner: str, as_json: bool) -> None:
    """List a user's keys (never the keys themselves)."""
    cfg = load_config()
    with connect(cfg) as conn:
        rows = key_store.keys_for_user(conn, _owner(conn, owner)["id"])
    table = [{
        "id": r["id"], "prefix": r["key_prefix"], "name": r["name"],
        "scope": r["agent_email"] or ("account" if r["agent_id"] is None else r["agent_id"]),
        "created": rfc3339(r["created_at"]), "last used": rfc3339(r["last_used_at"]),
        "revoked": rfc3339(r["revoked_at"]),
    } for r in rows]
    if as_json:
        click.echo(json.dumps([{k.replace(" ", "_"): v for k, v in row.items()}
                               for row in table]))
        return
    if not table:
        click.echo(f"{owner} has no API keys")
        return
    widths = {c: max(len(c), *(len(row[c]) for row in table)) for c in COLUMNS}
    click.echo("  ".join(c.upper().ljust(widths[c]) for c in COLUMNS).rstrip())
    for row in table:
        click.echo("  ".join((row[c] or "-").ljust(widths[c]) for c in COLUMNS).rstrip())


@keys.command("revoke")
@click.argument("key_id")
def revoke(key_id: str) -> None:
    """Revoke a key by id: it stops working at once."""
    cfg = load_config()
    with connect(cfg) as conn:
        row = key_store.key_by_id(conn, key_id)
        if row is None:
            raise click.ClickException(f"no API key {key_id}")
        if key_store.revoke_key(conn, key_id):
            click.echo(f"revoked {key_id} ({row['key_prefix']}...)")
        else:
            click.echo(f"{key_id} was revoked already ({rfc3339(row['revoked_at'])})")
