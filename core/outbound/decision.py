"""Outbound mail: the one decision whether a message leaves now."""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any


class Decision(enum.Enum):
    PASS = "pass"  # sign and reinject now  # noqa: S105 (not a password)
    HOLD = "hold"  # keep as pending_approval until a person decides (core/outbound/holds.py)


@dataclass(frozen=True)
class Candidate:
    mail_from: str  # envelope sender, "" for the null sender
    recipients: Sequence[str]
    message: bytes  # exactly as submitted
    # The sending agent's row (core/store/agents shape); None when the
    # sender is no agent of ours (a host's own mail): nothing to hold it for.
    agent: Mapping[str, Any] | None = None
    # The status of the message's outbound row so far ("sent" when it has
    # none yet, or it never waited for anyone).
    status: str = "sent"


def decide(mail: Candidate) -> Decision:
    """Whether ``mail`` leaves now. The single hold decision point.

    Every outbound path reaches it: the content filter calls it for each
    message Postfix hands over (API sends and plain SMTP or sendmail
    submissions alike), and the API calls it to answer in step with what the
    filter will do. Human-in-the-loop adds a HOLD outcome here: when the
    sending agent (``mail.agent``: the agent of the API row, or of the
    envelope sender or From of mail submitted otherwise) has
    ``hitl_enabled``, the message is held as ``pending_approval`` instead of
    leaving. A message that was held already stays held whatever the agent's
    setting is now: only a person's approval (release) sends it, and one
    rejected or expired meanwhile never leaves. Mail of no agent of ours is
    never held.
    """
    if mail.agent is not None and mail.agent.get("hitl_enabled"):
        return Decision.HOLD
    if mail.status != "sent":
        return Decision.HOLD
    return Decision.PASS
