"""A real ``consent-ledger serve`` in a process of its own, for end-to-end tests."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from ledger.config import Settings
from tests.support.processes import ROOT, settings_env
from tests.support.waiting import answers_healthz, wait_until


@dataclass(frozen=True)
class Serving:
    url: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path


@contextlib.contextmanager
def serve(settings: Settings, port: int, env: Mapping[str, str] | None = None) -> Iterator[Serving]:
    """``serve`` on ``port`` with the settings' environment (and ``env`` on top), answering
    ``/healthz`` before this yields; stopped (SIGTERM) afterwards. It logs to a file, never to
    an undrained pipe (which fills after some 250 requests and stops the server)."""
    environment = settings_env(settings)
    environment.update(env or {})
    log_path = settings.data_dir / "serve.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "api.cli", "serve", "--port", str(port)],
            env=environment,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
        url = f"http://127.0.0.1:{port}"
        try:

            def started() -> bool:
                assert process.poll() is None, log_path.read_text(errors="replace")
                return answers_healthz(url)

            wait_until(started, "the server did not start", seconds=30, interval=0.1)
            yield Serving(url, port, process, log_path)
        finally:
            process.terminate()
            process.wait(timeout=30)
