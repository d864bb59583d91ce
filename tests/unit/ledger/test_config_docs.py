"""docs/configuration.md lists every setting the code reads, and no other; every serve flag."""

from __future__ import annotations

import re
from pathlib import Path

import click

from api.app import ServerSettings
from api.cli_server import serve
from ledger.config import ENV_PREFIX, VARIABLES

ROOT = Path(__file__).resolve().parents[3]
DOC = (ROOT / "docs" / "configuration.md").read_text()
READ_MODEL_VARIABLES = (
    "AUTHORITY_DEADLINE_HOURS",
    "REQUEST_DUE_DAYS",
    "REQUEST_DUE_DAYS_BY_JURISDICTION",
    "LEGAL_HOLD_DAYS",
)


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
    read_models = (ROOT / "projections" / "read_models.py").read_text()
    for name in READ_MODEL_VARIABLES:
        assert f'"{name}"' in read_models or f"{ENV_PREFIX}{name}" in read_models
    expected = (
        {ENV_PREFIX + name for name in VARIABLES}
        | set(server)
        | {ENV_PREFIX + name for name in READ_MODEL_VARIABLES}
    )
    assert set(documented()) == expected


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
