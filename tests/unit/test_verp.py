"""VERP return paths: built from a message id, read back strictly."""

from __future__ import annotations

import pytest

from e2a.core import verp
from e2a.core.ids import new_id

MSG = "msg_0123456789abcdef0123456789abcdef"


def test_return_path_names_the_message_on_the_domain():
    assert verp.return_path(MSG, "Agents.Example") == f"bounces+{MSG}@agents.example"


def test_parse_gives_back_what_return_path_built():
    message_id = new_id("msg")
    assert verp.parse(verp.return_path(message_id, "agents.example")) == message_id


@pytest.mark.parametrize("address", [
    f"BOUNCES+{MSG.upper()}@agents.example",  # local parts come back in any case
    f"<bounces+{MSG}@agents.example>",
    f" bounces+{MSG}@Agents.Example ",
])
def test_parse_is_lenient_on_case_and_brackets(address):
    assert verp.parse(address) == MSG


@pytest.mark.parametrize("address", [
    "",
    "hello@agents.example",
    f"bounces+{MSG}",  # no domain
    f"bounces+{MSG}@",
    f"bounces-{MSG}@agents.example",
    f"bounces+{MSG}x@agents.example",  # one character too many
    f"bounces+{MSG[:-1]}@agents.example",  # one too few
    "bounces+msg_0123456789abcdef0123456789abcdeg@agents.example",  # not hex
    f"bounces+evt_{MSG[4:]}@agents.example",  # not a message id
    f"xbounces+{MSG}@agents.example",
    f"bounces+{MSG}+tag@agents.example",
])
def test_parse_refuses_anything_else(address):
    assert verp.parse(address) is None


@pytest.mark.parametrize("message_id", ["msg_123", "evt_0123456789abcdef0123456789abcdef",
                                        MSG.upper(), ""])
def test_return_path_refuses_what_is_no_message_id(message_id):
    with pytest.raises(ValueError):
        verp.return_path(message_id, "agents.example")


def test_return_path_refuses_what_is_no_domain():
    with pytest.raises(ValueError):
        verp.return_path(MSG, "a@b.example")
    with pytest.raises(ValueError):
        verp.return_path(MSG, "")


def test_domain_of():
    assert verp.domain_of(f"<bounces+{MSG}@Agents.Example>") == "agents.example"
    assert verp.domain_of("no-domain") == ""
