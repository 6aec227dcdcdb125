"""Outbound mail: the one decision whether a message leaves now."""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any


class Decision(enum.Enum):
    PASS = "pass"  # sign and reinject now  # noqa: S105 (not a password)


@dataclass(frozen=True)
class Outgoing:
    mail_from: str  # envelope sender, "" for the null sender
    recipients: Sequence[str]
    message: bytes  # exactly as submitted
    # The sending agent's row (core/store/agents shape); None when the
    # sender is no agent of ours (a host's own mail): nothing to hold it for.
    agent: Mapping[str, Any] | None = None


def decide(mail: Outgoing) -> Decision:
    """Whether ``mail`` leaves now. The single hold decision point.

    Every outbound path reaches it: the content filter calls it for each
    message Postfix hands over (API sends and plain SMTP or sendmail
    submissions alike), and the API calls it to answer in step with what the
    filter will do. Human-in-the-loop adds a HOLD outcome here: when the
    sending agent (``mail.agent``: the agent of the API row, or of the
    envelope sender or From of mail submitted otherwise) has
    ``hitl_enabled``, the message is held as ``pending_approval`` instead of
    leaving. Until then every message passes.
    """
    return Decision.PASS
