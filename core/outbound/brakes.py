"""Loop and abuse brakes on an agent's outbound mail.

An agent is a program: a bug or a prompt can make it mail thousands of
people, answer an autoresponder forever, or talk to another agent without
end. Each send asks ``judge`` (the API before it records a send, the content
filter for mail submitted by SMTP or sendmail), which counts it and says:

- ``pass``;
- ``throttle`` (retry later: 429 rate_limited with Retry-After at the API,
  451 4.7.1 at the filter) over ``sends_per_hour``, ``sends_per_day`` or
  ``new_recipients_per_hour`` (addresses it never sent to), or while the
  agent's hard-bounce rate today is over ``bounce_rate_max``;
- ``pause``: the agent's attempts this hour passed ``pause_sends_per_hour``
  (a loop that keeps pushing against the throttle): its outbound mail stops
  until the owner resumes it (PUT /v1/agents/{email}/brakes), the owner is
  mailed, and every send meanwhile is refused as ``paused`` (403 at the API,
  550 5.7.1 at the filter). The owner can pause an agent the same way;
- ``hold`` (for a person, through the one hold decision) or ``refuse`` for
  an answer to auto-generated mail (``auto_reply_action``), and ``hold`` for
  the turn past ``thread_turns_per_hour`` between agents on one conversation.

Defaults come from the [brakes] configuration, each overridable per agent.
Counting is one statement per send (core/store/brakes.count_send), in
Postgres so every host and process shares it. Every decision is counted in
``e2a_brake_decisions`` and logged; every decision but ``pass`` writes an
``agent.brake_applied`` event with its reason, once per run for the ones a
looping agent repeats (a throttle at the send that crossed the limit, a pause
when it begins): the event log must not fill at the loop's speed.
"""

from __future__ import annotations

import enum
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields, replace
from email.message import EmailMessage
from typing import Any

import psycopg

from e2a.core.config import Config
from e2a.core.ids import new_id
from e2a.core.mail import headers
from e2a.core.outbound import notification, suppressions
from e2a.core.protection import autoreply
from e2a.core.runtime import metrics
from e2a.core.store import brakes as store
from e2a.core.store import events as event_store
from e2a.core.store import users as user_store
from e2a.core.webhooks import eventtypes

log = logging.getLogger("e2a.brakes")

AUTO_REPLY_ACTIONS = ("hold", "refuse", "allow")
# The label inbound auto-generated mail carries, so agents can skip it and
# their answers to it meet the auto-reply brake.
AUTO_LABEL = "auto-generated"


@dataclass(frozen=True)
class Settings:
    sends_per_hour: int
    sends_per_day: int
    pause_sends_per_hour: int
    new_recipients_per_hour: int
    bounce_rate_max: float
    bounce_min_sends: int
    auto_reply_action: str
    thread_turns_per_hour: int

    @classmethod
    def defaults(cls, cfg: Config) -> Settings:
        return cls(**{f.name: cfg.get(f"brakes.{f.name}") for f in fields(cls)})

    def with_overrides(self, overrides: Mapping[str, Any] | None) -> Settings:
        known = {f.name for f in fields(self)}
        return replace(self, **{k: v for k, v in (overrides or {}).items() if k in known})

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class OverrideError(ValueError):
    def __init__(self, name: str, message: str) -> None:
        super().__init__(f"{name}: {message}")
        self.name = name


def checked_overrides(given: Mapping[str, Any]) -> dict[str, Any]:
    """Per-agent overrides as a client gives them, checked; OverrideError names the bad one."""
    out: dict[str, Any] = {}
    types = {f.name: f.type for f in fields(Settings)}
    for name, value in given.items():
        if name not in types:
            raise OverrideError(name, "not a brake setting")
        if name == "auto_reply_action":
            if value not in AUTO_REPLY_ACTIONS:
                raise OverrideError(name, f"one of {', '.join(AUTO_REPLY_ACTIONS)}")
        elif name == "bounce_rate_max":
            if isinstance(value, bool) or not isinstance(value, int | float) \
                    or not 0 < value <= 1:
                raise OverrideError(name, "a number above 0, at most 1")
            value = float(value)
        elif isinstance(value, bool) or not isinstance(value, int) or value < 0 \
                or value > 10_000_000:
            raise OverrideError(name, "a whole number, 0 (off) or more")
        out[name] = value
    return out


class Action(enum.Enum):
    PASS = "pass"  # noqa: S105 (not a password)
    THROTTLE = "throttle"
    PAUSED = "paused"
    HOLD = "hold"
    REFUSE = "refuse"


@dataclass(frozen=True)
class Verdict:
    action: Action
    brake: str = ""  # which brake decided: hourly | daily | bounce_rate | paused | ...
    reason: str = ""
    retry_after: float = 0.0  # throttle: seconds until it may try again
    # The first of its kind in a run: a throttle at the send that crossed
    # the limit, a pause when it begins. Only these write an event, so an
    # agent hammering a closed door fills no event log (the metric counts all).
    first: bool = True

    @property
    def retry_after_seconds(self) -> int:
        return max(1, math.ceil(self.retry_after))

    @property
    def smtp_reply(self) -> str:
        """The content filter's answer when the message does not pass."""
        if self.action is Action.THROTTLE:
            return f"451 4.7.1 {self.reason}; try again in {self.retry_after_seconds} s"
        return f"550 5.7.1 {self.reason}"


PASS = Verdict(Action.PASS)
# What the message is refused with, now or later (THROTTLE: 4xx, Postfix retries).
REFUSALS = frozenset({Action.THROTTLE, Action.PAUSED, Action.REFUSE})


@dataclass(frozen=True)
class Send:
    """What the brakes know of one outbound message."""

    recipients: Sequence[str]
    conversation_id: str = ""
    in_reply_to: str = ""  # the Message-ID it answers, <...>
    message_id: str = ""


def judge(conn: psycopg.Connection, cfg: Config, agent: Mapping[str, Any], send: Send) -> Verdict:
    """Count ``send`` against ``agent``'s brakes and decide. Writes the
    decision's event (and a pause) in its own short transaction; the
    owner's mail about a pause goes after it."""
    with conn.transaction():
        judged = counted(conn, cfg, agent, send)
    judged.tell_owner(conn, cfg, agent)
    return judged.verdict


@dataclass(frozen=True)
class Judged:
    verdict: Verdict
    paused_now: bool  # this send paused the agent: its owner is mailed once that committed

    def tell_owner(self, conn: psycopg.Connection, cfg: Config,
                   agent: Mapping[str, Any]) -> None:
        """After the commit: the mail must not go for a pause rolled back."""
        if self.paused_now:
            notify_pause(conn, cfg, agent, self.verdict.reason)


def counted(conn: psycopg.Connection, cfg: Config, agent: Mapping[str, Any],
            send: Send) -> Judged:
    """``judge`` in the caller's transaction (the API's, with its other
    checks); the caller commits it, then calls ``tell_owner``."""
    row = store.count_send(conn, agent["id"], conversation_id=send.conversation_id,
                           recipients=list(send.recipients), in_reply_to=send.in_reply_to,
                           auto_label=AUTO_LABEL,
                           new_limit=cfg.brakes.new_recipients_per_hour)
    settings = Settings.defaults(cfg).with_overrides(row["overrides"])
    verdict = decide(settings, row)
    paused_now = False
    if verdict.action is Action.PAUSED and row["paused_at"] is None:
        paused_now = store.pause(conn, agent["id"], verdict.reason)
    if verdict.action is not Action.PASS:
        record(conn, agent, verdict, send.message_id)
    else:
        metrics.brake_decisions.labels(brake="none", action="pass").inc()
    return Judged(verdict, paused_now)


def decide(settings: Settings, row: Mapping[str, Any]) -> Verdict:
    """The decision on counts already taken (``count_send``'s row); no I/O."""
    if row["paused_at"] is not None:
        return Verdict(Action.PAUSED, "paused", "the agent's outbound mail is paused"
                       + (f" ({row['paused_reason']})" if row["paused_reason"] else "")
                       + "; its owner can resume it", first=False)
    if settings.pause_sends_per_hour and row["hour"] > settings.pause_sends_per_hour:
        return Verdict(Action.PAUSED, "paused",
                       f"more than {settings.pause_sends_per_hour} send attempts in an hour")
    if settings.sends_per_hour and row["hour"] > settings.sends_per_hour:
        return Verdict(Action.THROTTLE, "hourly",
                       f"at most {settings.sends_per_hour} messages per hour",
                       row["hour_retry"], first=row["hour"] == settings.sends_per_hour + 1)
    if settings.sends_per_day and row["day"] > settings.sends_per_day:
        return Verdict(Action.THROTTLE, "daily",
                       f"at most {settings.sends_per_day} messages per day", row["day_retry"],
                       first=row["day"] == settings.sends_per_day + 1)
    if settings.new_recipients_per_hour and row["new_recipients"] \
            and row["new_hour"] > settings.new_recipients_per_hour:
        return Verdict(Action.THROTTLE, "new_recipients",
                       f"at most {settings.new_recipients_per_hour} new recipients per hour",
                       row["new_retry"], first=row["new_hour"] - row["new_recipients"]
                       <= settings.new_recipients_per_hour)
    sent = row["day"] - 1
    if sent >= settings.bounce_min_sends and row["bounces"] / sent > settings.bounce_rate_max:
        # Each one writes its event: the bounces come in apart from the
        # sends, so no count says which send was the first over the rate.
        # The attempts count toward the hour all the same, so at most
        # sends_per_hour of these an hour before the hourly throttle.
        return Verdict(Action.THROTTLE, "bounce_rate",
                       f"{row['bounces']} of {sent} messages today bounced (over "
                       f"{settings.bounce_rate_max:.0%})", row["day_retry"])
    if row["answers_auto"] and settings.auto_reply_action != "allow":
        action = Action.HOLD if settings.auto_reply_action == "hold" else Action.REFUSE
        return Verdict(action, "auto_reply", "an answer to auto-generated mail")
    if settings.thread_turns_per_hour and row["thread_turns"] is not None \
            and row["thread_turns"] > settings.thread_turns_per_hour:
        return Verdict(Action.HOLD, "thread_turns",
                       f"more than {settings.thread_turns_per_hour} messages between agents "
                       "on this conversation in an hour")
    return PASS


def record(conn: psycopg.Connection, agent: Mapping[str, Any], verdict: Verdict,
           message_id: str = "") -> None:
    """Count ``verdict``, and write its ``agent.brake_applied`` event with
    its reason when it is the first of its run."""
    metrics.brake_decisions.labels(brake=verdict.brake, action=verdict.action.value).inc()
    log.info("brake: %s (%s)", verdict.action.value, verdict.reason,
             extra={"agent": agent["email"], "brake": verdict.brake})
    if not verdict.first:
        return
    data = {"agent_id": agent["id"], "decision": verdict.action.value, "brake": verdict.brake,
            "reason": verdict.reason}
    if message_id:
        data["message_id"] = message_id
    event_store.insert_event(conn, new_id("evt"), agent["user_id"],
                             eventtypes.AGENT_BRAKE_APPLIED, data, agent_id=agent["id"])


def notify_pause(conn: psycopg.Connection, cfg: Config, agent: Mapping[str, Any],
                 reason: str) -> None:
    """Mail the owner that ``agent`` was paused; best effort (the event says it too)."""
    owner = user_store.user_by_id(conn, agent["user_id"])
    if owner is None:
        return
    lines = [f"Your agent {agent['email']} tried to send too much mail ({reason}).",
             "Its outbound mail is paused: nothing it sends leaves until you resume it",
             "with PUT /v1/agents/{email}/brakes and {\"paused\": false}."]
    raw = notification.notice(cfg, owner["email"], f"Agent paused: {agent['email']}", lines)
    try:
        notification.send(conn, cfg, {"id": agent["id"], "owner_email": owner["email"]}, raw)
    except Exception as exc:  # the pause stands; only the mail is lost
        log.warning("pause notification not sent: %s", exc, extra={"agent": agent["email"]})


def at_filter(conn: psycopg.Connection, cfg: Config, agent: Mapping[str, Any],
              recipients: Sequence[str], msg: EmailMessage, *, message_id: str,
              counted: bool) -> Verdict:
    """The content filter's one question for an agent's message: suppressed
    recipients (refused) and, unless the API ``counted`` it already, the
    brakes. A refusal here is a REFUSE verdict with its SMTP reply."""
    try:
        suppressions.check(conn, agent, recipients)
    except suppressions.Suppressed as exc:
        return Verdict(Action.REFUSE, "suppressed", exc.smtp_reply.split(" ", 2)[2])
    if counted:
        return PASS
    in_reply_to = (headers.message_ids(headers.header_value(msg, "In-Reply-To")) or [""])[0]
    return judge(conn, cfg, agent, Send(
        recipients, conversation_id=agent.get("thread_conversation_id") or "",
        in_reply_to=in_reply_to, message_id=message_id))


def hard_bounced(conn: psycopg.Connection, message: Mapping[str, Any],
                 failed: Sequence[tuple[str, str]]) -> None:
    """A DSN reported ``failed`` (recipient, reason) for the outbound
    ``message`` (user_id, agent_id, id): each recipient is suppressed for
    the account (with its domain.suppression_added event) and counts once
    toward the agent's bounce rate. In the caller's transaction."""
    for recipient, reason in failed:
        suppressions.add_for_account(conn, message["user_id"], recipient, source="bounce",
                                     reason=reason, message_id=message["id"])
    if failed:
        store.count_bounce(conn, message["agent_id"])


def inbound_labels(msg: EmailMessage, mail_from: str | None) -> list[str]:
    """The labels an inbound message gets from the brakes: AUTO_LABEL when
    it is auto-generated (core/protection/autoreply.classify)."""
    auto = autoreply.classify(msg, mail_from)
    if auto is None:
        return []
    metrics.brake_decisions.labels(brake="auto_generated", action="label").inc()
    return [AUTO_LABEL]
