"""The ``filter`` expression of ``GET /v1/agents/{email}/messages``: a small
boolean language over a message's labels, sender, subject and creation time
(upstream e2a's docs/filtering.md), parsed into the store's predicate tree
(core/store/messages.py: Match, AllOf, AnyOf, Negated).

    label:urgent OR label:follow-up
    (from:"alerts.example" OR subject:"release *") created>=2026-07-01
    label:urgent AND NOT label:newsletter

Binding from tightest to loosest: NOT (or a leading ``-``) > OR > the
implicit AND of whitespace > an explicit AND. A caller's expression costs at
most 500 code points, 64 levels of nesting and 512 nodes, checked while
parsing, so no input makes the parser or the query it builds large.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from e2a.core import timefmt
from e2a.core.store.messages import AllOf, AnyOf, Match, Negated, Node

MAX_LENGTH = 500  # code points
MAX_DEPTH = 64
MAX_NODES = 512

# Field → the comparators it takes.
FIELDS = {
    "label": (":",),
    "from": (":", "=", "!="),
    "subject": (":", "=", "!="),
    "created": ("=", "!=", "<", "<=", ">", ">="),
}
COMPARATORS = ("<=", ">=", "!=", ":", "=", "<", ">")  # longest first
_LABEL = re.compile(r"[a-z0-9:_-]{1,64}")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
# Characters that end a bare word: whitespace, parentheses, quotes and the
# comparators' own; a value may also hold ':' (times, e2a: labels).
_WORD_STOP = frozenset('()":=!<>')
_VALUE_STOP = frozenset('()"=!<>')


class FilterError(ValueError):
    def __init__(self, message: str, column: int) -> None:
        super().__init__(f"{message} at column {column}")
        self.column = column


def parse(text: str) -> Node:
    """The predicate tree of ``text``; FilterError saying where it is wrong."""
    if len(text) > MAX_LENGTH:
        raise FilterError(f"a filter has at most {MAX_LENGTH} characters", MAX_LENGTH + 1)
    if "\x00" in text:
        raise FilterError("NUL is not allowed", text.index("\x00") + 1)
    parser = _Parser(text)
    node = parser.expression(0)
    parser.space()
    if not parser.at_end():
        raise parser.error(f"unexpected {parser.text[parser.pos]!r}")
    return node


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.nodes = 0

    # -- grammar ----------------------------------------------------------

    def expression(self, depth: int) -> Node:
        items = [self.sequence(depth)]
        while self.keyword("AND"):
            items.append(self.sequence(depth))
        return self.combine(AllOf, items)

    def sequence(self, depth: int) -> Node:
        """Factors side by side: the implicit AND."""
        items = [self.factor(depth)]
        while True:
            self.space()
            if self.at_end() or self.peek(")") or self.peek_keyword("AND"):
                return self.combine(AllOf, items)
            items.append(self.factor(depth))

    def factor(self, depth: int) -> Node:
        items = [self.term(depth)]
        while self.keyword("OR"):
            items.append(self.term(depth))
        return self.combine(AnyOf, items)

    def term(self, depth: int) -> Node:
        self.space()
        if self.keyword("NOT") or self.literal("-"):
            return self.node(Negated(self.simple(depth + 1)))
        return self.simple(depth)

    def simple(self, depth: int) -> Node:
        self.space()
        if depth > MAX_DEPTH:
            raise self.error(f"nesting deeper than {MAX_DEPTH}")
        if self.literal("("):
            inner = self.expression(depth + 1)
            self.space()
            if not self.literal(")"):
                raise self.error("expected ')'")
            return inner
        return self.restriction()

    def restriction(self) -> Node:
        start = self.pos + 1
        field = self.string() if self.peek('"') else self.word(_WORD_STOP)
        if not field:
            raise self.error("expected a field such as label:, from:, subject: or created")
        if field in ("AND", "OR", "NOT"):
            raise FilterError(f"{field} needs an expression on each side", start)
        self.space()
        comparator = next((c for c in COMPARATORS if self.text.startswith(c, self.pos)), None)
        if comparator is None:
            raise self.error(f"{field!r} needs a comparator and a value (such as "
                             f"label:urgent)")
        self.pos += len(comparator)
        if field not in FIELDS:
            raise FilterError(f"unknown field {field!r}; known: {', '.join(FIELDS)}", start)
        if comparator not in FIELDS[field]:
            raise FilterError(f"{field} does not take {comparator!r}; it takes "
                              f"{' '.join(FIELDS[field])}", start)
        self.space()
        value_at = self.pos + 1
        value = self.string() if self.peek('"') else self.word(_VALUE_STOP)
        if not value:
            raise self.error(f"{field}{comparator} needs a value")
        return self.predicate(field, comparator, value, value_at)

    # -- values -----------------------------------------------------------

    def predicate(self, field: str, comparator: str, value: str, column: int) -> Node:
        if field == "label":
            if not _LABEL.fullmatch(value):
                raise FilterError("a label is 1 to 64 of a-z 0-9 : _ -", column)
            return self.node(Match("label", "has", value))
        if field in ("from", "subject"):
            op = {":": "like", "=": "eq", "!=": "ne"}[comparator]
            return self.node(Match(field, op, value))
        return self.created(comparator, value, column)

    def created(self, comparator: str, value: str, column: int) -> Node:
        if not _DATE.fullmatch(value):
            try:
                moment = timefmt.parse_rfc3339(value)
            except ValueError:
                raise FilterError("created takes an RFC 3339 time or a YYYY-MM-DD date",
                                  column) from None
            return self.node(Match("created", comparator, moment))
        try:
            day = datetime.strptime(value, "%Y-%m-%d").replace(tzinfo=UTC)
            next_day = day + timedelta(days=1)
        except (ValueError, OverflowError):
            raise FilterError(f"no such date {value}", column) from None
        # A date is the whole UTC day [00:00, next 00:00).
        if comparator == "=":
            return self.node(AllOf((self.node(Match("created", ">=", day)),
                                    self.node(Match("created", "<", next_day)))))
        if comparator == "!=":
            return self.node(AnyOf((self.node(Match("created", "<", day)),
                                    self.node(Match("created", ">=", next_day)))))
        bound = {"<": ("<", day), "<=": ("<", next_day), ">": (">=", next_day),
                 ">=": (">=", day)}[comparator]
        return self.node(Match("created", *bound))

    # -- scanning ---------------------------------------------------------

    def node(self, node: Node) -> Node:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise self.error(f"more than {MAX_NODES} terms")
        return node

    def combine(self, kind: type[AllOf] | type[AnyOf], items: list[Node]) -> Node:
        return items[0] if len(items) == 1 else self.node(kind(tuple(items)))

    def at_end(self) -> bool:
        return self.pos >= len(self.text)

    def peek(self, literal: str) -> bool:
        return self.text.startswith(literal, self.pos)

    def literal(self, literal: str) -> bool:
        if self.peek(literal):
            self.pos += len(literal)
            return True
        return False

    def space(self) -> None:
        while not self.at_end() and self.text[self.pos].isspace():
            self.pos += 1

    def peek_keyword(self, word: str) -> bool:
        """``word`` (upper case, as written) standing alone here."""
        end = self.pos + len(word)
        return (self.text.startswith(word, self.pos)
                and (end == len(self.text) or self.text[end].isspace()
                     or self.text[end] in "()-"))

    def keyword(self, word: str) -> bool:
        saved = self.pos
        self.space()
        if self.peek_keyword(word):
            self.pos += len(word)
            return True
        self.pos = saved
        return False

    def word(self, stop: frozenset[str]) -> str:
        start = self.pos
        while (not self.at_end() and not self.text[self.pos].isspace()
               and self.text[self.pos] not in stop):
            self.pos += 1
        return self.text[start:self.pos]

    def string(self) -> str:
        """A double-quoted string; only \\" and \\\\ escape."""
        start = self.pos + 1
        self.pos += 1
        out: list[str] = []
        while not self.at_end():
            char = self.text[self.pos]
            if char == '"':
                self.pos += 1
                return "".join(out)
            if char == "\\":
                following = self.text[self.pos + 1:self.pos + 2]
                if following not in ('"', "\\"):
                    raise self.error("only \\\" and \\\\ escape in a string")
                out.append(following)
                self.pos += 2
                continue
            out.append(char)
            self.pos += 1
        raise FilterError("unterminated string", start)

    def error(self, message: str) -> FilterError:
        return FilterError(message, self.pos + 1)
