"""Decisions over HTTP while the read models run elsewhere (as ``projections run`` does): a
policy or an erasure they process is in the next answer; a revoked token stops."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from api.http.app import ServerSettings, create_app, open_client_database
from api.token_store import VERIFIED_SECONDS, Scope, SqlTokenStore
from ledger.application import LedgerApplication
from ledger.config import Settings, open_ledger
from projections.read_models import ReadModels
from tests import facts
from tests.support.in_process import InProcess

PURPOSE = "marketing_email"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Deployment:
    http: InProcess
    worker: ReadModels
    """The read models' process: its own ledger, database connections and runner."""
    ledger: LedgerApplication
    tokens: dict[str, str]
    store: SqlTokenStore
    """The API's clients, on a clock the test steps."""
    clock: Clock

    def record(self, *items: dict[str, Any]) -> list[int]:
        receipts = self.ledger.append(list(items))
        self.worker.runner.catch_up()
        return [r.seq for r in receipts]

    def ask(self, path: str, who: str = "reader", **params: str) -> Any:
        headers = {"Authorization": f"Bearer {self.tokens[who]}"}
        return self.http.get(path, params=params, headers=headers)

    def decision(self, subject: str) -> dict[str, Any]:
        response = self.ask("/v1/consent/decision", subject=subject, purpose=PURPOSE)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body


@pytest.fixture
def deployment(settings: Settings) -> Iterator[Deployment]:
    cli = SqlTokenStore(open_client_database(settings))
    tokens = {
        "reader": cli.add("reader", [Scope.READ_STATE])[1],
        "other": cli.add("other", [Scope.READ_STATE])[1],
    }
    app = create_app(settings, server=ServerSettings(projections=False, signer=False))
    http = InProcess(app)
    clock = Clock()
    store = app.state.clients = SqlTokenStore(app.state.clients.db, clock=clock)
    ledger = open_ledger(settings)
    worker = ReadModels(ledger, settings)
    try:
        yield Deployment(http, worker, ledger, tokens, store, clock)
    finally:
        worker.close()
        ledger.close()
        http.close()
        cli.db.close()


def test_a_policy_processed_elsewhere_is_in_the_next_decision(deployment: Deployment) -> None:
    policy = facts.policy(effective_at="2026-01-01T00:00:00Z")
    subject = facts.ref("user")
    [_, given] = deployment.record(policy, facts.consent(subject, policy["version"]))
    first = deployment.decision(subject)
    assert (first["allowed"], first["decided_by_seq"]) == (True, given)
    [renewed] = deployment.record(
        facts.policy(effective_at=facts.now(), material=True, occurred_at=facts.now())
    )
    second = deployment.decision(subject)
    assert (second["allowed"], second["status"], second["decided_by_seq"]) == (
        False,
        "renewal_required",
        renewed,
    )


def test_an_erasure_processed_elsewhere_is_in_the_next_answers(deployment: Deployment) -> None:
    policy = facts.policy()
    subject = facts.ref("user")
    deployment.record(policy, facts.consent(subject, policy["version"]))
    assert deployment.decision(subject)["allowed"]
    deployment.ledger.erase(subject_ref=subject)
    deployment.worker.runner.catch_up()
    # Erasure unlinks the reference: it is answered as a reference never seen (nothing in
    # the answer points at the erased subject's events, not even the erasure's seq).
    stranger = facts.ref("user")
    answer, unknown = deployment.decision(subject), deployment.decision(stranger)
    assert answer["allowed"] is False
    assert {k: v for k, v in answer.items() if k != "subject"} == {
        k: v for k, v in unknown.items() if k != "subject"
    }
    state = deployment.ask("/v1/consent/state", subject=subject).json()
    assert state["purposes"] == [] and state.get("erased") is None


def test_a_token_revoked_after_it_was_remembered_stops(
    deployment: Deployment, settings: Settings
) -> None:
    subject = facts.ref("user")
    deployment.record(facts.policy())  # marketing_email: a known purpose
    assert deployment.decision(subject)["allowed"] is False  # remembered from here on
    other = deployment.ask("/v1/consent/decision", "other", subject=subject, purpose=PURPOSE)
    assert other.status_code == 200
    # Revoked by the command line, another process: stopped once the verified moment ends.
    cli = SqlTokenStore(open_client_database(settings))
    try:
        cli.revoke("reader")
    finally:
        cli.db.close()
    deployment.clock.now += VERIFIED_SECONDS
    stopped = deployment.ask("/v1/consent/decision", subject=subject, purpose=PURPOSE)
    assert stopped.status_code == 401
    # Revoked in this process: stopped at once.
    deployment.store.revoke("other")
    stopped = deployment.ask("/v1/consent/decision", "other", subject=subject, purpose=PURPOSE)
    assert stopped.status_code == 401
