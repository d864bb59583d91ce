"""Starting the ledger's own processes from tests: the environment a child process needs, a free
port, an appender process, an API client made with the command line."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from api.cli import cli
from ledger.config import Settings

ROOT = Path(__file__).resolve().parents[2]
"""The repository: the working directory of every child process."""


def settings_env(settings: Settings) -> dict[str, str]:
    """This environment, with the settings a child process needs to open the same ledger."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), CONSENT_LEDGER_DATA_DIR=str(settings.data_dir))
    if settings.database_url:
        env["CONSENT_LEDGER_DATABASE_URL"] = settings.database_url
        env["CONSENT_LEDGER_DATABASE_SCHEMA"] = settings.database_schema
    return env


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (now)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_appender(
    settings: Settings, prefix: str, version: str, batches: int, size: int, subjects: list[str]
) -> subprocess.Popen[bytes]:
    """A process appending ``batches`` batches of ``size`` facts (tests/integration/appender.py),
    printing each receipt's seq."""
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.integration.appender",
            prefix,
            version,
            str(batches),
            str(size),
            *subjects,
        ],
        env=settings_env(settings),
        cwd=ROOT,
        stdout=subprocess.PIPE,
    )


def add_client(settings: Settings, name: str, *scopes: str) -> str:
    """Add an API client with ``consent-ledger clients add``; its token."""
    args = ["--data-dir", str(settings.data_dir)]
    if settings.database_url:
        args += ["--database-url", settings.database_url]
    options = [part for scope in scopes for part in ("--scope", scope)]
    env = {"CONSENT_LEDGER_DATABASE_SCHEMA": settings.database_schema}
    result = CliRunner().invoke(cli, [*args, "clients", "add", name, *options], env=env)
    assert result.exit_code == 0, result.output
    return result.output.strip().splitlines()[-1]
