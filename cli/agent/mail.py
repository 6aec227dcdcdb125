"""``e2a inbox``, ``e2a read``, ``e2a reply``, ``e2a send``: an agent's mail
through /v1/agents/{email}/messages."""

from __future__ import annotations

import base64
import binascii
import json
import mimetypes
import os
import sys
from pathlib import Path
from typing import Any

import click

from e2a.cli.agent.client import (
    Api,
    Exit,
    Failure,
    agent_path,
    api_options,
    path_segment,
    table,
)
from e2a.core.mail import parts as mailparts
from e2a.core.outbound.holds import attachment_json

MAX_ATTACHMENT = 10 * 1024 * 1024  # the API's per-file limit: refused here, not after upload
MAX_BODY = 1048576
INBOX = [("id", "id"), ("received", "created_at"), ("from", "header_from"),
         ("subject", "subject"), ("read", "read_status")]


# -- what reading needs ------------------------------------------------------

def verdict(message: dict[str, Any]) -> str:
    """The authentication verdict in one phrase: what a reader may trust."""
    if message.get("direction") == "outbound":
        return "sent by this agent"
    if message.get("verified_domain"):
        return f"verified: DMARC pass for {message['verified_domain']}"
    auth = message.get("authentication") or {}
    dmarc = (auth.get("dmarc") or {}).get("status") or "unknown"
    spf = (auth.get("spf") or {}).get("status") or "unknown"
    dkim = ",".join(d.get("status", "?") for d in auth.get("dkim") or []) or "none"
    return f"NOT verified (DMARC {dmarc}, SPF {spf}, DKIM {dkim})"


def message_text(message: dict[str, Any]) -> str:
    body = message.get("body") or {}
    return body.get("text") or body.get("html") or ""


def find_message(api: Api, message_id: str, agent: str) -> tuple[str, dict[str, Any]]:
    """The message and its agent: the one given, or else whichever of the
    account's agents holds it (ids are unique, paths are per agent)."""
    mid = path_segment(message_id)
    if agent:
        email = api.address(agent)
        return email, api.get(f"{agent_path(email)}/messages/{mid}")
    stored = api.stored.get("agent")
    candidates = [api.address(stored)] if stored else []
    account = api.get("/v1/account")
    if account.get("agent_email"):
        candidates = [str(account["agent_email"])]
    else:
        candidates += [a["email"] for a in api.pages("/v1/agents")
                       if a["email"] not in candidates]
    for email in candidates:
        try:
            return email, api.get(f"{agent_path(email)}/messages/{mid}")
        except Failure as exc:
            if exc.exit_code != Exit.NOT_FOUND:
                raise
    raise Failure(f"404 not_found: no agent of yours has message {message_id}",
                  Exit.NOT_FOUND)


def safe_name(name: str, index: int) -> str:
    """A file name from a sender's attachment name that stays in the directory."""
    base = os.path.basename(name.replace("\\", "/")).strip().lstrip(".")
    base = "".join(c for c in base if c.isprintable() and c not in "/\0")[:200]
    return base or f"attachment-{index}"


def save_attachments(message: dict[str, Any], directory: Path) -> list[Path]:
    raw_b64 = message.get("raw_message")
    if not raw_b64:
        raise Failure("the message has no content to save attachments from")
    try:
        raw = base64.b64decode(raw_b64, validate=True)
    except (binascii.Error, ValueError):
        raise Failure("the API sent a raw_message that is not base64") from None
    directory.mkdir(parents=True, exist_ok=True)
    saved = []
    for meta, data in mailparts.attachments(raw):
        name = safe_name(str(meta.get("filename") or ""), meta["index"])
        target = directory / name
        stem, suffix, n = target.stem, target.suffix, 1
        while target.exists():  # never overwrite what is there
            target = directory / f"{stem}-{n}{suffix}"
            n += 1
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        saved.append(target)
    return saved


# -- what sending needs -------------------------------------------------------

def body_text(body: str | None, body_file: str | None) -> str:
    if (body is None) == (body_file is None):
        raise click.UsageError("give exactly one of --body and --body-file")
    if body is not None:
        return body
    assert body_file is not None
    try:
        if body_file == "-":
            data = sys.stdin.buffer.read(MAX_BODY + 1)
        else:
            with open(body_file, "rb") as handle:
                data = handle.read(MAX_BODY + 1)
    except OSError as exc:
        raise click.UsageError(f"cannot read {body_file}: {exc.strerror}") from None
    if len(data) > MAX_BODY:
        raise click.UsageError(f"{body_file} is larger than {MAX_BODY} bytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise click.UsageError(f"{body_file} is not UTF-8 text") from None


def attachments(paths: tuple[str, ...]) -> list[dict[str, str]]:
    out = []
    for name in paths:
        path = Path(name)
        try:
            if path.stat().st_size > MAX_ATTACHMENT:
                raise click.UsageError(f"{name} is larger than {MAX_ATTACHMENT} bytes")
            data = path.read_bytes()
        except OSError as exc:
            raise click.UsageError(f"cannot read {name}: {exc.strerror}") from None
        content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        out.append(attachment_json(path.name, content_type, data))
    return out


def report(result: dict[str, Any], as_json: bool) -> None:
    """The send's outcome; a hold exits with its own code."""
    if as_json:
        click.echo(json.dumps(result))
    else:
        line = f"{result.get('message_id')}: {result.get('status')}"
        if result.get("status") == "pending_review":
            line += f" (held for review until {result.get('approval_expires_at')})"
        click.echo(line)
    if result.get("status") == "pending_review":
        sys.exit(int(Exit.HELD))


# -- the commands ----------------------------------------------------------------

@click.command()
@click.argument("agent", required=False, default="")
@click.option("--unread", is_flag=True, help="Only what is unread.")
@click.option("--from", "sender", default="", help="Only mail whose sender contains this.")
@click.option("--limit", type=click.IntRange(1, 10000), default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@api_options
def inbox(api: Api, agent: str, unread: bool, sender: str, limit: int, as_json: bool) -> None:
    """The agent's received mail, newest first (listing marks nothing read)."""
    email = api.default_agent(agent)
    items = list(api.pages(f"{agent_path(email)}/messages", most=limit, limit=min(limit, 100),
                           direction="inbound", read_status="unread" if unread else "all",
                           **{"from": sender}))
    if as_json:
        for item in items:
            click.echo(json.dumps(item))
    elif items:
        click.echo(table(items, INBOX))
    else:
        click.echo(f"no {'unread ' if unread else ''}mail for {email}")


@click.command()
@click.argument("message_id")
@click.option("--agent", default="", help="The agent it belongs to (default: searched).")
@click.option("--save", "save_dir", type=click.Path(file_okay=False), default=None,
              help="Save the attachments into this directory.")
@click.option("--json", "as_json", is_flag=True, help="Print the API's JSON.")
@api_options
def read(api: Api, message_id: str, agent: str, save_dir: str | None, as_json: bool) -> None:
    """One message: headers, authentication verdict, text, attachments (marks it read)."""
    email, m = find_message(api, message_id, agent)
    saved = save_attachments(m, Path(save_dir)) if save_dir else []
    if as_json:
        click.echo(json.dumps({**m, "agent_email": email,
                               **({"saved": [str(p) for p in saved]} if save_dir else {})}))
        return
    lines = [f"{'ID:':<10}{m['id']}", f"{'Agent:':<10}{email}",
             f"{'From:':<10}{m.get('header_from') or '-'}",
             f"{'To:':<10}{', '.join(m.get('to') or []) or '-'}"]
    if m.get("cc"):
        lines.append(f"{'Cc:':<10}{', '.join(m['cc'])}")
    lines += [f"{'Date:':<10}{m.get('created_at')}", f"{'Subject:':<10}{m.get('subject')}",
              f"{'Auth:':<10}{verdict(m)}"]
    for item in m.get("attachments") or []:
        lines.append(f"{'Attached:':<10}[{item['index']}] {item.get('filename') or '-'} "
                     f"({item.get('content_type', '?')}, {item.get('size_bytes')} bytes)")
    lines += [f"{'Saved:':<10}{p}" for p in saved]
    lines += ["", message_text(m)]
    click.echo("\n".join(lines))


@click.command()
@click.argument("message_id")
@click.option("--agent", default="", help="The agent it belongs to (default: searched).")
@click.option("--body", default=None, help="The reply's text.")
@click.option("--body-file", default=None, metavar="FILE", help="The text from a file (- stdin).")
@click.option("--attach", multiple=True, metavar="FILE", help="Attach a file (repeatable).")
@click.option("--all", "reply_all", is_flag=True, help="Also to the original's Cc.")
@click.option("--json", "as_json", is_flag=True, help="Print the API's JSON.")
@api_options
def reply(api: Api, message_id: str, agent: str, body: str | None, body_file: str | None,
          attach: tuple[str, ...], reply_all: bool, as_json: bool) -> None:
    """Reply to a received message; prints sent, accepted or pending_review (exit 5)."""
    text = body_text(body, body_file)
    files = attachments(attach)
    email = api.address(agent) if agent else find_message(api, message_id, "")[0]
    request: dict[str, Any] = {"text": text}
    if files:
        request["attachments"] = files
    if reply_all:
        request["reply_all"] = True
    report(api.request("POST", f"{agent_path(email)}/messages/{path_segment(message_id)}/reply",
                       json=request, idempotent=True), as_json)


@click.command()
@click.option("--from", "sender", default="", metavar="AGENT",
              help="The sending agent (default: the configured one).")
@click.option("--to", multiple=True, required=True, help="A recipient (repeatable).")
@click.option("--cc", multiple=True, help="A Cc recipient (repeatable).")
@click.option("--bcc", multiple=True, help="A Bcc recipient (repeatable).")
@click.option("--subject", required=True)
@click.option("--body", default=None, help="The text.")
@click.option("--body-file", default=None, metavar="FILE", help="The text from a file (- stdin).")
@click.option("--attach", multiple=True, metavar="FILE", help="Attach a file (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="Print the API's JSON.")
@api_options
def send(api: Api, sender: str, to: tuple[str, ...], cc: tuple[str, ...],
         bcc: tuple[str, ...], subject: str, body: str | None, body_file: str | None,
         attach: tuple[str, ...], as_json: bool) -> None:
    """Send a new message; prints sent, accepted or pending_review (exit 5)."""
    text = body_text(body, body_file)
    files = attachments(attach)
    email = api.default_agent(sender)
    request: dict[str, Any] = {"to": list(to), "subject": subject, "text": text}
    for name, values in (("cc", cc), ("bcc", bcc)):
        if values:
            request[name] = list(values)
    if files:
        request["attachments"] = files
    report(api.request("POST", f"{agent_path(email)}/messages", json=request,
                       idempotent=True), as_json)


COMMANDS = (inbox, read, reply, send)
