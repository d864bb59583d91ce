"""Start-up refuses a bad setting with one message naming it (and never a secret's value)."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from api.cli import cli
from api.http.app import ServerSettings
from ledger.config import Settings, SettingsError


def bad(tmp_path: Path, kind: str) -> str:
    if kind == "file":
        (tmp_path / "a-file").write_text("x")
        return str(tmp_path / "a-file")
    (tmp_path / "a-dir").mkdir(exist_ok=True)
    return str(tmp_path / "a-dir")


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("KEYS_DIR", "file", "is not a directory"),
        ("DATA_DIR", "file", "is not a directory"),
        ("MASTER_KEY_FILE", "dir", "is not a regular file"),
        ("DATABASE_URL", "postgresql://u:pw@db:port/x", "port"),
        ("DATABASE_URL", "sqlite:///x.db", "postgresql://"),
        ("ORIGIN", " edge", "one line"),
        ("MAX_BATCH", "-5", "outside"),
        ("BACKDATE_HOURS", "1.5", "not an integer"),
    ],
)
def test_a_bad_ledger_setting_is_named(tmp_path: Path, name: str, value: str, says: str) -> None:
    if value in ("file", "dir"):
        value = bad(tmp_path, value)
    with pytest.raises(SettingsError, match=f"CONSENT_LEDGER_{name}") as caught:
        Settings.from_env({f"CONSENT_LEDGER_{name}": value})
    assert says in str(caught.value)
    assert "pw" not in str(caught.value)


@pytest.mark.parametrize("value", ["not base64!", "c2hvcnQ="])
def test_a_bad_master_key_is_named_and_never_shown(value: str) -> None:
    with pytest.raises(SettingsError, match="CONSENT_LEDGER_MASTER_KEY") as caught:
        Settings.from_env({"CONSENT_LEDGER_MASTER_KEY": value})
    assert value not in str(caught.value)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("PORT", "http"),
        ("PORT", "70000"),
        ("WORKERS", "0"),
        ("PROJECTIONS", "maybe"),
        ("SIGNER", "2"),
        ("LOG_FORMAT", "xml"),
        ("LOG_LEVEL", "loud"),
        ("SHUTDOWN_TIMEOUT", "-1"),
        ("HOST", "my host"),
        ("ADMIN_TOKEN_FILE", "/no/such/token"),
    ],
)
def test_a_bad_server_setting_is_named(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=f"CONSENT_LEDGER_{name}"):
        ServerSettings.from_env({f"CONSENT_LEDGER_{name}": value})


def test_server_settings_from_the_environment_and_back() -> None:
    env = {
        "CONSENT_LEDGER_HOST": "0.0.0.0",
        "CONSENT_LEDGER_PORT": "9000",
        "CONSENT_LEDGER_WORKERS": "4",
        "CONSENT_LEDGER_PROJECTIONS": "false",
        "CONSENT_LEDGER_SIGNER": "off",
        "CONSENT_LEDGER_LOG_FORMAT": "JSON",
    }
    server = ServerSettings.from_env(env)
    assert (server.host, server.port, server.workers) == ("0.0.0.0", 9000, 4)
    assert not server.projections and not server.signer and server.log_format == "json"
    assert ServerSettings.from_env(server.environment()) == server


def test_serve_stops_at_once_with_exit_status_1_naming_the_setting(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli,
        ["--data-dir", str(tmp_path), "serve"],
        env={"CONSENT_LEDGER_PORT": "eighty", "CONSENT_LEDGER_WORKERS": "2"},
    )
    assert result.exit_code == 1
    assert "CONSENT_LEDGER_PORT='eighty' is not an integer" in result.output
    assert "Traceback" not in result.output


def test_serve_refuses_a_token_file_it_cannot_use(tmp_path: Path) -> None:
    token_file = tmp_path / "admin.token"
    token_file.write_text("hunter2")
    result = CliRunner().invoke(
        cli,
        ["--data-dir", str(tmp_path / "data"), "serve", "--admin-token-file", str(token_file)],
    )
    assert result.exit_code == 1
    assert "CONSENT_LEDGER_ADMIN_TOKEN_FILE" in result.output and "hunter2" not in result.output


def test_any_command_stops_on_a_bad_ledger_setting(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli, ["--data-dir", str(tmp_path), "keygen"], env={"CONSENT_LEDGER_MINIMUM_AGE": "old"}
    )
    assert result.exit_code != 0  # api/cli/__init__.py reports it as a usage error
    assert "CONSENT_LEDGER_MINIMUM_AGE='old' is not an integer" in result.output
    assert not (tmp_path / "keys").exists()


def test_serve_stops_at_once_on_a_bad_read_model_setting(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli,
        ["--data-dir", str(tmp_path / "data"), "serve"],
        env={"CONSENT_LEDGER_REQUEST_DUE_DAYS_BY_JURISDICTION": "EU:30"},
    )
    assert result.exit_code == 1
    assert "CONSENT_LEDGER_REQUEST_DUE_DAYS_BY_JURISDICTION takes CODE=DAYS" in result.output
    assert "Traceback" not in result.output and not (tmp_path / "data").exists()
