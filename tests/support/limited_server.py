"""A real ``consent-ledger serve`` with limits set from the environment and one writer client:
what the limits tests and the documented-rules tests run against."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from ledger.config import Settings
from tests.support.processes import add_client, free_port
from tests.support.serve import serve


@dataclass
class LimitedServer:
    url: str
    port: int
    token: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def client(self, timeout: float = 30) -> httpx.Client:
        return httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {self.token}"}, timeout=timeout
        )

    def connect(self) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        return sock

    def rss_kib(self) -> int:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise AssertionError("no VmRSS")

    def open_files(self) -> int:
        return len(os.listdir(f"/proc/{self.process.pid}/fd"))

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@contextlib.contextmanager
def serving(settings: Settings, **limits: int) -> Iterator[LimitedServer]:
    token = add_client(settings, "writer", "events:write", "history:read", "incidents:manage")
    env = {f"CONSENT_LEDGER_{name.upper()}": str(value) for name, value in limits.items()}
    env["CONSENT_LEDGER_LOG_LEVEL"] = "info"
    with serve(settings, free_port(), env) as up:
        yield LimitedServer(up.url, up.port, token, up.process, up.log_path)
