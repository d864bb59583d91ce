"""Verified tokens remembered for a moment: a revocation is prompt, and never forgotten."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from api.http.app import open_client_database
from api.token_store import VERIFIED_SECONDS, Scope, SqlTokenStore
from ledger.config import Settings
from projections.database import ProjectionDatabase


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def databases(settings: Settings) -> Iterator[tuple[ProjectionDatabase, ProjectionDatabase]]:
    """The API's connection to the clients' table, and the command line's (another process)."""
    api, cli = open_client_database(settings), open_client_database(settings)
    try:
        yield api, cli
    finally:
        api.close()
        cli.close()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def stores(
    databases: tuple[ProjectionDatabase, ProjectionDatabase], clock: Clock
) -> tuple[SqlTokenStore, SqlTokenStore]:
    api, cli = databases
    return SqlTokenStore(api, clock=clock), SqlTokenStore(cli)


def test_a_verified_token_is_remembered_and_an_unknown_one_is_not(
    stores: tuple[SqlTokenStore, SqlTokenStore],
) -> None:
    api, cli = stores
    client, token = cli.add("reader", [Scope.READ_STATE])
    assert api.recently_verified(token) is None  # never asked yet
    assert api.authenticate(token) == client
    assert api.recently_verified(token) == client
    assert api.authenticate("cl_unknown") is None
    assert api.recently_verified("cl_unknown") is None


def test_a_token_revoked_by_another_process_stops_within_the_verified_moment(
    stores: tuple[SqlTokenStore, SqlTokenStore], clock: Clock
) -> None:
    api, cli = stores
    _, token = cli.add("reader", [Scope.READ_STATE])
    assert api.authenticate(token) is not None
    cli.revoke("reader")
    clock.now += VERIFIED_SECONDS  # the moment the database's word is taken for is over
    assert api.recently_verified(token) is None
    revoked = api.authenticate(token)
    assert revoked is not None and revoked.revoked_at is not None
    assert not revoked.allows(Scope.READ_STATE)
    assert api.recently_verified(token) is None  # a revoked token is never remembered
    clock.now -= VERIFIED_SECONDS  # not even if the clock went back
    assert api.recently_verified(token) is None


def test_a_token_revoked_in_this_process_stops_at_once(
    stores: tuple[SqlTokenStore, SqlTokenStore],
) -> None:
    api, _ = stores
    _, token = api.add("reader", [Scope.READ_STATE])
    other_client, other_token = api.add("writer", [Scope.WRITE_EVENTS])
    assert api.authenticate(token) is not None and api.authenticate(other_token) is not None
    api.revoke("reader")
    assert api.recently_verified(token) is None
    assert api.recently_verified(other_token) == other_client


def test_a_key_registered_in_this_process_is_required_at_once(
    stores: tuple[SqlTokenStore, SqlTokenStore],
) -> None:
    api, _ = stores
    _, token = api.add("writer", [Scope.WRITE_EVENTS])
    verified = api.authenticate(token)
    assert verified is not None and verified.public_key is None
    api.set_key("writer", "A" * 43 + "=")
    assert api.recently_verified(token) is None
    keyed = api.authenticate(token)
    assert keyed is not None and keyed.public_key == bytes(32)
