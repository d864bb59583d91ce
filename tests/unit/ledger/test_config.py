"""Settings: every bad value stops start-up with a message naming it; secrets stay out of errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from ledger.config import Settings, SettingsError, generate_keys, open_ledger
from ledger.errors import StorageError


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("MINIMUM_AGE", "abc"),
        ("MINIMUM_AGE", "99"),
        ("MAX_BATCH", "0"),
        ("BACKDATE_HOURS", "-1"),
        ("DATABASE_URL", "mysql://localhost/x"),
        ("DATABASE_SCHEMA", "Robert'); DROP TABLE"),
        ("MAX_GROUP_EVENTS", "lots"),
    ],
)
def test_a_bad_setting_is_named(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=f"CONSENT_LEDGER_{name}"):
        Settings.from_env({f"CONSENT_LEDGER_{name}": value})


def test_settings_are_read_from_the_environment() -> None:
    settings = Settings.from_env(
        {
            "CONSENT_LEDGER_DATA_DIR": "/srv/ledger",
            "CONSENT_LEDGER_DATABASE_URL": "postgresql://ledger@db/ledger",
            "CONSENT_LEDGER_MINIMUM_AGE": "16",
            "CONSENT_LEDGER_ORIGIN": "ledger.example.org/consents",
        }
    )
    assert settings.data_dir == Path("/srv/ledger") and settings.uses_postgres
    assert settings.limits.minimum_age == 16 and settings.origin == "ledger.example.org/consents"


def test_an_unreachable_database_fails_at_once_without_its_password(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path, database_url="postgresql://ledger:s3cr3t-pw@127.0.0.1:9/ledger"
    )
    generate_keys(settings)
    with pytest.raises(StorageError) as caught:
        open_ledger(settings)
    assert "127.0.0.1:9/ledger" in str(caught.value)
    assert "s3cr3t-pw" not in str(caught.value)
