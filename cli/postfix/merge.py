"""How e2a's main.cf values join the operator's own, and how they leave again.

A list parameter (``smtpd_milters``, the milter macro lists,
``smtpd_recipient_restrictions``, ``relay_domains``) keeps the operator's items, in their
order and spelling; ours are inserted as text, with the separator the list
already uses, so that taking them out again (``strip``) gives back exactly
the text that was there. Any other parameter is a single value: ours replaces
theirs, and uninstall puts theirs back.
"""

from __future__ import annotations

from dataclasses import dataclass

# Postfix splits lists on commas and white space; "{ ... }" is one element.
SEPARATORS = ", \t\r\n"

Item = tuple[str, ...]  # one element: a word, or a restriction and its argument


def spans(value: str) -> list[tuple[int, int]]:
    """(start, end) of each top-level element of a Postfix list value."""
    found: list[tuple[int, int]] = []
    i, n = 0, len(value)
    while i < n:
        if value[i] in SEPARATORS:
            i += 1
            continue
        start = i
        if value[i] == "{":
            depth = 0
            while i < n:
                depth += {"{": 1, "}": -1}.get(value[i], 0)
                i += 1
                if depth == 0:
                    break
        else:
            while i < n and value[i] not in SEPARATORS:
                i += 1
        found.append((start, i))
    return found


def words(value: str) -> list[str]:
    return [value[s:e] for s, e in spans(value)]


def _find(value: str, item: Item) -> int | None:
    found = words(value)
    for k in range(len(found) - len(item) + 1):
        if tuple(found[k:k + len(item)]) == item:
            return k
    return None


def contains(value: str, item: Item) -> bool:
    return _find(value, item) is not None


def insert(value: str, item: Item, before_permit: bool = False) -> str:
    """``value`` with ``item`` added: at the end, or, for restriction lists,
    before the first ``permit...`` (which would end the evaluation before
    reaching it)."""
    text = " ".join(item)
    where = spans(value)
    if not where:
        return text
    sep = ", " if "," in value else " "
    if before_permit:
        for start, end in where:
            if value[start:end].startswith("permit"):
                return value[:start] + text + sep + value[start:]
    last = where[-1][1]
    return value[:last] + sep + text + value[last:]


def strip(value: str, item: Item) -> str:
    """``value`` without ``item`` and the separator ``insert`` put beside it."""
    k = _find(value, item)
    if k is None:
        return value
    where = spans(value)
    start, end = where[k][0], where[k + len(item) - 1][1]
    after = k + len(item)
    if after < len(where):
        return value[:start] + value[where[after][0]:]
    if k > 0:
        return value[:where[k - 1][1]] + value[end:]
    return value[:start] + value[end:]


def items(value: str, restrictions: bool = False) -> list[Item]:
    """Elements of one of our list values; in a restriction list a ``check_*``
    restriction and its argument (the map or the server) are one element."""
    found = words(value)
    out: list[Item] = []
    i = 0
    while i < len(found):
        if restrictions and found[i].startswith("check_") and i + 1 < len(found):
            out.append((found[i], found[i + 1]))
            i += 2
        else:
            out.append((found[i],))
            i += 1
    return out


@dataclass(frozen=True)
class Rule:
    """How one parameter merges. ``list``: ours are items joined into theirs."""

    list: bool = False
    restrictions: bool = False

    def merge(self, theirs: str, ours: str) -> tuple[str, list[Item]]:
        """The value to set and the items we added (empty for a single value)."""
        if not self.list:
            return ours, []
        value, added = theirs, []
        for item in items(ours, self.restrictions):
            if not contains(value, item):
                value = insert(value, item, before_permit=self.restrictions)
                added.append(item)
        return value, added

    def missing(self, value: str, ours: str) -> list[str]:
        """What of ours ``value`` lacks (for ``e2a postfix check``)."""
        if not self.list:
            return [] if value == ours else [ours]
        return [" ".join(item) for item in items(ours, self.restrictions)
                if not contains(value, item)]

    def unmerge(self, value: str, added: list[Item]) -> str:
        for item in added:
            value = strip(value, item)
        return value


SINGLE = Rule()
RULES = {
    "smtpd_milters": Rule(list=True),
    "non_smtpd_milters": Rule(list=True),
    "internal_mail_filter_classes": Rule(list=True),
    "milter_connect_macros": Rule(list=True),
    "milter_helo_macros": Rule(list=True),
    "milter_mail_macros": Rule(list=True),
    "milter_rcpt_macros": Rule(list=True),
    "milter_data_macros": Rule(list=True),
    "milter_end_of_header_macros": Rule(list=True),
    "milter_end_of_data_macros": Rule(list=True),
    "smtpd_recipient_restrictions": Rule(list=True, restrictions=True),
    # The operator's own relay domains stay; our socketmap is added beside them.
    "relay_domains": Rule(list=True),
}


def rule(name: str) -> Rule:
    return RULES.get(name, SINGLE)
