"""Dashboard → Agents: each agent's mode and HITL state; per agent the HITL
settings (core/accounts/registration.update_agent, as the APIs change
them), its protection settings and outbound pause (core/accounts/protection,
as PUT /v1/agents/{email}/protection and /brakes save them), its recent
activity (outbound mail, flagged received mail) and its inbox, read-only:
looking at a message here leaves it unread for the agent.
"""

from __future__ import annotations

import base64
import re
from typing import Any

import falcon

from e2a.api.dashboard import web
from e2a.api.dashboard.pending import download, html_frame
from e2a.core.accounts import protection as settings
from e2a.core.accounts import registration as accounts
from e2a.core.outbound import holds
from e2a.core.protection import config as protection
from e2a.core.protection import gates
from e2a.core.protection.findings import SENSITIVITIES
from e2a.core.store import agents as agent_store
from e2a.core.store import brakes as brake_store
from e2a.core.store import messages as message_store

ACTIVITY = 25
INBOX_PAGE = 50
MAX_TTL_MINUTES = accounts.HITL_MAX_TTL // 60
_STATUS_WORDS = {"pending_approval": "held", "sent": "sent", "rejected": "rejected",
                 "expired_approved": "expired, sent", "expired_rejected": "expired, discarded"}


def ttl_minutes(seconds: int) -> int:
    return max(1, -(-seconds // 60))


def protection_state(agent: dict[str, Any], paused: bool) -> str:
    """One line for the agents list: what screens the agent's mail."""
    config = protection.of_agent(agent)
    parts = []
    scans = [f"{d.sensitivity} {word}" for d, word in ((config.inbound, "in"),
                                                        (config.outbound, "out"))
             if d.sensitivity != "off"]
    if scans:
        parts.append("scan: " + " / ".join(scans))
    gated = [f"{word} {d.gate.policy}→{d.gate.action}"
             for d, word in ((config.inbound, "in"), (config.outbound, "out"))
             if d.gate.policy != "open" and not (word == "out" and config.hold_all)]
    if gated:
        parts.append("gate: " + " / ".join(gated))
    if config.first_contact.enabled:
        parts.append("first contact")
    if paused:
        parts.append("paused")
    return ", ".join(parts) or "off"


_ALLOWLIST_SPLIT = re.compile(r"[\s,;]+")


def _direction_body(fields: dict[str, str], name: str) -> dict[str, Any]:
    entries = [e for e in _ALLOWLIST_SPLIT.split(fields.get(f"{name}_allowlist", "")) if e]
    return {"gate": {"policy": fields.get(f"{name}_policy", "open"),
                     "action": fields.get(f"{name}_action", "flag"), "allowlist": entries},
            "scan": {"sensitivity": fields.get(f"{name}_sensitivity", "off")}}


def _whole(text: str, what: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        raise protection.ConfigError(f"{what} must be a whole number") from None


def protection_request(fields: dict[str, str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The form as the API's requests (ProtectionConfigRequest, first
    contact), for core/accounts/protection to check. A checkbox not sent is off."""
    body = {"inbound": _direction_body(fields, "inbound"),
            "outbound": _direction_body(fields, "outbound"),
            "holds": {"ttl_seconds": _whole(fields.get("ttl_seconds", ""),
                                            "The hold time (seconds)"),
                      "on_expiry": fields.get("on_expiry", ""),
                      "suppress_notifications": fields.get("suppress_notifications") == "on"}}
    trust = fields.get("trust_days", "").strip()
    first = {"enabled": fields.get("first_contact_enabled") == "on",
             "trust_days": _whole(trust, "Trust days") if trust else None}
    return body, first


class _AgentPage(web.Page):
    def agent(self, user: dict[str, str], agent_id: str) -> dict[str, Any]:
        """The user's live agent with this id; another's, or none, is a 404."""
        with self._pool.connection() as conn:
            row = agent_store.agent_by_id(conn, agent_id)
        if row is None or row["user_id"] != user["user_id"] or row.get("deleted_at"):
            web.not_found("agent")
        return row


class AgentList(web.Page):
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        user = self.user(req)
        with self._pool.connection() as conn:
            agents = agent_store.agents_for_user(conn, user["user_id"])
            paused = brake_store.paused_agent_ids(conn, user["user_id"])
        self.render(req, resp, "dashboard/agents.html", section="agents", agents=agents,
                    ttl_minutes=ttl_minutes,
                    states={a["id"]: protection_state(a, a["id"] in paused) for a in agents})


class AgentDetail(_AgentPage):
    def on_get(self, req: falcon.Request, resp: falcon.Response, agent_id: str) -> None:
        self.show(req, resp, self.agent(self.user(req), agent_id))

    def show(self, req: falcon.Request, resp: falcon.Response, agent: dict[str, Any],
             status: int = 200, error: str = "",
             values: dict[str, str] | None = None) -> None:
        """``values``: a refused protection form, shown again as it was sent."""
        with self._pool.connection() as conn:
            activity = message_store.list_for_agent(
                conn, agent["id"], message_store.MessageFilter(direction="outbound"),
                ascending=False, limit=ACTIVITY, after=None)
            flagged = message_store.list_for_agent(
                conn, agent["id"], message_store.MessageFilter(direction="inbound", flagged=True),
                ascending=False, limit=ACTIVITY, after=None)
            brake = brake_store.settings(conn, agent["id"])
        self.render(req, resp, "dashboard/agent.html", status=status, section="agents",
                    agent=agent, activity=activity, flagged=flagged,
                    status_words=_STATUS_WORDS,
                    ttl=ttl_minutes(agent["hitl_ttl_seconds"]), max_ttl=MAX_TTL_MINUTES,
                    error=error, saved=req.get_param("saved") == "1",
                    form=values or protection_form(protection.of_agent(agent)),
                    paused=brake is not None and brake["paused_at"] is not None,
                    paused_reason=brake["paused_reason"] if brake else "",
                    policies=gates.POLICIES, gate_actions=gates.GATE_ACTIONS,
                    sensitivities=SENSITIVITIES, on_expiry=protection.ON_EXPIRY,
                    max_hold=protection.MAX_TTL, max_trust=protection.MAX_TRUST_DAYS)


class AgentHitl(AgentDetail):
    """The HITL switch, TTL and expiry action. A TTL not changed in the form
    stays as stored (the form shows whole minutes)."""

    def on_get(self, req: falcon.Request, resp: falcon.Response, agent_id: str) -> None:
        raise web.Redirect(web.url(f"/agents/{agent_id}"))

    def on_post(self, req: falcon.Request, resp: falcon.Response, agent_id: str) -> None:
        user = self.user(req)
        fields = self.checked_form(req)
        agent = self.agent(user, agent_id)
        changes: dict[str, Any] = {"hitl_enabled": fields.get("hitl_enabled") == "on",
                                   "hitl_expiration_action": fields.get("expiration_action")}
        try:
            minutes = fields.get("ttl_minutes", "")
            if minutes and int(minutes) != ttl_minutes(agent["hitl_ttl_seconds"]):
                if not 1 <= int(minutes) <= MAX_TTL_MINUTES:
                    raise accounts.AccountError(
                        f"the approval window is 1 to {MAX_TTL_MINUTES} minutes")
                changes["hitl_ttl_seconds"] = int(minutes) * 60
            with self._pool.connection() as conn, conn.transaction():
                accounts.update_agent(conn, self._cfg, agent, changes)
        except ValueError:
            self.show(req, resp, agent, 422, "The approval window must be a whole number "
                                             "of minutes.")
            return
        except accounts.AccountError as exc:
            self.show(req, resp, agent, 422, str(exc))
            return
        web.redirect(resp, web.url(f"/agents/{agent_id}", saved="1"))


def protection_form(config: protection.Protection) -> dict[str, str]:
    """The stored settings as the form's field values."""
    values = {"ttl_seconds": str(config.ttl_seconds), "on_expiry": config.on_expiry,
              "suppress_notifications": "on" if config.suppress_notifications else "",
              "first_contact_enabled": "on" if config.first_contact.enabled else "",
              "trust_days": str(config.first_contact.trust_days or "")}
    for name, direction in (("inbound", config.inbound), ("outbound", config.outbound)):
        values.update({f"{name}_policy": direction.gate.policy,
                       f"{name}_action": direction.gate.action,
                       f"{name}_allowlist": "\n".join(direction.gate.allowlist),
                       f"{name}_sensitivity": direction.sensitivity})
    return values


class AgentProtection(AgentDetail):
    """The protection form, saved wholesale like PUT …/protection (and its
    first-contact part like PUT …/protection/first-contact), in one
    transaction: a refusal shows the form again and changes nothing."""

    max_body_bytes = 256 * 1024  # two allowlists of up to gates.MAX_ALLOWLIST entries

    def on_get(self, req: falcon.Request, resp: falcon.Response, agent_id: str) -> None:
        raise web.Redirect(web.url(f"/agents/{agent_id}"))

    def on_post(self, req: falcon.Request, resp: falcon.Response, agent_id: str) -> None:
        user = self.user(req)
        fields = self.checked_form(req)
        agent = self.agent(user, agent_id)
        try:
            body, first = protection_request(fields)
            with self._pool.connection() as conn, conn.transaction():
                settings.save(conn, agent, body, first)
        except protection.ConfigError as exc:
            self.show(req, resp, agent, 422, f"Not saved: {exc}.", values=fields)
            return
        web.redirect(resp, web.url(f"/agents/{agent_id}", saved="1"))


class AgentPause(AgentDetail):
    """The kill switch of the agent's outbound mail (its brake overrides stay)."""

    def on_get(self, req: falcon.Request, resp: falcon.Response, agent_id: str) -> None:
        raise web.Redirect(web.url(f"/agents/{agent_id}"))

    def on_post(self, req: falcon.Request, resp: falcon.Response, agent_id: str) -> None:
        user = self.user(req)
        fields = self.checked_form(req)
        agent = self.agent(user, agent_id)
        with self._pool.connection() as conn, conn.transaction():
            settings.set_brakes(conn, agent, None, fields.get("paused") == "on")
        web.redirect(resp, web.url(f"/agents/{agent_id}", saved="1"))


class AgentInbox(_AgentPage):
    def on_get(self, req: falcon.Request, resp: falcon.Response, agent_id: str) -> None:
        agent = self.agent(self.user(req), agent_id)
        with self._pool.connection() as conn:
            rows = message_store.list_for_agent(
                conn, agent["id"], message_store.MessageFilter(direction="inbound"),
                ascending=False, limit=INBOX_PAGE, after=None)
        self.render(req, resp, "dashboard/inbox.html", section="agents", agent=agent,
                    messages=rows)


class _InboxMessagePage(_AgentPage):
    def message(self, req: falcon.Request, agent_id: str,
                message_id: str) -> tuple[dict[str, Any], dict[str, Any], holds.Content]:
        agent = self.agent(self.user(req), agent_id)
        with self._pool.connection() as conn:
            row = message_store.peek_for_agent(conn, agent["id"], message_id)
        if row is None or row["direction"] != "inbound" or row["deleted_at"] is not None:
            web.not_found("message")
        content = holds.extract(bytes(row["raw_message"] or b""))
        return agent, row, content


class InboxMessage(_InboxMessagePage):
    def on_get(self, req: falcon.Request, resp: falcon.Response, agent_id: str,
               id: str) -> None:
        agent, row, content = self.message(req, agent_id, id)
        files = [{"index": n, "filename": item["filename"] or f"attachment-{n}",
                  "content_type": item["content_type"]}
                 for n, item in enumerate(content.attachments)]
        self.render(req, resp, "dashboard/message.html", section="agents", agent=agent,
                    message=row, body_text=content.body_text,
                    has_html=bool(content.body_html), attachments=files)


class InboxHtml(_InboxMessagePage):
    def on_get(self, req: falcon.Request, resp: falcon.Response, agent_id: str,
               id: str) -> None:
        html_frame(resp, self.message(req, agent_id, id)[2].body_html)


class InboxAttachment(_InboxMessagePage):
    def on_get(self, req: falcon.Request, resp: falcon.Response, agent_id: str, id: str,
               index: int) -> None:
        items = self.message(req, agent_id, id)[2].attachments
        if not 0 <= index < len(items):
            web.not_found("attachment")
        download(resp, items[index]["filename"] or f"attachment-{index}",
                 base64.b64decode(items[index]["data"]))
