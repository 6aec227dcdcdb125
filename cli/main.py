"""Entry point of the `e2a` console script."""

from __future__ import annotations

import json

import click

from e2a.cli.agent import account as agent_account
from e2a.cli.agent import agents as agent_agents
from e2a.cli.agent import listen as agent_listen
from e2a.cli.agent import mail as agent_mail
from e2a.cli.context import connect, load_config
from e2a.cli.doctor import doctor
from e2a.cli.keys import keys
from e2a.cli.pending import pending
from e2a.cli.postfix.install import postfix_group
from e2a.core import config
from e2a.core.accounts import registration as accounts
from e2a.core.db import migrate

SERVICES = ("milter", "policy", "filter", "api", "worker")
# `e2a --help` shows the two audiences apart: who runs the mail host, and who
# builds agents against its API (from any machine).
SECTIONS = (
    ("Agent commands (the /v1 API, from anywhere)",
     ("login", "whoami", "config", "agents", "listen", "inbox", "read", "reply", "send",
      "pending")),
    ("Operator commands (on the mail host)",
     ("serve", "db", "bootstrap", "keys", "postfix", "doctor", "dev")),
)


class SectionedGroup(click.Group):
    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        listed = {name for _, names in SECTIONS for name in names}
        sections = [(title, names) for title, names in SECTIONS]
        sections.append(("Other commands", tuple(sorted(set(self.commands) - listed))))
        limit = formatter.width - 6 - max(len(name) for name in self.commands)
        for title, names in sections:
            rows = [(name, self.commands[name].get_short_help_str(limit))
                    for name in names if name in self.commands
                    and not self.commands[name].hidden]
            if rows:
                with formatter.section(title):
                    formatter.write_dl(rows)


@click.group(cls=SectionedGroup, context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """e2a-postfix: email for AI agents, as a plugin for Postfix."""


@cli.group("config")
def config_group() -> None:
    """Settings: the CLI's own (show, set) and the server's (check, example)."""


@config_group.command("check")
def config_check() -> None:
    """Load the configuration and say where it came from."""
    cfg = load_config()
    click.echo(f"configuration OK ({cfg.source})")


@config_group.command("example")
def config_example() -> None:
    """Print a configuration file with every key and its default."""
    click.echo(config.render_example())


@cli.group("db")
def db_group() -> None:
    """Database schema."""


@db_group.command("migrate")
def db_migrate() -> None:
    """Apply the SQL migrations that are missing (safe to run on several hosts at once)."""
    cfg = load_config()
    with connect(cfg, autocommit=True) as conn:
        try:
            applied = migrate.migrate(conn)
        except migrate.MigrationError as exc:
            raise click.ClickException(str(exc)) from None
        with conn.transaction():
            accounts.seed_shared_domain(conn, cfg)
    click.echo("applied: " + ", ".join(applied) if applied else "database is up to date")


@cli.command()
@click.option("--email", required=True, help="The new user's email address.")
@click.option("--name", default="", help="Display name.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def bootstrap(email: str, name: str, as_json: bool) -> None:
    """Create a user and print an API key for it, once."""
    cfg = load_config()
    with connect(cfg) as conn:
        try:
            user = accounts.create_user(conn, email, name)
        except accounts.AccountError as exc:
            raise click.ClickException(str(exc)) from None
        key = accounts.issue_key(conn, user["id"], name="bootstrap")
    if as_json:
        click.echo(json.dumps({"user_id": user["id"], "email": user["email"],
                               "api_key": key.key}))
    else:
        click.echo(f"user {user['email']} ({user['id']})")
        click.echo(f"API key (shown once, store it now): {key.key}")


@cli.group("agents")
def agents_group() -> None:
    """Agents: register, list, show, update, delete (API); create (on the host)."""


@agents_group.command("create")
@click.option("--owner", required=True, help="Email of the owning user.")
@click.option("--slug", default="", help="Address on the shared domain.")
@click.option("--email", default="", help="Address on a verified domain of the owner.")
@click.option("--name", default="")
@click.option("--mode", "agent_mode", type=click.Choice(["local", "cloud"]), default="local")
@click.option("--webhook-url", default="")
def agents_create(owner: str, slug: str, email: str, name: str, agent_mode: str,
                  webhook_url: str) -> None:
    """On the mail host: register an agent for a user, in the database."""
    from e2a.core.store import users as user_store

    cfg = load_config()
    with connect(cfg) as conn:
        user = user_store.user_by_email(conn, owner)
        if user is None:
            raise click.ClickException(f"no user with email {owner}")
        try:
            agent = accounts.register_agent(conn, cfg, user["id"], slug=slug, email=email,
                                            name=name, agent_mode=agent_mode,
                                            webhook_url=webhook_url)
        except accounts.AccountError as exc:
            raise click.ClickException(str(exc)) from None
    click.echo(f"agent {agent['email']} ({agent['id']})")


@cli.command()
@click.argument("service", type=click.Choice(SERVICES))
def serve(service: str) -> None:
    """Run one service in the foreground until SIGTERM."""
    cfg = load_config()
    # Imported here: each service pulls in its own stack (gevent, libmilter, ...).
    if service == "milter":
        from e2a.milter.daemon import run
    elif service == "policy":
        from e2a.policy.daemon import run
    elif service == "filter":
        from e2a.filter.daemon import run
    elif service == "api":
        from e2a.api.server import run
    else:
        from e2a.worker.daemon import run
    run(cfg)


for command in agent_agents.COMMANDS:
    agents_group.add_command(command)
config_group.add_command(agent_account.config_show)
config_group.add_command(agent_account.config_set)
for command in (agent_account.login, agent_account.whoami, agent_listen.listen,
                *agent_mail.COMMANDS):
    cli.add_command(command)
cli.add_command(keys)
cli.add_command(pending)
cli.add_command(postfix_group)
cli.add_command(doctor)


def _register_optional() -> None:
    from e2a.cli.dev import dev

    cli.add_command(dev)


_register_optional()
