"""The admin token secret file: the API accepts that token with the admin scope, and only it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from api.http.app import ADMIN_CLIENT_PREFIX, ensure_admin_client, read_admin_token
from api.token_store import Scope, SqlTokenStore
from ledger.config import SettingsError
from projections.sqlite import SQLiteProjectionDatabase

TOKEN = "cl_" + "a" * 43
OTHER = "cl_" + "b" * 43


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqlTokenStore]:
    clients = SqlTokenStore(SQLiteProjectionDatabase(tmp_path / "api.sqlite3"))
    try:
        yield clients
    finally:
        clients.db.close()


def test_the_token_becomes_an_admin_client_once(store: SqlTokenStore) -> None:
    name = ensure_admin_client(store, TOKEN)
    assert ensure_admin_client(store, TOKEN) == name  # every worker, every restart
    client = store.authenticate(TOKEN)
    assert client is not None and client.name == name and client.allows(Scope.ADMIN)
    assert [c.name for c in store.list()] == [name]


def test_a_new_token_in_the_file_revokes_the_one_before(store: SqlTokenStore) -> None:
    ensure_admin_client(store, TOKEN)
    ensure_admin_client(store, OTHER)
    old, new = store.authenticate(TOKEN), store.authenticate(OTHER)
    assert old is not None and old.revoked_at is not None
    assert new is not None and new.revoked_at is None
    assert all(c.name.startswith(ADMIN_CLIENT_PREFIX) for c in store.list())


def test_the_file_cannot_revive_a_revoked_token_or_widen_a_client(store: SqlTokenStore) -> None:
    name = ensure_admin_client(store, TOKEN)
    store.revoke(name)
    with pytest.raises(SettingsError, match="revoked"):
        ensure_admin_client(store, TOKEN)
    _, reader = store.add("reader", [Scope.READ_STATE])
    with pytest.raises(SettingsError, match="lacks the admin scope"):
        ensure_admin_client(store, reader)


@pytest.mark.parametrize("content", ["", "short", "two words " + "x" * 40, "é" * 40])
def test_an_unfit_token_file_is_refused_without_showing_it(tmp_path: Path, content: str) -> None:
    path = tmp_path / "admin.token"
    path.write_text(content)
    with pytest.raises(SettingsError, match="CONSENT_LEDGER_ADMIN_TOKEN_FILE") as caught:
        read_admin_token(path)
    assert not content or content not in str(caught.value)
    assert read_admin_token(_written(tmp_path / "good", TOKEN + "\n")) == TOKEN


def _written(path: Path, text: str) -> Path:
    path.write_text(text)
    return path
