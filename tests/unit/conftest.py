"""Fixtures shared by unit tests. The content filter's: a pool, a real SMTP
server as Postfix's reinjection service and the filter running in front of it.
Those of the tests that hold and resolve messages (named hitl_*):
a real SMTP server as Postfix's submit service (the API's sends go there and
are held), another as its reinjection service (approvals release there), a
configuration using both, an API test client, and a fresh owner whose agent
holds what it sends."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from typing import Any

import pytest
from apisupport import Tenant, api_client, make_tenant
from filtersupport import Reinjection, RunningFilter, reinjection_service
from hitlsupport import enable_hitl, hitl_config
from mailworld import zones_served
from milterdriver import installed
from submitsupport import running_fake_postfix

from e2a.core.config import Config
from e2a.core.db import open_pool


@pytest.fixture(scope="module")
def postfix() -> Iterator[Any]:
    """A fake of Postfix's submit service: it records what the API submits."""
    with running_fake_postfix() as fake:
        yield fake


@pytest.fixture(scope="module")
def hitl_reinjection() -> Iterator[Any]:
    with reinjection_service() as service:
        yield service


@pytest.fixture(scope="module")
def hitl_cfg(cfg: Config, postfix: Any, hitl_reinjection: Any,
         tmp_path_factory: pytest.TempPathFactory) -> Config:
    return hitl_config(cfg, tmp_path_factory.mktemp("hitl") / "e2a.toml",
                       postfix.address, hitl_reinjection[1])


@pytest.fixture(scope="module")
def hitl_client(hitl_cfg: Config) -> Iterator[Any]:
    with api_client(hitl_cfg) as test_client:
        yield test_client


@pytest.fixture
def hitl_owner(hitl_cfg: Config, hitl_client: Any) -> Tenant:
    owner = make_tenant(hitl_cfg)
    enable_hitl(hitl_client, owner, owner.agent)
    return owner


@pytest.fixture(scope="module")
def pool(cfg: Config) -> Iterator[Any]:
    pool = open_pool(cfg, name="test-filter", wait=True, autocommit=True)
    yield pool
    pool.close()


@pytest.fixture
def reinjection() -> Iterator[tuple[Reinjection, int]]:
    with reinjection_service() as service:
        yield service


@pytest.fixture
def running(cfg: Config, pool: Any, reinjection: tuple[Reinjection, int]
            ) -> Iterator[RunningFilter]:
    f = RunningFilter(cfg, pool, reinjection[1])
    yield f
    f.stop()


@pytest.fixture(scope="module")
def milter_world(cfg: Config, tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """For a module that drives the milter (milterdriver.feed): the milter
    installed with its own pool, and the test DNS zones served."""
    with zones_served(tmp_path_factory.mktemp("zones")), installed(cfg):
        yield


@pytest.fixture
def own_heap() -> Iterator[None]:
    """For CPU-time bounds: what the rest of the suite left alive is moved
    out of the garbage collector's sight for the test, so a collection
    during the measured work costs what it would in a service's own
    process, not the whole suite's heap (20 million objects put a hostile
    header's 0.7 s at 3.4 s)."""
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()
