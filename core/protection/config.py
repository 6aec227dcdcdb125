"""An agent's protection settings: the defaults, the checked request, the
view, and how the legacy ``hitl_*`` fields read and write them.

Stored as ``agents.protection`` (jsonb; ``{}`` is every default) next to the
legacy HITL columns, which are the ``holds`` part: ``hitl_ttl_seconds`` is
``holds.ttl_seconds`` and ``hitl_expiration_action`` ``holds.on_expiry``.
``hitl_enabled`` (hold every outbound message) is the outbound gate that
admits nobody and reviews: ``{policy: allowlist, action: review,
allowlist: []}``. Either API sets it, either API sees it.

Pure: no I/O. The API (``PUT …/protection``, the legacy agent update), the
milter and the content filter read an agent row through ``of_agent``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from e2a.core.protection import gates
from e2a.core.protection.findings import SENSITIVITIES

DEFAULT_TTL = 604800
MAX_TTL = 604800
ON_EXPIRY = ("approve", "reject")
MAX_TRUST_DAYS = 3650
# hitl_enabled as an outbound gate: every recipient refused, to review.
HOLD_ALL = gates.Gate("allowlist", "review", ())


class ConfigError(ValueError):
    """A request that cannot be a protection config (a 400)."""


class UnknownField(ConfigError):
    """A field the closed request schema does not have (a 422)."""


@dataclass(frozen=True)
class Direction:
    gate: gates.Gate = field(default_factory=gates.Gate)
    sensitivity: str = "off"

    @property
    def enabled(self) -> bool:
        return self.gate.policy != "open" or self.sensitivity != "off"


@dataclass(frozen=True)
class FirstContact:
    """Hold outbound mail to an address the agent never exchanged mail
    with; approving it trusts the address (for ``trust_days``, or for good)."""

    enabled: bool = False
    trust_days: int | None = None


@dataclass(frozen=True)
class Protection:
    inbound: Direction = field(default_factory=Direction)
    outbound: Direction = field(default_factory=Direction)
    ttl_seconds: int = DEFAULT_TTL
    on_expiry: str = "reject"
    suppress_notifications: bool = False
    first_contact: FirstContact = field(default_factory=FirstContact)
    hold_all: bool = False  # the legacy hitl_enabled

    @property
    def outbound_screened(self) -> bool:
        """Whether an outbound message may be held or refused by screening:
        the reference's "an outbound gate review or an enabled scan turns on
        HITL holds"."""
        return self.hold_all or self.outbound.enabled or self.first_contact.enabled


def _direction(stored: Any) -> Direction:
    stored = stored if isinstance(stored, Mapping) else {}
    gate_cfg = stored.get("gate") if isinstance(stored.get("gate"), Mapping) else {}
    scan = stored.get("scan") if isinstance(stored.get("scan"), Mapping) else {}
    try:
        gate = gates.Gate.from_config(dict(gate_cfg))
        gates.validate(gate)
    except gates.GateConfigError:
        gate = gates.Gate()  # stored by an older version: the safe default
    sensitivity = scan.get("sensitivity", "off")
    return Direction(gate, sensitivity if sensitivity in SENSITIVITIES else "off")


def of_agent(agent: Mapping[str, Any]) -> Protection:
    """The settings of an agent row (core/store/agents shape)."""
    stored = agent.get("protection") or {}
    first = stored.get("first_contact") if isinstance(stored.get("first_contact"),
                                                      Mapping) else {}
    trust = first.get("trust_days")
    hold_all = bool(agent.get("hitl_enabled"))
    outbound = _direction(stored.get("outbound"))
    if hold_all:
        outbound = replace(outbound, gate=HOLD_ALL)
    return Protection(
        inbound=_direction(stored.get("inbound")), outbound=outbound,
        ttl_seconds=int(agent.get("hitl_ttl_seconds") or DEFAULT_TTL),
        on_expiry=str(agent.get("hitl_expiration_action") or "reject"),
        suppress_notifications=bool(stored.get("suppress_notifications", False)),
        first_contact=FirstContact(bool(first.get("enabled", False)),
                                   trust if isinstance(trust, int) else None),
        hold_all=hold_all)


def _object(value: Any, where: str, keys: tuple[str, ...]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(f"{where} must be an object")
    unknown = sorted(set(value) - set(keys))
    if unknown:
        raise UnknownField(f"{where}: unknown field {unknown[0]!r}")
    return value


def _parse_direction(value: Any, where: str) -> Direction:
    body = _object(value, where, ("gate", "scan"))
    gate_body = _object(body.get("gate", {}), f"{where}.gate", ("policy", "action", "allowlist"))
    scan_body = _object(body.get("scan", {}), f"{where}.scan", ("sensitivity",))
    allowlist = gate_body.get("allowlist")
    if allowlist is None:
        allowlist = []
    if not isinstance(allowlist, list):
        raise ConfigError(f"{where}.gate.allowlist must be a list")
    policy, action = gate_body.get("policy", "open"), gate_body.get("action", "flag")
    if not isinstance(policy, str) or not isinstance(action, str):
        raise ConfigError(f"{where}.gate policy and action must be strings")
    try:
        gate = gates.Gate(policy, action, tuple(gates.normalize_allowlist(allowlist)))
        gates.validate(gate)
    except gates.GateConfigError as exc:
        raise ConfigError(f"{where}.gate: {exc}") from None
    sensitivity = scan_body.get("sensitivity", "off")
    if sensitivity not in SENSITIVITIES:
        raise ConfigError(f"{where}.scan.sensitivity must be one of {', '.join(SENSITIVITIES)}")
    return Direction(gate, sensitivity)


def parse_request(body: Any, current: Protection) -> Protection:
    """A ProtectionConfigRequest, wholesale: what it leaves out takes its
    default (first-contact review, an e2a extension, keeps its own setting).
    Raises ConfigError."""
    body = _object(body, "body", ("inbound", "outbound", "holds"))
    for name in ("inbound", "outbound", "holds"):
        if name not in body:
            raise ConfigError(f"{name} is required")
    holds = _object(body["holds"], "holds", ("ttl_seconds", "on_expiry",
                                             "suppress_notifications"))
    ttl = holds.get("ttl_seconds", DEFAULT_TTL)
    if isinstance(ttl, bool) or not isinstance(ttl, int) or not 1 <= ttl <= MAX_TTL:
        raise ConfigError(f"holds.ttl_seconds must be an integer from 1 to {MAX_TTL}")
    on_expiry = holds.get("on_expiry", "reject")
    if on_expiry not in ON_EXPIRY:
        raise ConfigError("holds.on_expiry must be approve or reject")
    suppress = holds.get("suppress_notifications", False)
    if not isinstance(suppress, bool):
        raise ConfigError("holds.suppress_notifications must be true or false")
    outbound = _parse_direction(body["outbound"], "outbound")
    return Protection(
        inbound=_parse_direction(body["inbound"], "inbound"), outbound=outbound,
        ttl_seconds=ttl, on_expiry=on_expiry, suppress_notifications=suppress,
        first_contact=current.first_contact, hold_all=outbound.gate == HOLD_ALL)


def parse_first_contact(body: Any) -> FirstContact:
    body = _object(body, "body", ("enabled", "trust_days"))
    enabled = body.get("enabled", False)
    if not isinstance(enabled, bool):
        raise ConfigError("enabled must be true or false")
    trust = body.get("trust_days")
    if trust is not None and (isinstance(trust, bool) or not isinstance(trust, int)
                              or not 1 <= trust <= MAX_TRUST_DAYS):
        raise ConfigError(f"trust_days must be null or an integer from 1 to {MAX_TRUST_DAYS}")
    return FirstContact(enabled, trust)


def _direction_view(direction: Direction) -> dict[str, Any]:
    gate = direction.gate
    return {"gate": {"policy": gate.policy, "action": gate.action,
                     "allowlist": list(gate.allowlist)},
            "scan": {"sensitivity": direction.sensitivity}}


def first_contact_view(first: FirstContact) -> dict[str, Any]:
    return {"enabled": first.enabled, "trust_days": first.trust_days}


def view(config: Protection) -> dict[str, Any]:
    """ProtectionConfigView; ``first_contact`` is an e2a extension field
    (the SDK's view keeps unknown fields)."""
    return {"inbound": _direction_view(config.inbound),
            "outbound": _direction_view(config.outbound),
            "holds": {"ttl_seconds": config.ttl_seconds, "on_expiry": config.on_expiry,
                      "suppress_notifications": config.suppress_notifications},
            "first_contact": first_contact_view(config.first_contact)}


def stored(config: Protection) -> dict[str, Any]:
    """What agents.protection keeps (holds live in the hitl_* columns)."""
    body = view(config)
    return {"inbound": body["inbound"], "outbound": body["outbound"],
            "suppress_notifications": config.suppress_notifications,
            "first_contact": body["first_contact"]}


def columns(config: Protection) -> dict[str, Any]:
    """The agent columns that hold ``config``."""
    return {"protection": stored(config), "hitl_enabled": config.hold_all,
            "hitl_ttl_seconds": config.ttl_seconds,
            "hitl_expiration_action": config.on_expiry}


def legacy_hitl_enabled(config: Protection) -> bool:
    """hitl_enabled as the legacy agent view reports it: on whenever
    outbound mail may be held (every message, or by a gate or scan)."""
    return config.outbound_screened


def with_legacy_hitl(config: Protection, enabled: bool) -> Protection:
    """The legacy ``hitl_enabled`` written: on holds every outbound message;
    off takes away every outbound hold (gate open, scan off, no first-contact
    review). Writing back what was read changes nothing."""
    if enabled == legacy_hitl_enabled(config):
        return config
    if enabled:
        return replace(config, hold_all=True, outbound=replace(config.outbound, gate=HOLD_ALL))
    return replace(config, hold_all=False, outbound=Direction(),
                   first_contact=replace(config.first_contact, enabled=False))
