"""The approve-by-reply address: shape, length, MAC."""

from __future__ import annotations

import pytest

from e2a.core import replyaddress
from e2a.core.ids import new_id

KEY = b"k" * 32


def test_round_trip_within_the_local_part_limit() -> None:
    message_id = new_id("msg")
    address = replyaddress.build(message_id, KEY, "Agents.Example.COM")
    local, _, domain = address.partition("@")
    assert len(local) <= 64
    assert domain == "agents.example.com"
    assert local.startswith("approve-" + message_id.removeprefix("msg_") + "-")
    parsed = replyaddress.parse(f"<{address.upper()}>")
    assert parsed is not None
    assert parsed.message_id == message_id
    assert parsed.domain == "agents.example.com"
    assert replyaddress.verify(parsed, KEY)


def test_the_mac_binds_message_and_secret() -> None:
    message_id, other_id = new_id("msg"), new_id("msg")
    parsed = replyaddress.parse(replyaddress.build(message_id, KEY, "example.com"))
    assert parsed is not None
    assert not replyaddress.verify(parsed, b"another key")
    # A MAC taken from one message's address is worthless for another message.
    moved = replyaddress.parse(
        f"approve-{other_id.removeprefix('msg_')}-{parsed.mac}@example.com")
    assert moved is not None
    assert not replyaddress.verify(moved, KEY)


@pytest.mark.parametrize("address", [
    "", "approve@example.com", "bounces+msg_" + "0" * 32 + "@example.com",
    "approve-" + "0" * 32 + "-" + "1" * 20,  # no domain
    "approve-" + "0" * 31 + "-" + "1" * 20 + "@example.com",
    "approve-" + "0" * 32 + "-" + "1" * 19 + "@example.com",
    "approve-" + "g" * 32 + "-" + "1" * 20 + "@example.com",
    "xapprove-" + "0" * 32 + "-" + "1" * 20 + "@example.com",
])
def test_other_addresses_are_not_reply_addresses(address: str) -> None:
    assert replyaddress.parse(address) is None


def test_only_message_ids_make_addresses() -> None:
    with pytest.raises(ValueError):
        replyaddress.build("usr_" + "0" * 32, KEY, "example.com")
    with pytest.raises(ValueError):
        replyaddress.build(new_id("msg"), KEY, "")
