"""The lean decision route (api/http/lean_reads.py) answers exactly as FastAPI's route does, on
both backends: the same status, the same body, the same content type, for every kind of answer
(yes, no for each reason, not_required, an erased subject, a subject never seen), in a
writer's app and in a reads process's and for every
question it hands on (an unknown purpose, bad, missing, repeated or extra parameters, a missing
or wrong token, HEAD).

FastAPI's own answer to a question is had by adding ``wait_for=1`` (an event the read models
have processed: it changes no answer, and the lean route never takes a question with it)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from api.http import lean_reads
from api.http.app import ServerSettings, create_app, open_client_database
from api.token_store import Scope, SqlTokenStore
from ledger.application import LedgerApplication
from ledger.config import Settings, open_ledger
from projections.read_models import ReadModels
from tests import facts
from tests.support.in_process import InProcess

PATH = "/v1/consent/decision"


@dataclass
class Desk:
    http: InProcess
    tokens: dict[str, str]
    people: dict[str, str]
    """Who -> reference."""
    taken: list[tuple[str, str]]
    """The questions the lean route answered itself."""

    def ask(self, params: Any, who: str | None = "reader", method: str = "GET") -> httpx.Response:
        headers = {} if who is None else {"Authorization": f"Bearer {self.tokens[who]}"}
        return self.http.run(self.http.client.request(method, PATH, params=params, headers=headers))

    def both(self, params: Any, **kw: Any) -> tuple[httpx.Response, httpx.Response]:
        """The answer to ``params``, and FastAPI's answer to the same question."""
        items = list(params.items()) if isinstance(params, dict) else list(params)
        return self.ask(items, **kw), self.ask([*items, ("wait_for", "1")], **kw)


def same(lean: httpx.Response, full: httpx.Response) -> None:
    assert lean.status_code == full.status_code, (lean.text, full.text)
    assert lean.headers.get("content-type") == full.headers.get("content-type")
    assert lean.content == full.content


@pytest.fixture(params=["all", "reads"])
def desk(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> Iterator[Desk]:
    """A writer's app (the lean route queries in its thread pool) or a reads process's (on the
    event loop), on a ledger whose read models are caught up."""
    cli = SqlTokenStore(open_client_database(settings))
    tokens = {
        "reader": cli.add("reader", [Scope.READ_STATE])[1],
        "writer": cli.add("writer", [Scope.WRITE_EVENTS])[1],
    }
    taken: list[tuple[str, str]] = []
    decide = lean_reads.decide

    def counted(queries: Any, subject: str, purpose: str) -> bytes:
        answer = decide(queries, subject, purpose)
        taken.append((subject, purpose))
        return answer

    monkeypatch.setattr(lean_reads, "decide", counted)
    server = ServerSettings(projections=False, signer=False, role=request.param)
    app = create_app(settings, server=server)
    http = InProcess(app)
    ledger: LedgerApplication = open_ledger(settings)
    worker = ReadModels(ledger, settings)
    people = {n: facts.ref(n) for n in ("given", "withdrawn", "refused", "erased", "unknown")}
    pol = facts.policy()
    ledger.append(
        [
            pol,
            facts.consent(people["given"], pol["version"], contact="ana@example.org"),
            facts.consent(people["withdrawn"], pol["version"]),
            facts.consent(people["withdrawn"], pol["version"], kind="withdrawn"),
            facts.consent(people["refused"], pol["version"], kind="refused"),
            facts.consent(people["erased"], pol["version"]),
        ]
    )
    ledger.erase(subject_ref=people["erased"])
    worker.runner.catch_up()
    try:
        yield Desk(http, tokens, people, taken)
    finally:
        worker.close()
        ledger.close()
        http.close()
        cli.db.close()


@pytest.mark.parametrize("who", ["given", "withdrawn", "refused", "erased", "unknown"])
@pytest.mark.parametrize("purpose", ["marketing_email", "service_provision", "usage_analytics"])
def test_every_kind_of_answer_is_the_full_routes(desk: Desk, who: str, purpose: str) -> None:
    subject = desk.people[who]
    lean, full = desk.both({"subject": subject, "purpose": purpose})
    assert lean.status_code == 200, lean.text
    same(lean, full)
    assert desk.taken == [(subject, purpose)]  # answered by the lean route itself
    if who == "given" and purpose == "marketing_email":
        assert lean.json()["answer"] == "yes"
    if purpose == "service_provision":
        assert lean.json()["answer"] == "not_required"


QUESTIONS_HANDED_ON: list[tuple[str, Any, str | None, int]] = [
    ("an unknown purpose", {"subject": "x", "purpose": "no_such_purpose"}, "reader", 404),
    ("no purpose", {"subject": "x"}, "reader", 400),
    ("no parameter", {}, "reader", 400),
    ("a blank subject", {"subject": "", "purpose": "marketing_email"}, "reader", 400),
    ("a control character", {"subject": "a\tb", "purpose": "marketing_email"}, "reader", 400),
    ("a subject too long", {"subject": "s" * 257, "purpose": "marketing_email"}, "reader", 400),
    ("a purpose too long", {"subject": "s", "purpose": "p" * 65}, "reader", 400),
    (
        "a repeated subject",
        [("subject", "a"), ("subject", "b"), ("purpose", "marketing_email")],
        "reader",
        400,
    ),
    # A parameter the route does not name is ignored by FastAPI's route, which answers.
    ("an extra parameter", {"subject": "s", "purpose": "marketing_email", "x": "1"}, "reader", 200),
    ("a moment", {"subject": "s", "purpose": "marketing_email", "at": "2026-01-01"}, "reader", 400),
    ("no token", {"subject": "s", "purpose": "marketing_email"}, None, 401),
    ("a token without the scope", {"subject": "s", "purpose": "marketing_email"}, "writer", 403),
]


@pytest.mark.parametrize(
    ("what", "params", "who", "status"),
    QUESTIONS_HANDED_ON,
    ids=[q[0] for q in QUESTIONS_HANDED_ON],
)
def test_every_other_question_gets_the_full_routes_answer(
    desk: Desk, what: str, params: Any, who: str | None, status: int
) -> None:
    lean, full = desk.both(params, who=who)
    assert lean.status_code == status, (what, lean.text)
    same(lean, full)
    # Answered by FastAPI's route: a token problem before the query, the rest handed on.
    assert desk.taken == []


def test_head_is_not_served_by_the_lean_route(desk: Desk) -> None:
    params = {"subject": desk.people["given"], "purpose": "marketing_email"}
    lean, full = desk.both(params, method="HEAD")
    assert lean.status_code == full.status_code == 405
    assert desk.taken == []


@given(
    subject=st.text(min_size=0, max_size=300),
    purpose=st.sampled_from(["marketing_email", "service_provision", "nope", ""]) | st.text(),
)
@hypothesis_settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_any_subject_and_purpose_get_the_full_routes_answer(
    desk: Desk, subject: str, purpose: str
) -> None:
    lean, full = desk.both({"subject": subject, "purpose": purpose})
    same(lean, full)
