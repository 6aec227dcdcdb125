"""Timestamps on the wire: RFC 3339, UTC, to the second, with Z.

No fraction: older Python clients of e2a cannot parse one (CONTRACT.md)."""

from __future__ import annotations

from datetime import UTC, datetime


def rfc3339(moment: datetime | None) -> str:
    if moment is None:
        return ""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_rfc3339(value: str) -> datetime:
    """Accepts what we emit and common variants (fractions, offsets); raises ValueError."""
    moment = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    if moment.tzinfo is None:
        raise ValueError("timestamp needs a time zone (Z or +hh:mm)")
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        # 0001-01-01T00:00:00+01:00 is a valid timestamp of no UTC year.
        raise ValueError("timestamp out of range") from None
