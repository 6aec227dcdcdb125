"""The one canonical form of a mail address (core.addresses.mailbox)."""

from __future__ import annotations

import pytest

from e2a.core import addresses


@pytest.mark.parametrize(("given", "canonical"), [
    ("hello@agents.example", "hello@agents.example"),
    ("<hello@agents.example>", "hello@agents.example"),
    ('<"hello"@agents.example>', "hello@agents.example"),
    ('"hello"@agents.example', "hello@agents.example"),
    ("<hello@agents.example.>", "hello@agents.example"),
    ("<HELLO@Agents.Example>", "hello@agents.example"),
    ('<"He\\"llo"@agents.example.>', 'he"llo@agents.example'),
    ("<@relay.example:hello@agents.example>", "hello@agents.example"),
    (" <hello@agents.example> ", "hello@agents.example"),
    ("<>", ""),
    ("", ""),
    ("postmaster", "postmaster"),
])
def test_mailbox_is_one_spelling_per_address(given: str, canonical: str) -> None:
    assert addresses.mailbox(given) == canonical
