"""Run the ``consent-ledger`` command in-process against a test's settings (either backend)."""

from __future__ import annotations

from click.testing import CliRunner, Result

from api.cli import cli
from ledger.config import Settings


def run_cli(settings: Settings, *args: str, stdin: str | None = None) -> Result:
    options = ["--data-dir", str(settings.data_dir)]
    env = {}
    if settings.database_url:
        options += ["--database-url", settings.database_url]
        env["CONSENT_LEDGER_DATABASE_SCHEMA"] = settings.database_schema
    return CliRunner().invoke(cli, [*options, *args], input=stdin, env=env, catch_exceptions=False)
