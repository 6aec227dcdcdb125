"""VERP return paths: built from a message id with a MAC, read back strictly."""

from __future__ import annotations

import pytest

from e2a.core import verp
from e2a.core.ids import new_id

MSG = "msg_0123456789abcdef0123456789abcdef"
KEY = b"k" * 32


def test_return_path_names_the_message_and_its_mac_on_the_domain():
    address = verp.return_path(MSG, "Agents.Example", KEY)
    local, _, domain = address.partition("@")
    assert domain == "agents.example"
    assert local.startswith(f"bounces+{MSG}-") and len(local) <= 64
    assert verp.return_path(MSG, "agents.example", b"other key") != address


def test_parse_gives_back_what_return_path_built():
    message_id = new_id("msg")
    assert verp.parse(verp.return_path(message_id, "agents.example", KEY), KEY) == message_id


def test_parse_is_lenient_on_case_and_brackets():
    address = verp.return_path(MSG, "agents.example", KEY)
    for variant in (address.upper(), f"<{address}>", f" {address} "):
        assert verp.parse(variant, KEY) == MSG


def test_a_return_path_without_our_mac_names_no_message():
    # What anyone can type (sendmail -f), or the id of one message with the
    # MAC of another: recognised as a return path, never as the message.
    other = new_id("msg")
    moved = verp.return_path(other, "agents.example", KEY).replace(other, MSG)
    for address in (f"bounces+{MSG}@agents.example", f"bounces+{MSG}-{'0' * 16}@agents.example",
                    moved, verp.return_path(MSG, "agents.example", b"other key")):
        assert verp.shaped(address)
        assert verp.parse(address, KEY) is None


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
    f"bounces+{MSG}-{'0' * 15}@agents.example",
])
def test_anything_else_is_no_return_path(address):
    assert not verp.shaped(address)
    assert verp.parse(address, KEY) is None


@pytest.mark.parametrize("message_id", ["msg_123", "evt_0123456789abcdef0123456789abcdef",
                                        MSG.upper(), ""])
def test_return_path_refuses_what_is_no_message_id(message_id):
    with pytest.raises(ValueError):
        verp.return_path(message_id, "agents.example", KEY)


def test_return_path_refuses_what_is_no_domain():
    with pytest.raises(ValueError):
        verp.return_path(MSG, "a@b.example", KEY)
    with pytest.raises(ValueError):
        verp.return_path(MSG, "", KEY)


def test_domain_of():
    assert verp.domain_of(f"<bounces+{MSG}@Agents.Example>") == "agents.example"
    assert verp.domain_of("no-domain") == ""
