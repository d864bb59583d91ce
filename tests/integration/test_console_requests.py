"""A data-subject request in the console, on both backends: its page shows the register's due
date and steps; the next step is appended through the ledger's validation (a reference that is
not the requester's is refused by the field, nothing recorded), only with events:write."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from api.http.app import ServerSettings, create_app, open_client_database
from api.token_store import Scope, SqlTokenStore
from ledger.application import LedgerApplication
from ledger.config import Settings
from projections.queries import Queries
from tests import facts
from tests.support.in_process import InProcess


@dataclass
class Console:
    http: InProcess
    ledger: LedgerApplication
    queries: Queries
    tokens: dict[str, str]


@pytest.fixture
def console(settings: Settings) -> Iterator[Console]:
    cli = SqlTokenStore(open_client_database(settings))
    tokens = {
        "officer": cli.add("officer", [Scope.READ_HISTORY, Scope.WRITE_EVENTS])[1],
        "auditor": cli.add("auditor", [Scope.READ_HISTORY])[1],
    }
    app = create_app(settings, server=ServerSettings(projections=True, signer=False))
    http = InProcess(app)
    try:
        yield Console(http, app.state.ledger, app.state.queries, tokens)
    finally:
        http.close()
        cli.db.close()


def _csrf(page: httpx.Response) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert found is not None, page.text
    return found.group(1)


def _received(console: Console) -> None:
    """Carol's request rq-7, in the request register once this returns."""
    (receipt,) = console.ledger.append([facts.request("carol-ref-3", "rq-7")])
    console.queries.wait_for(receipt.seq, 30.0, "requests")


def _sign_in(http: InProcess, token: str) -> None:
    http.client.cookies.clear()
    page = http.get("/console/login")
    assert http.post("/console/login", data={"csrf": _csrf(page), "token": token}).is_redirect


def test_a_request_step_through_the_console(
    console: Console,
) -> None:
    http, ledger, tokens = console.http, console.ledger, console.tokens
    _received(console)
    _sign_in(http, tokens["officer"])
    page = http.get("/console/requests/rq-7")
    assert page.status_code == 200 and 'id="request-status">received<' in page.text
    assert "carol-ref-3" not in page.text  # the register keeps a pseudonym; nothing is opened
    head = ledger.head()
    step = {"csrf": _csrf(page), "step": "identity_verified", "method": "account_login"}
    wrong = http.post("/console/requests/rq-7/steps", data={**step, "subject": "dave-ref-4"})
    assert wrong.status_code == 422
    assert 'id="identity_verified-subject-error"' in wrong.text and "subject_mismatch" in wrong.text
    assert ledger.head() == head
    right = http.post("/console/requests/rq-7/steps", data={**step, "subject": "carol-ref-3"})
    assert right.status_code == 303
    assert ledger.head() == head + 1
    after = http.get("/console/requests/rq-7")
    assert "identity verified" in after.text
    refused = http.post(
        "/console/requests/rq-7/steps",
        data={
            "csrf": _csrf(after),
            "step": "refused",
            "subject": "carol-ref-3",
            "ground": "manifestly_unfounded",
            "explanation": "The same request a fourth time this month.",
        },
    )
    assert refused.status_code == 303
    closed = http.get("/console/requests/rq-7")
    assert (
        'id="request-status">refused<' in closed.text and "Record the next step" not in closed.text
    )
    assert http.get("/console/requests/rq-8").status_code == 404
    assert http.get("/console/requests/rq%007").status_code == 404


def test_reading_a_request_needs_history_and_a_step_events_write(
    console: Console,
) -> None:
    http, ledger, tokens = console.http, console.ledger, console.tokens
    _received(console)
    _sign_in(http, tokens["auditor"])
    page = http.get("/console/requests/rq-7")
    assert page.status_code == 200 and "needs the scope events:write" in page.text
    head = ledger.head()
    answer = http.post(
        "/console/requests/rq-7/steps",
        data={"csrf": _csrf(page), "step": "fulfilled", "subject": "carol-ref-3"},
    )
    assert answer.status_code == 403 and "events:write" in answer.text
    assert ledger.head() == head
