"""XFORWARD attributes: parsed strictly, passed on within the line limit."""

from __future__ import annotations

import pytest

from e2a.core.mta import xforward


def test_parse_upper_cases_names_and_keeps_xtext_values():
    assert xforward.parse("name=mx.example ADDR=2001:db8::1 HELO=[UNAVAILABLE] IDENT=A+2B") == {
        "NAME": "mx.example", "ADDR": "2001:db8::1", "HELO": "[UNAVAILABLE]", "IDENT": "A+2B"}


@pytest.mark.parametrize("arg", ["", "NAME", "COLOR=red", "NAME=a=b", "NAME=" + "a" * 256,
                                 "NAME=caf\u00e9"])
def test_parse_refuses(arg):
    with pytest.raises(xforward.XforwardError):
        xforward.parse(arg)


def test_commands_keep_only_supported_nonempty_attributes_in_order():
    attrs = {"SOURCE": "REMOTE", "NAME": "mx.example", "IDENT": "", "COLOR": "x"}
    assert xforward.commands(attrs, ["name", "SOURCE", "IDENT"]) == [
        "NAME=mx.example SOURCE=REMOTE"]
    assert xforward.commands(attrs, []) == []


def test_commands_split_long_attribute_sets():
    attrs = {name: "v" * 255 for name in xforward.ATTRIBUTES}
    lines = xforward.commands(attrs, xforward.ATTRIBUTES)
    assert len(lines) > 1
    assert all(len(f"XFORWARD {line}\r\n") <= 512 for line in lines)
    assert sorted(" ".join(lines).split()) == sorted(f"{n}={'v' * 255}" for n in attrs)


@pytest.mark.parametrize(("attrs", "local"), [
    ({"ADDR": "127.0.0.1", "SOURCE": "REMOTE"}, True),      # the API's submit service
    ({"ADDR": "IPv6:::1"}, True),
    ({"ADDR": "[UNAVAILABLE]", "SOURCE": "LOCAL"}, True),   # sendmail
    ({}, True),                                             # no Postfix in front
    ({"ADDR": "203.0.113.9", "SOURCE": "REMOTE"}, False),   # the internet
    ({"ADDR": "IPv6:2001:db8::1"}, False),
    ({"ADDR": "[UNAVAILABLE]", "SOURCE": "REMOTE"}, False),
])
def test_from_this_host(attrs: dict[str, str], local: bool) -> None:
    assert xforward.from_this_host(attrs) is local
