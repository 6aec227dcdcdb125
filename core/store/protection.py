"""What protection screening keeps: the recipients an agent is known to
have exchanged mail with (first-contact review) and the screening outcome
on a message (hold_reason, protection[], flagged)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg.types.json import Jsonb


def known_addresses(conn: psycopg.Connection, agent_id: str,
                    addresses: Sequence[str], within_days: int | None = None) -> set[str]:
    """Those of ``addresses`` (lowercase) the agent exchanged mail with: an
    owner approved mail to them (trust not expired), they wrote to it, or
    it sent them mail that left (within the last ``within_days``, when set:
    trust that expires)."""
    if not addresses:
        return set()
    rows = conn.execute(
        """SELECT address FROM protection_contacts
            WHERE agent_id = %(agent)s AND address = ANY(%(wanted)s)
              AND (trusted_until IS NULL OR trusted_until > now())
           UNION
           SELECT lower(sender) FROM messages
            WHERE agent_id = %(agent)s AND direction = 'inbound'
              AND lower(sender) = ANY(%(wanted)s) AND status IS NULL
              AND (%(days)s::int IS NULL OR created_at > now() - %(days)s::int * interval '1 day')
           UNION
           SELECT r FROM messages, unnest(to_recipients || cc || bcc) AS r
            WHERE agent_id = %(agent)s AND direction = 'outbound'
              AND status IN ('sent', 'expired_approved') AND delivery_status <> 'submitting'
              AND lower(r) = ANY(%(wanted)s)
              AND (%(days)s::int IS NULL
                   OR created_at > now() - %(days)s::int * interval '1 day')""",
        {"agent": agent_id, "wanted": list(addresses), "days": within_days}).fetchall()
    return {str(row["address"]).lower() for row in rows}


def trust(conn: psycopg.Connection, agent_id: str, addresses: Sequence[str],
          trust_days: int | None) -> None:
    """Remember ``addresses`` as known to the agent (an owner approved mail
    to them), for ``trust_days`` or for good."""
    conn.execute(
        """INSERT INTO protection_contacts (agent_id, address, trusted_until)
           SELECT %(agent)s, lower(a), CASE WHEN %(days)s::int IS NULL THEN NULL
                                            ELSE now() + %(days)s::int * interval '1 day' END
             FROM unnest(%(addresses)s::text[]) AS a
           ON CONFLICT (agent_id, address) DO UPDATE SET trusted_until = EXCLUDED.trusted_until""",
        {"agent": agent_id, "addresses": list(addresses), "days": trust_days})


def set_outcome(conn: psycopg.Connection, message_id: str, *,
                hold_reason: dict[str, Any] | None,
                protection: list[dict[str, Any]] | None) -> None:
    """A held outbound message's hold_reason and protection[]; one set
    already (a retry by Postfix) is kept."""
    conn.execute(
        """UPDATE messages SET hold_reason = COALESCE(hold_reason, %s),
                               protection = COALESCE(protection, %s)
            WHERE id = %s""",
        (Jsonb(hold_reason) if hold_reason is not None else None,
         Jsonb(protection) if protection else None, message_id))
