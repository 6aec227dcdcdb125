"""``e2a pending list|show|approve|reject``: held messages, through the REST API.

A client of the API like any other (an account-wide API key; agent-scoped
keys may not approve), so it works from any machine that reaches the API,
not only from the mail host.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import click

from e2a.cli import context
from e2a.cli.agent import client as agentclient
from e2a.cli.agent import settings
from e2a.core import config

FIELDS = ("Subject", "To", "Cc", "Bcc")
EDIT_HELP = ("# Edit the subject, the recipients (comma-separated) and the body below the\n"
             "# blank line, then save and quit. Lines starting with # are ignored.\n"
             "# Quit without saving to approve nothing.\n")


@dataclass(frozen=True)
class Api:
    url: str  # "" until a command needs it: `e2a login`'s, else http.public_url then
    key: str

    def call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        stored = settings.load()
        url = self.url or stored.get("url") or _default_url()
        client = agentclient.Api(url=url, key=self.key or stored.get("api_key", ""),
                                 stored=stored)
        body = client.request(method, path, **kwargs)
        return body if isinstance(body, dict) else {}


def _default_url() -> str:
    try:
        return context.load().http.public_url
    except config.ConfigError as exc:
        raise click.ClickException(
            f"no --url given, no `e2a login` and no configuration to take "
            f"http.public_url from: {exc}") from None


@click.group("pending")
@click.option("--url", "--api-url", "api_url", envvar="E2A_API_URL", default="",
              help="The API's base URL (default: `e2a login`'s, else http.public_url "
                   "of the configuration).")
@click.option("--api-key", envvar="E2A_API_KEY", default="",
              help="An account-wide API key (or E2A_API_KEY).")
@click.pass_context
def pending(ctx: click.Context, api_url: str, api_key: str) -> None:
    """Messages held for approval: list, show, approve (optionally edited), reject."""
    ctx.obj = Api(api_url, api_key)


def _message_path(message_id: str) -> str:
    return "/api/v1/messages/" + quote(message_id, safe="")


@pending.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the API's JSON.")
@click.pass_obj
def list_pending(api: Api, as_json: bool) -> None:
    """The held messages of all your agents, the soonest to expire first."""
    messages: list[dict[str, Any]] = []
    params = {"status": "pending_approval"}
    while True:  # the queue comes in pages
        body = api.call("GET", "/api/v1/messages", params=params)
        messages += body.get("messages", [])
        if not body.get("next_token"):
            break
        params["token"] = body["next_token"]
    if as_json:
        click.echo(json.dumps({"messages": messages}, indent=2))
        return
    if not messages:
        click.echo("no messages held for approval")
        return
    for m in messages:
        click.echo(f"{m['id']}  expires {m['approval_expires_at']}  "
                   f"to {', '.join(m['to']) or '-'}  {m['subject']!r}")


def field(label: str, value: str) -> str:
    return f"{label + ':':<10}{value}"


@pending.command("show")
@click.argument("message_id")
@click.option("--json", "as_json", is_flag=True, help="Print the API's JSON.")
@click.pass_obj
def show(api: Api, message_id: str, as_json: bool) -> None:
    """One held message with its draft."""
    m = api.call("GET", _message_path(message_id))
    if as_json:
        click.echo(json.dumps(m, indent=2))
        return
    lines = [field("ID", m["id"]), field("Status", m["status"]), field("Agent", m["agent_id"]),
             field("Expires", m["approval_expires_at"] or "-"), field("To", ", ".join(m["to"]))]
    lines += [field(name, ", ".join(m[name.lower()])) for name in ("Cc", "Bcc")
              if m[name.lower()]]
    lines.append(field("Subject", m["subject"]))
    for item in m.get("attachments") or []:
        lines.append(field("Attached", f"{item.get('filename', '')} "
                                       f"({item.get('content_type', '')})"))
    if m.get("inbound"):
        inbound = m["inbound"]
        lines.append(f"Replying to {inbound['sender']}: {inbound['subject']!r} "
                     f"({', '.join(f'{k}={v}' for k, v in inbound['auth_headers'].items())})")
    lines.append("")
    lines.append(m["body_text"] or m["body_html"])
    click.echo("\n".join(lines))


def draft_text(m: dict[str, Any]) -> str:
    """What the editor shows: the editable fields, a blank line, the body."""
    head = [f"Subject: {m['subject']}"]
    head += [f"{name}: {', '.join(m[name.lower()])}" for name in FIELDS[1:]]
    body = m["body_text"] if m["body_text"] or not m["body_html"] else m["body_html"]
    return EDIT_HELP + "\n".join(head) + "\n\n" + body


def _addresses(value: str) -> list[str]:
    return [a.strip() for a in value.split(",") if a.strip()]


def edits(m: dict[str, Any], edited: str) -> dict[str, Any]:
    """The ApprovePendingMessageRequest fields that the edit changed."""
    lines = [line for line in edited.split("\n") if not line.startswith("#")]
    fields: dict[str, str] = {}
    while lines and lines[0].strip():
        name, colon, value = lines.pop(0).partition(":")
        if not colon or name.strip().title() not in FIELDS:
            raise click.ClickException(f"not a field to edit: {name.strip()!r}")
        fields[name.strip().title()] = value.strip()
    body = "\n".join(lines[1:])
    changed: dict[str, Any] = {}
    if "Subject" in fields and fields["Subject"] != m["subject"]:
        changed["subject"] = fields["Subject"]
    for name in FIELDS[1:]:
        key = name.lower()
        if name in fields and _addresses(fields[name]) != list(m[key]):
            changed[key] = _addresses(fields[name])
    body_field = "body_text" if m["body_text"] or not m["body_html"] else "body_html"
    # Editors add or drop a final newline: that is no change.
    if body.rstrip() != m[body_field].rstrip():
        changed[body_field] = body
    return changed


@pending.command("approve")
@click.argument("message_id")
@click.option("--edit", "edit", is_flag=True,
              help="Edit subject, recipients and body in $EDITOR first.")
@click.pass_obj
def approve(api: Api, message_id: str, edit: bool) -> None:
    """Send a held message (as it is, or as edited)."""
    request: dict[str, Any] = {}
    if edit:
        m = api.call("GET", _message_path(message_id))
        if m["status"] != "pending_approval":
            raise click.ClickException(f"{message_id} is {m['status']}, not pending approval")
        edited = click.edit(draft_text(m), extension=".txt", require_save=True)
        if edited is None:
            raise click.ClickException("not saved: nothing approved")
        request = edits(m, edited)
    done = api.call("POST", _message_path(message_id) + "/approve", json=request,
                    headers={"Idempotency-Key": str(uuid.uuid4())})
    click.echo(f"{done['message_id']}: {done['status']}"
               + (" (edited)" if done.get("edited") else "")
               + (f", queued as {done['provider_message_id']}"
                  if done.get("provider_message_id") else ""))


@pending.command("reject")
@click.argument("message_id")
@click.option("--reason", required=True, help="Why (kept with the message).")
@click.pass_obj
def reject(api: Api, message_id: str, reason: str) -> None:
    """Discard a held message: it is never sent."""
    done = api.call("POST", _message_path(message_id) + "/reject", json={"reason": reason})
    click.echo(f"{done['message_id']}: {done['status']}")
