"""The whole stack in one process, for hostile-input tests: the API (in process), its read
models (caught up on demand), and every way to read what was recorded.

:meth:`Stack.check_processable` is the promise of issue 14: whatever the ledger accepted is
processed by every read model, answers every register, decision and history query, exports,
verifies offline and renders in the report.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
from fastapi import FastAPI

from api.http.app import ServerSettings, create_app, open_client_database
from api.token_store import Scope, SqlTokenStore
from ledger.application import LedgerApplication
from ledger.config import Settings, load_keyring
from ledger.export import export_bundle
from ledger.verifier.bundle import verify_bundle
from ledger.verifier.note import format_verifier_key, parse_verifier_key
from projections.read_models import ReadModels
from tests.support.bundles import REPORT_SETTINGS
from tests.support.in_process import InProcess


@dataclass
class Seen:
    """The ids an accepted fact named: what to ask the read side about afterwards."""

    subjects: set[str] = field(default_factory=set)
    purposes: set[str] = field(default_factory=set)
    recipients: set[str] = field(default_factory=set)
    incidents: set[str] = field(default_factory=set)

    def add(self, fact: Any) -> None:
        if not isinstance(fact, dict):
            return
        for name in ("subject",):
            if isinstance(fact.get(name), str):
                self.subjects.add(fact[name])
        for name in ("subjects", "affected_subjects"):
            if isinstance(fact.get(name), list):
                self.subjects.update(s for s in fact[name] if isinstance(s, str))
        if isinstance(fact.get("purposes"), list):
            self.purposes.update(p for p in fact["purposes"] if isinstance(p, str))
        if isinstance(fact.get("purpose"), str):
            self.purposes.add(fact["purpose"])
        if isinstance(fact.get("recipient_id"), str):
            self.recipients.add(fact["recipient_id"])
        if isinstance(fact.get("incident_id"), str):
            self.incidents.add(fact["incident_id"])


@dataclass
class Stack:
    app: FastAPI
    http: InProcess
    settings: Settings
    tokens: dict[str, str]
    workdir: Path
    seen: Seen = field(default_factory=Seen)
    _exports: Iterator[int] = field(default_factory=itertools.count)

    @property
    def ledger(self) -> LedgerApplication:
        ledger: LedgerApplication = self.app.state.ledger
        return ledger

    @property
    def models(self) -> ReadModels:
        models: ReadModels = self.app.state.read_models
        return models

    def _headers(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}"}

    def post(self, path: str, body: Any, who: str = "admin") -> httpx.Response:
        """POST ``body`` (bytes as they are, anything else as JSON)."""
        content = body if isinstance(body, bytes) else orjson.dumps(body)
        headers = {**self._headers(who), "Content-Type": "application/json"}
        return self.http.post(path, content=content, headers=headers)

    def get(self, path: str, who: str = "admin", **params: Any) -> httpx.Response:
        return self.http.get(path, params=params, headers=self._headers(who))

    def record(self, facts: list[dict[str, Any]]) -> httpx.Response:
        """Send a batch; when it is accepted, remember the ids it named."""
        response = self.post("/v1/events", facts)
        if response.status_code in (200, 201):
            for fact in facts:
                self.seen.add(fact)
        return response

    def process(self) -> None:
        """Every read model catches up with the log, and none stopped on an event."""
        self.models.runner.catch_up()
        failed = [(s.name, s.error) for s in self.models.runner.status() if s.error]
        assert not failed, failed

    def check_processable(self, *, export: bool = True, about: Seen | None = None) -> None:
        """Everything recorded so far is processed and answers every question asked of it
        (of the subjects, recipients and incidents in ``about``: by default, every one seen)."""
        seen = about or self.seen
        self.process()
        ready = self.get("/readyz")
        assert ready.status_code == 200, ready.text
        for path in ("/v1/incidents", "/v1/requests"):
            self.ok(path)
        for incident_id in sorted(seen.incidents):
            response = self.get(f"/v1/incidents/{incident_id}")
            assert response.status_code in (200, 404), (incident_id, response.text)
        self.ok("/v1/disclosures", limit=1000)
        self.ok("/v1/disclosures", limit=1000, format="csv")
        self.ok("/v1/disclosures", limit=1000, violations="true")
        for recipient in sorted(seen.recipients)[:20]:
            self.ok("/v1/disclosures", recipient=recipient)
        purposes = sorted(seen.purposes)[:5] or ["marketing_email"]
        for subject in sorted(seen.subjects)[:20]:
            self.ok("/v1/subjects/history", subject=subject)
            self.ok("/v1/consent/state", subject=subject)
            self.ok("/v1/requests", subject=subject)
            self.ok("/v1/disclosures", subject=subject)
            for purpose in purposes:
                # A purpose no published version declares is a question, not a failure.
                decision = self.get("/v1/consent/decision", subject=subject, purpose=purpose)
                assert decision.status_code == 200 or (
                    decision.status_code == 404
                    and decision.json()["errors"][0]["rule"] == "unknown_purpose"
                ), (subject, purpose, decision.text)
        if export and self.ledger.head():
            self.export_and_verify()

    def ok(self, path: str, **params: Any) -> Any:
        response = self.get(path, **params)
        assert response.status_code == 200, (path, params, response.status_code, response.text)
        return response.text if params.get("format") == "csv" else response.json()

    def export_and_verify(self) -> None:
        """The whole log as a bundle, its report rendered; then verified offline."""
        assert self.ledger.checkpointer is not None
        origin = self.ledger.checkpointer.origin
        keys = [
            format_verifier_key(origin, k) for k in load_keyring(self.settings).public_keys.values()
        ]
        target = self.workdir / f"bundle-{next(self._exports)}"
        export_bundle(
            self.ledger,
            {"kind": "all"},
            target,
            verifier_keys=keys,
            report_settings=REPORT_SETTINGS,
        )
        verify_bundle(target, [parse_verifier_key(k) for k in keys], jobs=1)


@contextlib.contextmanager
def full_stack(settings: Settings, workdir: Path) -> Iterator[Stack]:
    store = SqlTokenStore(open_client_database(settings))
    tokens = {
        "admin": store.add("admin", [Scope.ADMIN])[1],
        "writer": store.add("writer", [Scope.WRITE_EVENTS])[1],
        "incidents": store.add("incidents", [Scope.MANAGE_INCIDENTS])[1],
    }
    store.db.close()
    app = create_app(settings, server=ServerSettings(projections=False, signer=False))
    http = InProcess(app)
    try:
        yield Stack(app, http, settings, tokens, workdir)
    finally:
        http.close()


def log_length(stack: Stack) -> int:
    return stack.ledger.head()


def first_problem(response: httpx.Response) -> tuple[str, str]:
    """The field and rule the problem document names first."""
    body = response.json()
    [error, *_] = body["errors"]
    return error["field"], error["rule"]


def problems(response: httpx.Response) -> Iterable[tuple[str, str]]:
    return [(e["field"], e["rule"]) for e in response.json().get("errors") or []]
