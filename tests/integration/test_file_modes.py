"""SQLite database files are readable by their owner only (0600), like the keys.

The log, the key store, the read models and the API clients each live in a file of the data
directory; SQLite's -wal and -shm files take the database file's permissions.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from api.http.app import open_client_database
from api.token_store import Scope, SqlTokenStore
from ledger.config import Settings, generate_keys, open_ledger
from projections.read_models import ReadModels, ReadModelSettings
from tests import facts


@pytest.fixture
def usual_umask() -> Iterator[None]:
    previous = os.umask(0o022)  # what most shells set: new files 0644
    try:
        yield
    finally:
        os.umask(previous)


def test_every_sqlite_file_is_created_for_its_owner_only(tmp_path: Path, usual_umask: None) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    generate_keys(settings)
    ledger = open_ledger(settings)
    models = ReadModels(ledger, settings, ReadModelSettings.from_env({}))
    clients = open_client_database(settings)
    try:
        pol = facts.policy()
        ledger.append([pol, facts.consent(facts.ref("user"), pol["version"])])
        models.runner.catch_up()
        SqlTokenStore(clients).add("writer", [Scope.WRITE_EVENTS])
        files = sorted(settings.data_dir.glob("*.sqlite3*"))
        names = {f.name for f in files}
        for wanted in ("ledger.sqlite3", "keystore.sqlite3", "api.sqlite3"):
            assert wanted in names and wanted + "-wal" in names, names
        assert any(name.startswith("projections") for name in names), names
        modes = {f.name: stat.S_IMODE(f.stat().st_mode) for f in files}
        assert modes == dict.fromkeys(names, 0o600)
    finally:
        clients.close()
        models.close()
        ledger.close()
