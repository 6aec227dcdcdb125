"""What an API worker does before serving: our resolver, the shared domain seeded."""

from __future__ import annotations

import secrets

import dns.resolver
from servicesupport import write_config

from e2a.api.startup import prepare
from e2a.core import config
from e2a.core.accounts import dkimkeys
from e2a.core.db import open_pool, single_connection
from e2a.core.store import agents as agent_store


def test_prepare_configures_dns_and_seeds_the_shared_domain(cfg, tmp_path):
    fresh = f"w{secrets.token_hex(4)}.test.example"
    worker_cfg = config.load(write_config(cfg, tmp_path / "e2a.toml",
                                          extra='[dns]\nresolver = "127.0.0.1:5399"\n'),
                             env={"E2A_MAIL_SHARED_DOMAIN": fresh})
    saved = dns.resolver.default_resolver
    pool = open_pool(worker_cfg, name="test-startup", wait=True)
    try:
        seeder = prepare(worker_cfg, pool)
        assert dns.resolver.default_resolver.nameservers == ["127.0.0.1"]
        assert dns.resolver.default_resolver.port == 5399
        seeder.join(timeout=30)
        assert not seeder.is_alive()
    finally:
        pool.close()
        dns.resolver.default_resolver = saved
    with single_connection(cfg) as conn:
        row = agent_store.domain_by_name(conn, fresh)
        key = dkimkeys.load_private_key(conn, worker_cfg, fresh)
    assert row is not None and row["is_shared"] and row["verified"] and row["user_id"] is None
    assert key is not None and key.selector == "e2a"
