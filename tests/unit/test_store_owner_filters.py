"""The owner clause of each store read that the API's tenant walls rest on:
the owner gets the row, another user gets nothing. The API checks ownership
again on some paths (api/auth.Principal.may_use), so a clause lost here
would not show through the API alone."""

from __future__ import annotations

import pytest
from apisupport import add_domain, make_tenant

from e2a.core import signing_secrets
from e2a.core.db import single_connection
from e2a.core.store import agents as agent_store
from e2a.core.store import domains as domain_store
from e2a.core.store import signing as signing_store


@pytest.fixture(scope="module")
def pair(cfg):
    """The owner of everything here, and a stranger to it."""
    return make_tenant(cfg), make_tenant(cfg)


@pytest.fixture
def owner(pair):
    return pair[0]


@pytest.fixture
def stranger(pair):
    return pair[1]


def test_an_agent_is_found_for_its_owner_only(cfg, owner, stranger):
    email = owner.agent["email"]
    with single_connection(cfg) as conn:
        assert agent_store.agent_for_user(conn, owner.user["id"], email)["id"] == \
            owner.agent["id"]
        assert agent_store.agent_for_user(conn, stranger.user["id"], email) is None
        # The address as typed: the owner clause holds whatever the case.
        assert agent_store.agent_for_user(conn, stranger.user["id"], email.upper()) is None


def test_a_domain_is_found_for_its_owner_only(cfg, owner, stranger):
    domain = add_domain(cfg, owner)["domain"]
    with single_connection(cfg) as conn:
        assert domain_store.domain_for_user(conn, owner.user["id"], domain) is not None
        assert domain_store.domain_for_user(conn, stranger.user["id"], domain) is None


def test_a_signing_secret_exists_and_goes_for_its_owner_only(cfg, owner, stranger):
    with single_connection(cfg) as conn:
        secret = signing_secrets.create(conn, owner.user["id"], "owner-filter")
        assert signing_store.secret_exists(conn, owner.user["id"], secret.row["id"])
        assert not signing_store.secret_exists(conn, stranger.user["id"], secret.row["id"])
        assert not signing_store.delete_secret(conn, stranger.user["id"], secret.row["id"])
        assert signing_store.secret_exists(conn, owner.user["id"], secret.row["id"])
