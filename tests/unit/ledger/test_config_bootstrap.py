"""api.bootstrap: every process gets its ledger, read models and client store from one place."""

from __future__ import annotations

from pathlib import Path

import pytest
from psycopg_pool import PoolClosed

from api.bootstrap import Configuration, build
from api.token_store import Scope
from ledger.config import Settings, SettingsError
from ledger.errors import StorageError
from tests import facts


def test_the_parts_are_wired_on_the_one_storage_and_closed_together(settings: Settings) -> None:
    wiring = build(settings, clients=True)
    try:
        assert wiring.read_models is not None and wiring.clients is not None
        wiring.application.append([facts.policy()])
        assert wiring.read_models.runner.catch_up() > 0  # the read models see the append
        assert wiring.read_models.runner.catch_up() == 0
        _, token = wiring.clients.add("bootstrap-test", [Scope.READ_STATE])
        found = wiring.clients.authenticate(token)
        assert found is not None and found.name == "bootstrap-test"
    finally:
        wiring.close()
    # SQLite: the recorder says it is closed; PostgreSQL: its pool does (psycopg_pool.PoolClosed)
    with pytest.raises((StorageError, PoolClosed), match="closed"):
        wiring.application.append([facts.policy()])


def test_only_the_ledger_when_asked(tmp_path: Path) -> None:
    wiring = build(Settings(data_dir=tmp_path), read_models=False)
    try:
        assert wiring.read_models is None and wiring.clients is None
        assert not (tmp_path / "projections.sqlite3").exists()
    finally:
        wiring.close()


def test_a_bad_read_model_setting_stops_the_build_before_anything_is_opened(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONSENT_LEDGER_LEGAL_HOLD_DAYS", "0")
    data_dir = tmp_path / "data"
    with pytest.raises(SettingsError, match="CONSENT_LEDGER_LEGAL_HOLD_DAYS='0' must be a whole"):
        build(Settings(data_dir=data_dir))
    assert not data_dir.exists()


def test_the_configuration_is_every_group_read_from_one_environment() -> None:
    config = Configuration.from_env(
        {
            "CONSENT_LEDGER_MINIMUM_AGE": "16",
            "CONSENT_LEDGER_REQUEST_DUE_DAYS": "30",
            "CONSENT_LEDGER_PORT": "9000",
        }
    )
    assert config.ledger.limits.minimum_age == 16
    assert config.read_models.request_due_days == 30
    assert config.server.port == 9000
    with pytest.raises(SettingsError, match="CONSENT_LEDGER_WORKERS"):
        Configuration.from_env({"CONSENT_LEDGER_WORKERS": "0"})
