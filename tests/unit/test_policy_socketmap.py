"""The relay_domains socketmap: netstring framing, and lookups over a real
unix socket against the real database."""

from __future__ import annotations

import io
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from apisupport import add_domain, make_tenant
from policysupport import Client
from servicesupport import write_config

from e2a.core import config
from e2a.core.accounts import registration as accounts
from e2a.core.db import open_pool, single_connection
from e2a.core.net import listen
from e2a.core.net.addresses import UnixAddress
from e2a.core.outbound import release
from e2a.core.store import domains as domain_store
from e2a.policy import netstring, socketmap
from e2a.policy.daemon import SocketmapServer, open_policy_pool
from e2a.policy.socketmap import CacheListener, RelayDomainCache


class Trickle(io.RawIOBase):
    """A stream that hands out one byte per read, as a slow peer would."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        out, self.data = self.data[:1], self.data[1:]
        return out


def test_netstrings_round_trip_and_survive_partial_reads() -> None:
    encoded = netstring.encode(b"relay_domains a.example") + netstring.encode(b"")
    assert encoded == b"23:relay_domains a.example,0:,"
    stream = Trickle(encoded)
    assert netstring.read(stream, 100) == b"relay_domains a.example"
    assert netstring.read(stream, 100) == b""
    assert netstring.read(stream, 100) is None


@pytest.mark.parametrize("data", [b"x:abc,", b":abc,", b"3:abcd", b"3:ab", b"12", b"3;abc,",
                                  b"-1:,"])
def test_malformed_netstrings_are_refused(data: bytes) -> None:
    with pytest.raises(netstring.NetstringError):
        netstring.read(io.BytesIO(data), 100)


def test_oversize_netstring_is_refused_before_reading_it() -> None:
    with pytest.raises(netstring.NetstringError, match="exceeds"):
        netstring.read(io.BytesIO(b"101:" + b"a" * 101 + b","), 100)
    # An endless length is cut off too, not read digit after digit.
    with pytest.raises(netstring.NetstringError, match="too long"):
        netstring.read(io.BytesIO(b"9" * 10_000), 100)


class MapClient(Client):
    """Postfix's socketmap client: one connection, many lookups."""

    def lookup(self, key: str, name: str = "relay_domains") -> bytes | None:
        self.send(netstring.encode(f"{name} {key}".encode()))
        return netstring.read(self.rfile, 100_000)


@pytest.fixture(scope="module")
def sockdir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="e2a-smap-"))  # short: sun_path is 107 bytes
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def client(cfg: config.Config, sockdir: Path) -> Iterator[MapClient]:
    pool = open_policy_pool(cfg, wait=True)
    server = SocketmapServer(listen.bind(UnixAddress(str(sockdir / "map.sock"))), pool,
                             cfg.mail.shared_domain)
    server.start()
    c = MapClient(str(sockdir / "map.sock"))
    try:
        yield c
    finally:
        c.close()
        server.stop()
        pool.close()


def test_shared_and_verified_domains_are_found_others_not(cfg: config.Config,
                                                          client: MapClient) -> None:
    with single_connection(cfg) as conn:
        accounts.seed_shared_domain(conn, cfg)
    tenant = make_tenant(cfg)
    verified = add_domain(cfg, tenant, verified=True)["domain"]
    pending = add_domain(cfg, tenant, verified=False)["domain"]
    # All on one connection, as Postfix keeps it.
    shared = cfg.mail.shared_domain
    assert client.lookup(shared) == f"OK {shared}".encode()
    assert client.lookup(verified) == f"OK {verified}".encode()
    assert client.lookup(verified.upper()) == f"OK {verified}".encode()
    assert client.lookup(pending) == b"NOTFOUND "
    assert client.lookup("unknown.example.net") == b"NOTFOUND "
    # Postfix also asks for parent domains as ".example.com": never ours.
    assert client.lookup("." + verified) == b"NOTFOUND "
    assert client.lookup("x" * 300) == b"NOTFOUND "
    assert client.lookup(verified, name="virtual_alias_maps").startswith(b"PERM ")


def test_verification_takes_effect_on_the_next_lookup(cfg: config.Config,
                                                       client: MapClient) -> None:
    row = add_domain(cfg, make_tenant(cfg), verified=False)
    assert client.lookup(row["domain"]) == b"NOTFOUND "
    with single_connection(cfg) as conn:
        domain_store.record_check(conn, row["id"], True)
    assert client.lookup(row["domain"]) == f"OK {row['domain']}".encode()


def test_malformed_request_drops_only_that_client(client: MapClient, sockdir: Path) -> None:
    bad = MapClient(str(sockdir / "map.sock"))
    try:
        bad.sock.sendall(b"99999999:")
        assert bad.rfile.read() == b""
    finally:
        bad.close()
    assert client.lookup("unknown.example.net") == b"NOTFOUND "


def test_database_down_answers_temp(cfg: config.Config, sockdir: Path,
                                    tmp_path: Path) -> None:
    """Postfix then defers the recipient (4xx) instead of refusing it."""
    bad = config.load(write_config(
        cfg, tmp_path / "down.toml",
        database_url=f"postgresql://e2a@/e2a?host={tmp_path}/nowhere&port=1"), env={})
    pool = open_pool(bad, name="test-socketmap-down")
    server = SocketmapServer(listen.bind(UnixAddress(str(sockdir / "down.sock"))), pool,
                             cfg.mail.shared_domain, db_timeout=0.5)
    server.start()
    c = MapClient(str(sockdir / "down.sock"))
    try:
        assert c.lookup("d1.example.com").startswith(b"TEMP ")
        # The connection stays usable; the shared domain needs no database.
        assert c.lookup(cfg.mail.shared_domain) == f"OK {cfg.mail.shared_domain}".encode()
    finally:
        c.close()
        server.stop()
        pool.close()


# -- the cache of answers, emptied by the domains table's NOTIFY ---------------


def _until(check: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def test_cache_answers_without_the_database_until_invalidated() -> None:
    queries: list[str] = []
    cache = RelayDomainCache(lambda: True)

    def query() -> bool:
        queries.append("q")
        return True

    assert cache.lookup("a.example", query) and cache.lookup("a.example", query)
    assert len(queries) == 1
    cache.invalidate()
    assert cache.lookup("a.example", query)
    assert len(queries) == 2


def test_cache_is_bypassed_and_emptied_while_not_listening() -> None:
    live = [True]
    queries: list[str] = []
    cache = RelayDomainCache(lambda: live[0])
    cache.lookup("a.example", lambda: queries.append("q") or True)
    live[0] = False
    answers = [cache.lookup("a.example", lambda: queries.append("q") is not None)
               for _ in range(2)]
    assert answers == [False, False] and len(queries) == 3
    live[0] = True  # back: nothing from before the outage is served
    assert cache.lookup("a.example", lambda: queries.append("q") is not None) is False


def test_a_change_during_the_query_is_not_cached() -> None:
    cache = RelayDomainCache(lambda: True)

    def query_racing_a_change() -> bool:
        cache.invalidate()  # a NOTIFY arrives while the old answer is read
        return False

    assert cache.lookup("a.example", query_racing_a_change) is False
    assert cache.lookup("a.example", lambda: True) is True


def test_cache_expires() -> None:
    cache = RelayDomainCache(lambda: True, ttl=0.0)
    cache.lookup("a.example", lambda: False)
    assert cache.lookup("a.example", lambda: True) is True


def test_cached_server_hears_verification_and_deletion(cfg: config.Config,
                                                       sockdir: Path) -> None:
    stop = threading.Event()
    listener = CacheListener(cfg, None, stop)
    listener.start()
    pool = open_policy_pool(cfg, wait=True)
    server = SocketmapServer(listen.bind(UnixAddress(str(sockdir / "cached.sock"))), pool,
                             cfg.mail.shared_domain, cache=listener.cache)
    server.start()
    c = MapClient(str(sockdir / "cached.sock"))
    try:
        assert _until(listener.live)
        row = add_domain(cfg, make_tenant(cfg), verified=False)
        name = row["domain"]
        assert c.lookup(name) == b"NOTFOUND "
        assert c.lookup(name) == b"NOTFOUND "  # from the cache now
        with single_connection(cfg) as conn:
            domain_store.record_check(conn, row["id"], True)
        assert _until(lambda: c.lookup(name) == f"OK {name}".encode(), 2.0)
        with single_connection(cfg) as conn:
            conn.execute("DELETE FROM domains WHERE id = %s", (row["id"],))
        assert _until(lambda: c.lookup(name) == b"NOTFOUND ", 2.0)
    finally:
        c.close()
        server.stop()
        stop.set()
        listener.join(2.0)
        pool.close()


def test_the_reinjection_login_is_ours_and_fresh_only() -> None:
    """The reinjection service's check_sasl_access: our filter's and
    release's XCLIENT login passes, anything else gets a 5.7.1."""
    secret = "s" * 40
    cfg = SimpleNamespace(secrets=SimpleNamespace(hmac_secret=secret))

    def ask(login: str) -> bytes:
        return socketmap.answer(None, f"reinject_login {login}".encode(),  # type: ignore[arg-type]
                                shared_domain="", db_timeout=1.0, secret=secret)

    assert ask(release.reinject_login(cfg)) == b"OK OK"  # type: ignore[arg-type]
    refused = socketmap.REINJECT_REFUSED
    assert refused.startswith(b"OK 554 5.7.1 ")
    stale = release.reinject_login(cfg, now=time.time() - release.LOGIN_SECONDS - 5)  # type: ignore[arg-type]
    other = release.reinject_login(SimpleNamespace(  # type: ignore[arg-type]
        secrets=SimpleNamespace(hmac_secret="t" * 40)))
    for login in (stale, other, "e2a.1.00", "anybody", ""):
        assert ask(login) == refused, login


def test_a_login_of_junk_is_refused_not_an_error() -> None:
    junk = "e2a.1.\ufffd\ufffd".encode()
    assert socketmap.answer(None, b"reinject_login " + junk,  # type: ignore[arg-type]
                            shared_domain="", db_timeout=1.0,
                            secret="s" * 40) == socketmap.REINJECT_REFUSED
