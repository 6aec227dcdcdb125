"""Listening sockets: stale unix sockets are replaced, live ones are not stolen."""

from __future__ import annotations

import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from e2a.core.net import addresses, listen
from e2a.core.net.addresses import InetAddress, UnixAddress


@pytest.fixture
def sockdir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="e2a-lst-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_stale_socket_is_replaced_and_removed_on_close(sockdir):
    path = sockdir / "s.sock"
    dead = socket.socket(socket.AF_UNIX)
    dead.bind(str(path))  # bound, never listening: what a killed process leaves
    dead.close()
    listener = listen.bind(UnixAddress(str(path)))
    with socket.socket(socket.AF_UNIX) as probe:
        probe.connect(str(path))
    listener.close()
    assert not path.exists()


def test_live_socket_is_not_stolen(sockdir):
    path = sockdir / "s.sock"
    first = listen.bind(UnixAddress(str(path)))
    try:
        with pytest.raises(listen.ListenError, match="another process"):
            listen.bind(UnixAddress(str(path)))
        assert path.exists()
    finally:
        first.close()


def test_regular_file_is_left_alone(sockdir):
    path = sockdir / "not-a-socket"
    path.write_text("keep me")
    with pytest.raises(listen.ListenError, match="not a socket"):
        listen.bind(UnixAddress(str(path)))
    assert path.read_text() == "keep me"


def test_close_leaves_a_successors_socket(sockdir):
    path = sockdir / "s.sock"
    old = listen.bind(UnixAddress(str(path)))
    path.unlink()  # as if a new instance had cleaned up and bound its own
    new = listen.bind(UnixAddress(str(path)))
    old.close()
    assert path.exists()
    new.close()
    assert not path.exists()


def test_inet_port_zero_reports_the_real_port():
    listener = listen.bind(InetAddress("127.0.0.1", 0))
    try:
        assert isinstance(listener.address, InetAddress)
        assert listener.address.port == listener.sock.getsockname()[1] != 0
    finally:
        listener.close()


def test_inet_address_in_use_is_a_listen_error():
    first = listen.bind(InetAddress("127.0.0.1", 0))
    try:
        with pytest.raises(listen.ListenError, match=r"cannot listen on 127\.0\.0\.1:"):
            listen.bind(first.address)
    finally:
        first.close()


@pytest.mark.parametrize("value, parsed", [
    ("unix:/run/e2a/policy.sock", UnixAddress("/run/e2a/policy.sock")),
    ("127.0.0.1:10025", InetAddress("127.0.0.1", 10025)),
    ("inet:localhost:10026", InetAddress("localhost", 10026)),
    ("[::1]:10025", InetAddress("::1", 10025)),
    ("::1:10025", InetAddress("::1", 10025)),
])
def test_parse_addresses(value, parsed):
    assert addresses.parse(value) == parsed


def test_str_round_trips():
    assert str(addresses.parse("[::1]:25")) == "[::1]:25"
    assert str(addresses.parse("unix:/x.sock")) == "unix:/x.sock"
