"""Starting the ledger's own processes from tests: the environment a child process needs, a free
port, an appender process, an API client made with the command line, ``demo --serve``."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from queue import Empty, Queue

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
    settings: Settings,
    prefix: str,
    version: str,
    batches: int,
    size: int,
    subjects: list[str],
    committer: Mapping[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """A process appending ``batches`` batches of ``size`` facts (tests/integration/appender.py),
    printing each receipt's seq; with ``committer`` (a committer process's environment), it
    hands its appends to that committer, as a worker of ``serve`` does."""
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
        env=settings_env(settings) | dict(committer or {}),
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


class PrintedLines:
    """The lines a child process prints, read by a thread of their own as they come."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process
        self.said: list[str] = []
        self._lines: Queue[str] = Queue()
        self._reader = threading.Thread(target=self._pump, daemon=True)
        self._reader.start()

    def _pump(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._lines.put(line.rstrip("\n"))

    def until(self, found: Callable[[str], bool], seconds: float = 120) -> list[str]:
        """Every line printed so far, once one of them is ``found`` (an AssertionError naming
        the lines printed when none is within ``seconds`` of the last)."""
        while not any(found(line) for line in self.said):
            try:
                self.said.append(self._lines.get(timeout=seconds))
            except Empty:
                raise AssertionError("\n".join(self.said)) from None
        return self.said

    def close(self) -> None:
        self._reader.join(timeout=10)
        assert self.process.stdout is not None
        self.process.stdout.close()


@contextmanager
def demo_serving(settings: Settings, port: int, users: int) -> Iterator[PrintedLines]:
    """``consent-ledger demo --users N --serve`` on ``port``, its printed lines, and the process
    terminated afterwards."""
    env = settings_env(settings) | {"CONSENT_LEDGER_PORT": str(port), "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "api.cli", "demo", "--users", str(users), "--serve"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    printed = PrintedLines(process)
    try:
        yield printed
    finally:
        process.terminate()
        process.wait(timeout=30)
        printed.close()
