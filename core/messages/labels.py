"""Message labels: what a label may look like, and how a caller's add/remove
delta changes a message's label set (docs/contract.md "Limits").

The ``e2a:`` prefix belongs to labels the server applies itself; callers may
filter on them but neither add nor remove them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

MAX_LENGTH = 64
MAX_PER_MESSAGE = 100
MAX_PER_REQUEST = 50
SYSTEM_PREFIX = "e2a:"
_LABEL = re.compile(r"^[a-z0-9:_-]+$")


class LabelError(ValueError):
    """A label or a delta that breaks a rule; ``field`` names the input at fault."""

    def __init__(self, message: str, *, field: str) -> None:
        super().__init__(message)
        self.field = field


def check(label: object, field: str) -> str:
    """``label`` if it is well formed (any prefix: filters may name system labels)."""
    if not isinstance(label, str):
        raise LabelError(f"{field}: every label is a string", field=field)
    if not 1 <= len(label) <= MAX_LENGTH:
        raise LabelError(f"{field}: a label is 1 to {MAX_LENGTH} characters", field=field)
    if not _LABEL.match(label):
        raise LabelError(f"{field}: label {label!r} may only hold lowercase letters, digits, "
                         "':', '_' and '-'", field=field)
    return label


def _writable(label: object, field: str) -> str:
    checked = check(label, field)
    if checked.startswith(SYSTEM_PREFIX):
        raise LabelError(f"{field}: the {SYSTEM_PREFIX!r} prefix is reserved for labels "
                         "the server applies", field=field)
    return checked


def _writable_list(value: object, field: str) -> frozenset[str]:
    if value is None:
        return frozenset()
    if not isinstance(value, list):
        raise LabelError(f"{field} must be an array of strings", field=field)
    if len(value) > MAX_PER_REQUEST:
        raise LabelError(f"{field}: at most {MAX_PER_REQUEST} labels per request", field=field)
    return frozenset(_writable(label, field) for label in value)


@dataclass(frozen=True)
class Delta:
    add: frozenset[str]
    remove: frozenset[str]

    @classmethod
    def parse(cls, add_labels: object, remove_labels: object) -> Delta:
        """A caller's delta from its JSON values (absent = null = nothing).
        A label in both lists is removed, as in Gmail: remove wins."""
        remove = _writable_list(remove_labels, "remove_labels")
        return cls(_writable_list(add_labels, "add_labels") - remove, remove)

    def apply(self, current: Iterable[str]) -> list[str]:
        """The label set after this delta, sorted."""
        before = set(current)
        after = (before | self.add) - self.remove
        # Only growth is refused, so a message somehow over the cap can still
        # be trimmed.
        if len(after) > MAX_PER_MESSAGE and not after <= before:
            raise LabelError(f"a message holds at most {MAX_PER_MESSAGE} labels",
                             field="add_labels")
        return sorted(after)
