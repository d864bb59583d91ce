"""The end-to-end fixture: a real ``consent-ledger serve`` process on the test's storage, with one
client per role (and one revoked)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from click.testing import CliRunner

from api.cli import cli
from ledger.config import Settings
from tests.support.processes import add_client, free_port
from tests.support.serve import serve


@dataclass
class Server:
    url: str
    tokens: dict[str, str]
    settings: Settings

    def client(self, who: str | None = "writer") -> httpx.Client:
        headers = {} if who is None else {"Authorization": f"Bearer {self.tokens[who]}"}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)


@pytest.fixture
def server(settings: Settings) -> Iterator[Server]:
    tokens = {
        "writer": add_client(settings, "writer", "events:write", "state:read", "history:read"),
        "reader": add_client(settings, "reader", "state:read"),
        "responder": add_client(settings, "responder", "incidents:manage"),
        "admin": add_client(settings, "admin", "admin"),
        "revoked": add_client(settings, "revoked", "admin"),
    }
    args = ["--data-dir", str(settings.data_dir)]
    env = {"CONSENT_LEDGER_DATABASE_SCHEMA": settings.database_schema}
    revoked = CliRunner().invoke(
        cli,
        [
            *args,
            *(["--database-url", settings.database_url] if settings.database_url else []),
            "clients",
            "revoke",
            "revoked",
        ],
        env=env,
    )
    assert revoked.exit_code == 0, revoked.output
    with serve(settings, free_port()) as up:
        yield Server(up.url, tokens, settings)
