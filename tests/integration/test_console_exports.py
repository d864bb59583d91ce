"""A bundle exported from the console, on both backends: started with a purpose, made by the
API's export jobs, downloaded, and verified offline with the ledger's keys; refused without a
purpose, without the scope, for a scope the log holds nothing of, and for another client."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from api.http.app import ServerSettings, create_app, open_client_database
from api.token_store import Scope, SqlTokenStore
from ledger.application import LedgerApplication
from ledger.config import Settings
from ledger.verifier.bundle import verify_bundle
from ledger.verifier.note import parse_verifier_key
from tests import facts
from tests.support.in_process import InProcess
from tests.support.waiting import wait_until


@dataclass
class Console:
    http: InProcess
    ledger: LedgerApplication
    keys: list[str]
    tokens: dict[str, str]

    def sign_in(self, who: str) -> None:
        self.http.client.cookies.clear()
        page = self.http.get("/console/login")
        answer = self.http.post(
            "/console/login", data={"csrf": _csrf(page), "token": self.tokens[who]}
        )
        assert answer.status_code == 303


def _csrf(page: httpx.Response) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert found is not None, page.text
    return found.group(1)


@pytest.fixture
def console(settings: Settings) -> Iterator[Console]:
    cli = SqlTokenStore(open_client_database(settings))
    tokens = {
        "exporter": cli.add("exporter", [Scope.CREATE_EXPORTS])[1],
        "other": cli.add("other-exporter", [Scope.CREATE_EXPORTS])[1],
        "auditor": cli.add("auditor", [Scope.READ_HISTORY])[1],
    }
    app = create_app(settings, server=ServerSettings(projections=True, signer=True))
    http = InProcess(app)
    try:
        yield Console(http, app.state.ledger, list(app.state.verifier_keys), tokens)
    finally:
        http.close()
        cli.db.close()


def test_a_bundle_started_in_the_console_verifies_offline(console: Console, tmp_path: Path) -> None:
    console.ledger.append([facts.incident("inc-5")])
    console.sign_in("exporter")
    form = console.http.get("/console/exports")
    data = {"csrf": _csrf(form), "kind": "incident", "incident_id": "inc-5"}
    blank = console.http.post("/console/exports", data={**data, "purpose": " "})
    assert blank.status_code == 422 and 'id="purpose-error"' in blank.text
    nothing = console.http.post(
        "/console/exports", data={**data, "incident_id": "inc-404", "purpose": "the file"}
    )
    assert nothing.status_code == 422 and "nothing to export" in nothing.text
    started = console.http.post("/console/exports", data={**data, "purpose": "the DPA's file"})
    assert started.status_code == 303
    page_path = started.headers["location"]

    def done() -> str | None:
        page = console.http.get(page_path)
        state = re.search(r'id="export-state">([a-z]+)<', page.text)
        assert state is not None and state.group(1) not in ("failed", "expired"), page.text
        return page.text if state.group(1) == "done" else None

    page = wait_until(done, "the export did not finish", seconds=60)
    assert page is not None and 'http-equiv="refresh"' not in page
    bundle = console.http.get(f"{page_path}/bundle")
    assert bundle.status_code == 200 and bundle.headers["content-type"] == "application/zip"
    path = tmp_path / "bundle.zip"
    path.write_bytes(bundle.content)
    # Raises BundleError naming the first check that fails.
    verify_bundle(path, [parse_verifier_key(k) for k in console.keys], jobs=1)
    # Another client's export is unknown to this one; without the scope, no page.
    console.sign_in("other")
    assert console.http.get(page_path).status_code == 404
    assert console.http.get(f"{page_path}/bundle").status_code == 404
    console.sign_in("auditor")
    assert console.http.get("/console/exports").status_code == 403
    assert console.http.get(page_path).status_code == 403
