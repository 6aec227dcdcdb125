"""What ``e2a postfix install`` and ``uninstall`` change, decided before anything is.

The wiring is e2a's fragments (``e2a.postfix``) rendered with this host's
configuration. A plan compares it with main.cf/master.cf as they are and
with the record of an earlier install, so that:
- the operator's values stay: list parameters get our items merged in, and
  a value we replace is remembered to be put back; their content_filter,
  replaced by ours, moves onto our reinjection service so it runs after ours;
- a second install with the same configuration changes nothing, and one with
  a changed configuration swaps our old values for the new ones;
- uninstall takes out only what install put in; what the operator changed
  since stays, with a note.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from itertools import pairwise

from e2a import postfix as fragments
from e2a.cli.postfix import merge
from e2a.cli.postfix.postconf import Postconf, same_entry
from e2a.cli.postfix.postconf import field as entry_field
from e2a.cli.postfix.record import Record
from e2a.core.config import Config
from e2a.core.net import addresses
from e2a.core.net.addresses import InetAddress, UnixAddress


class WiringError(RuntimeError):
    """The wiring cannot be applied as configured; str() says why, one line."""


# -- the wiring -----------------------------------------------------------

def postfix_address(listen: str, queue_directory: str) -> str:
    """Our listen address as Postfix's smtpd must name it.

    Postfix's daemons work in the queue directory, chrooted into it or not,
    so a socket below it is named relative to it and is found either way."""
    address = addresses.parse(listen)
    if isinstance(address, UnixAddress):
        queue = queue_directory.rstrip("/") + "/"
        path = address.path
        return "unix:" + (path[len(queue):] if path.startswith(queue) else path)
    return f"inet:{address}"


def _inet(cfg_key: str, value: str) -> InetAddress:
    address = addresses.parse(value)
    if not isinstance(address, InetAddress):
        raise WiringError(f"{cfg_key} must be host:port for Postfix's master.cf, got {value}")
    return address


def smtpd_chroot(services: dict[str, str], ours: Iterable[str] = ()) -> str:
    """``y`` or ``n``: the chroot column of the operator's public smtpd, which
    our own smtpd services copy (Debian's stock master.cf says ``y``)."""
    skip = set(ours)
    candidates = [services[k] for k in ("smtp/inet",) if k in services]
    candidates += [entry for key, entry in services.items()
                   if key not in skip and entry_field(entry, 1) == "inet"
                   and entry_field(entry, 7) == "smtpd"]
    # "-" is Postfix 3's default, n.
    return "y" if candidates and entry_field(candidates[0], 4) == "y" else "n"


@dataclass(frozen=True)
class Wiring:
    params: dict[str, str]    # main.cf name -> our value
    services: dict[str, str]  # master.cf "name/type" -> our entry
    chroot: str               # y or n, as our smtpd services run
    values: dict[str, str]    # the fragments' placeholders, as rendered

    @property
    def reinject_key(self) -> str:
        return f"{self.values['reinject_address']}/inet"

    def chained(self, after_filter: str) -> Wiring:
        """This wiring with the operator's own content_filter on our reinjection
        service: ours replaces theirs in main.cf, so theirs runs after ours."""
        if after_filter == self.params["content_filter"]:
            after_filter = ""  # ours again on our reinjection would loop
        if after_filter and after_filter.split() != [after_filter]:
            raise WiringError(f"content_filter {after_filter!r}: a master.cf -o value "
                              "cannot hold spaces; set it without them")
        values = {**self.values, "after_filter": after_filter}
        return replace(self, services=fragments.master_cf_services(**values), values=values)


def chained_filter(entry: str | None) -> str:
    """The content_filter a master.cf ``entry`` sets with ``-o`` ("" none)."""
    fields = entry.split() if entry else []
    for flag, option in pairwise(fields):
        if flag == "-o" and option.startswith("content_filter="):
            return option.partition("=")[2]
    return ""


def service_keys(cfg: Config) -> list[str]:
    """master.cf keys of our services, without reading Postfix's configuration."""
    return [f"{_inet('filter.reinject', cfg.filter.reinject)}/inet",
            f"{_inet('submit.address', cfg.submit.address)}/inet", "e2a-filter/unix"]


def wiring(cfg: Config, queue_directory: str, chroot: str) -> Wiring:
    filter_at = _inet("filter.listen", cfg.filter.listen)
    values = {
        "milter_socket": postfix_address(cfg.milter.listen, queue_directory),
        "policy_socket": postfix_address(cfg.policy.listen, queue_directory),
        "socketmap_socket": postfix_address(cfg.policy.socketmap_listen, queue_directory),
        "message_size_limit": str(cfg.mail.max_message_bytes),
        "reinject_address": str(_inet("filter.reinject", cfg.filter.reinject)),
        "submit_address": str(_inet("submit.address", cfg.submit.address)),
        "filter_host": filter_at.host,
        "filter_port": str(filter_at.port),
        "own_daemon_name": cfg.milter.own_daemon_name,
        "chroot": chroot,
        "after_filter": "",
    }
    return Wiring(params=fragments.main_cf_params(**values),
                  services=fragments.master_cf_services(**values), chroot=chroot,
                  values=values)


def read_wiring(cfg: Config, pc: Postconf) -> Wiring:
    """Our wiring for the Postfix configured in ``pc``'s directory."""
    queue = pc.effective("queue_directory")["queue_directory"]
    return wiring(cfg, queue, smtpd_chroot(pc.services(), service_keys(cfg)))


# -- the state and the plan -----------------------------------------------

@dataclass(frozen=True)
class State:
    explicit: dict[str, str]   # what main.cf sets
    defaults: dict[str, str]   # Postfix's defaults of the parameters involved
    services: dict[str, str]   # master.cf

    @classmethod
    def read(cls, pc: Postconf, names: Iterable[str]) -> State:
        return cls(explicit=pc.explicit(), defaults=pc.defaults(*sorted(set(names))),
                   services=pc.services())

    def value(self, name: str, explicit: str | None) -> str:
        """What is in force when main.cf says ``explicit`` (None: not set)."""
        return explicit if explicit is not None else self.defaults.get(name, "")


@dataclass(frozen=True)
class Change:
    file: str                # main.cf or master.cf
    name: str                # parameter, or service "name/type"
    current: str | None      # None: absent
    target: str | None       # None: remove

    def describe(self) -> str:
        if self.target is None:
            return f"{self.file}: remove {self.name}"
        verb = "add" if self.current is None else "change"
        if self.file == "main.cf":
            return f"{self.file}: {verb} {self.name} = {self.target}"
        return f"{self.file}: {verb} service {self.name}"


@dataclass
class Plan:
    changes: list[Change] = field(default_factory=list)
    record: Record | None = None   # what to remember; None: forget the directory
    notes: list[str] = field(default_factory=list)


def _theirs(name: str, current: str | None, entry: dict | None, state: State) -> str | None:
    """The operator's own value of a parameter, as if we had never installed."""
    if entry is None or current == entry["after"]:
        return current if entry is None else entry["before"]
    rule = merge.rule(name)
    if current is None or not rule.list:
        return current  # they changed or removed our value: theirs now
    stripped = rule.unmerge(current, [tuple(i) for i in entry["added"]])
    return entry["before"] if stripped == state.value(name, entry["before"]) else stripped


def plan_install(state: State, wiring: Wiring, record: Record | None) -> Plan:
    plan = Plan(record={"params": {}, "services": {},
                        "backups": list(record["backups"]) if record else []})
    assert plan.record is not None
    old_params = record["params"] if record else {}
    operators: dict[str, str] = {}  # in force as if we had never installed
    for name in [*wiring.params, *(n for n in old_params if n not in wiring.params)]:
        current = state.explicit.get(name)
        old = old_params.get(name)
        base = _theirs(name, current, old, state)
        operators[name] = theirs = state.value(name, base)
        target, added = base, []
        if name in wiring.params:
            merged, added = merge.rule(name).merge(theirs, wiring.params[name])
            if merged != theirs:
                target = merged
        if target != current:
            plan.changes.append(Change("main.cf", name, current, target))
        if target != base:
            plan.record["params"][name] = {"before": base, "after": target,
                                           "added": [list(i) for i in added]}
    wiring = wiring.chained(operators["content_filter"])

    old_services = record["services"] if record else {}
    for key in [*wiring.services, *(k for k in old_services if k not in wiring.services)]:
        current = state.services.get(key)
        old = old_services.get(key)
        base = current if old is None else old["before"]
        ours = wiring.services.get(key)
        if ours is not None and old is None and current is not None:
            if not same_entry(current, ours):
                raise WiringError(
                    f"master.cf already has a service {key} that is not e2a's: {current}; "
                    "free that address or point e2a's configuration at another one")
            continue  # the operator's own copy of ours: theirs to keep
        target = ours if ours is not None else base
        if not same_entry(target, current):
            plan.changes.append(Change("master.cf", key, current, target))
        if ours is not None:
            plan.record["services"][key] = {"before": base, "after": ours}
    if not plan.record["params"] and not plan.record["services"]:
        plan.record = None
    return plan


def plan_uninstall(state: State, record: Record) -> Plan:
    plan = Plan(record=None)
    for name, entry in record["params"].items():
        current = state.explicit.get(name)
        target = _theirs(name, current, entry, state)
        if current != entry["after"] and not merge.rule(name).list:
            plan.notes.append(f"main.cf: {name} left as {current!r}: changed since install")
        if target != current:
            plan.changes.append(Change("main.cf", name, current, target))
    for key, entry in record["services"].items():
        current = state.services.get(key)
        if current is not None and not same_entry(current, entry["after"]):
            plan.notes.append(f"master.cf: service {key} was changed since install; "
                              "removed all the same (it points at e2a)")
        if not same_entry(current, entry["before"]):
            plan.changes.append(Change("master.cf", key, current, entry["before"]))
    return plan


def involved_params(wiring: Wiring | None, record: Record | None) -> set[str]:
    names = set(wiring.params) if wiring else set()
    if record:
        names |= set(record["params"])
    return names
