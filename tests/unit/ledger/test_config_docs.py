"""docs/configuration.md lists every setting the code reads, and no other; every serve flag.

Its settings tables are generated from the declarations (``python -m api.bootstrap --docs
--write``): a setting added, removed or changed in code and not in the page fails here."""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest

from api.bootstrap import (
    GROUPS,
    Configuration,
    docs_with_tables,
    generated_tables,
    readme_table,
)
from api.cli.server import serve
from api.http.app import ServerSettings
from ledger.config import ENV_PREFIX, VARIABLES, Environment, Settings, SettingsError
from projections.read_models import READ_MODEL_SETTINGS, ReadModelSettings

ROOT = Path(__file__).resolve().parents[3]
DOC = (ROOT / "docs" / "configuration.md").read_text()


def documented() -> dict[str, list[str]]:
    """Each table row's variable and its cells."""
    rows = {}
    for line in DOC.splitlines():
        match = re.match(r"\| `(CONSENT_LEDGER_[A-Z_]+)` \|", line)
        if match:
            rows[match[1]] = [cell.strip() for cell in line.strip("|").split("|")]
    return rows


def test_the_table_holds_every_setting_the_code_reads_and_no_other() -> None:
    server = ServerSettings(admin_token_file=Path("token")).environment()
    expected = (
        {ENV_PREFIX + name for name in VARIABLES}
        | set(server)
        | {s.variable for s in READ_MODEL_SETTINGS.settings}
    )
    assert set(documented()) == expected


def test_the_page_holds_exactly_the_tables_generated_from_the_declarations() -> None:
    assert generated_tables() in DOC, "run: python -m api.bootstrap --docs --write"
    assert docs_with_tables(DOC) == DOC


def test_the_readme_holds_the_ledgers_table_generated_from_the_declarations() -> None:
    """No hand-written copy to drift: the README's table is made from the same declarations."""
    readme = (ROOT / "README.md").read_text()
    assert readme_table() in readme, "run: python -m api.bootstrap --docs --write"
    assert "`CONSENT_LEDGER_DATA_DIR`" in readme_table()


def test_every_variable_is_declared_once_with_the_defaults_its_settings_object_has() -> None:
    variables = [s.variable for group in GROUPS for s in group.settings]
    assert len(variables) == len(set(variables))
    assert set(variables) == set(documented())
    unset = Configuration.from_env({})
    assert unset == Configuration(Settings(), ReadModelSettings(), ServerSettings())


def test_every_bound_is_enforced_with_a_message_naming_the_variable() -> None:
    for group in GROUPS:
        for setting in group.settings:
            if setting.kind in ("integer", "whole"):
                with pytest.raises(SettingsError, match=setting.variable):
                    Environment({setting.variable: str(setting.high + 1)}).read(setting)
                assert Environment({setting.variable: str(setting.high)}).read(setting) == (
                    setting.high
                )


def test_server_settings_go_to_the_workers_and_come_back_the_same(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("t" * 40)
    server = ServerSettings(
        host="0.0.0.0",
        port=9001,
        projections=False,
        admin_token_file=token,
        log_format="json",
        max_json_depth=8,
    )
    assert ServerSettings.from_env(server.environment()) == server


def test_every_serve_flag_and_default_is_in_the_table() -> None:
    rows = documented()
    defaults = ServerSettings()
    for name, value in defaults.environment().items():
        cell = rows[name][2].strip("`")
        assert cell == value or (cell, value) in {("true", "true"), ("false", "false")}, name
    flags = {
        opt
        for param in serve.params
        if isinstance(param, click.Option)
        for opt in (*param.opts, *param.secondary_opts)
    }
    cells = " ".join(row[1] for row in rows.values())
    assert sorted(flag for flag in flags if flag not in cells) == []
