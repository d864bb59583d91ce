"""What the routes really answer, against what the OpenAPI document says they answer (issue 17,
part 1): a ledger holding examples/events.jsonl is asked every question its routes take, and
each answer's status must be one its operation lists, its media type one that status lists,
and its body valid against that schema; a JSON answer described by a model of
api/http/responses.py holds, at every level, every key the model says is always there and no
key the model does not name (so the document cannot drift from the code that builds the
answers). Both backends.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import uuid4

import httpx
import jsonschema
import pytest
from pydantic import BaseModel

from api.http import responses
from api.http.app import open_client_database
from api.token_store import Scope, SqlTokenStore
from ledger.config import Settings
from tests.integration.full_stack import Stack, full_stack
from tests.support.examples import example_lines
from tests.support.waiting import wait_until

SUBJECT = "user-10482"
INCIDENT = "inc-2026-003"
MODELS: dict[tuple[str, str, int], Any] = {
    ("get", "/v1/consent/state", 200): responses.ConsentState,
    ("get", "/v1/consent/decision", 200): responses.Decision,
    ("get", "/v1/subjects/history", 200): responses.SubjectHistory,
    ("get", "/v1/disclosures", 200): responses.DisclosurePage,
    ("get", "/v1/requests", 200): list[responses.DataSubjectRequest],
    ("get", "/v1/incidents", 200): list[responses.Incident],
    ("get", "/v1/incidents/{incident_id}", 200): responses.Incident,
    ("get", "/v1/incidents/{incident_id}/affected", 200): responses.AffectedPeoplePage,
    ("get", "/v1/consent/receipts/{seq}", 200): responses.ConsentReceipt,
    ("get", "/v1/notices", 200): responses.NoticeRegister,
    ("post", "/v1/notices/{notice_id}/ack", 201): responses.Acknowledgement,
    ("get", "/v1/exports/{job_id}", 200): responses.ExportJob,
    ("post", "/v1/exports", 202): responses.ExportJob,
    ("get", "/v1/proofs/inclusion", 200): responses.InclusionProof,
    ("get", "/v1/proofs/consistency", 200): responses.ConsistencyProof,
    ("get", "/v1/entries", 200): responses.Entries,
    ("get", "/healthz", 200): responses.Health,
    ("get", "/readyz", 200): responses.Readiness,
}
"""The model each JSON answer is described by, whose keys it must hold exactly."""


@pytest.fixture
def stack(settings: Settings, tmp_path: Path) -> Iterator[Stack]:
    with full_stack(settings, tmp_path) as running:
        store = SqlTokenStore(open_client_database(settings))
        running.tokens["every"] = store.add("every", [Scope.ADMIN, Scope.IDENTIFY_SUBJECTS])[1]
        running.tokens["reader"] = store.add("reader", [Scope.READ_STATE])[1]
        store.db.close()
        # A withdrawal from a purpose the subject's data went to a recipient for: a notice owed.
        (withdrawal,) = [f for f in example_lines() if f["type"] == "consent.withdrawn"]
        told = dict(withdrawal, event_id="evt-told", subject="user-20917")
        told.update(purposes=["usage_analytics"], occurred_at="2026-11-30T09:00:00Z")
        recorded = running.record([*example_lines(), told])
        assert recorded.status_code == 201, recorded.text
        running.process()
        running.models.notices.step()  # the notices owed (none delivered: no endpoints)
        running.process()
        running.ledger.sign_checkpoint()
        yield running


class Checked:
    """Sends requests and checks each answer against the document; counts what it saw."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.document = stack.app.openapi()
        self.seen: set[tuple[str, str, int]] = set()

    def send(
        self,
        method: str,
        template: str,
        path: str | None = None,
        *,
        who: str = "every",
        headers: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        sent = {**headers} if headers else {}
        if who:
            sent["Authorization"] = f"Bearer {self.stack.tokens[who]}"
        response = self.stack.http.run(
            self.stack.http.client.request(method, path or template, headers=sent, **kwargs)
        )
        self.check(method.lower(), template, response)
        return response

    def check(self, method: str, template: str, response: httpx.Response) -> None:
        where = f"{method.upper()} {response.request.url} -> {response.status_code}"
        operation = self.document["paths"][template][method]
        answer = operation["responses"].get(str(response.status_code))
        assert answer is not None, f"{where}: status not listed; {response.text[:300]}"
        media = response.headers.get("content-type", "").split(";")[0].strip()
        content = answer.get("content", {})
        assert media in content, f"{where}: {media} not listed ({sorted(content)})"
        schema = content[media].get("schema")
        assert schema, f"{where}: no schema for {media}"
        body: Any = response.text if not media.endswith("json") else response.json()
        try:
            jsonschema.validate(body, {**schema, "components": self.document["components"]})
        except jsonschema.ValidationError as exc:
            pytest.fail(f"{where}: {exc.message} at {list(exc.absolute_path)}")
        model = MODELS.get((method, template, response.status_code))
        if model is not None and media == "application/json":
            wrong = list(keys_differ(model, body, "$"))
            assert not wrong, f"{where}: {wrong}"
        self.seen.add((method, template, response.status_code))


def models_in(annotation: Any) -> list[type[BaseModel]]:
    """The models an annotation holds: itself, its list's items, its optional's value."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    origin = typing.get_origin(annotation)
    if origin in (list, typing.Union, types.UnionType, typing.Annotated):
        return [m for arg in typing.get_args(annotation) for m in models_in(arg)]
    return []


def keys_differ(annotation: Any, value: Any, where: str) -> Iterator[str]:
    """Where ``value`` lacks a key its model always holds, or holds one the model does not
    name, at any depth."""
    if isinstance(value, list):
        for index, item in enumerate(value):
            yield from keys_differ(annotation, item, f"{where}[{index}]")
        return
    found = models_in(annotation)
    if not isinstance(value, dict) or not found:
        return
    if len(found) > 1:  # a union: the answer must be exactly one of its models
        fits = [m for m in found if not list(keys_differ(m, value, where))]
        if fits:
            return
    model = found[0]
    fields = {f.alias or name: f for name, f in model.model_fields.items()}
    always = {key for key, f in fields.items() if f.is_required()}
    if missing := always - set(value):
        yield f"{where} ({model.__name__}) lacks {sorted(missing)}"
    if extra := set(value) - set(fields):
        yield f"{where} ({model.__name__}) holds {sorted(extra)}, which it does not name"
    for key, item in value.items():
        if key in fields:
            yield from keys_differ(fields[key].annotation, item, f"{where}.{key}")


def consent_seq(stack: Stack) -> int:
    """The seq of the first consent.given of the examples."""
    entries = stack.ok("/v1/subjects/history", subject=SUBJECT)["events"]
    seq: int = next(e["seq"] for e in entries if e["type"] == "consent.given")
    return seq


def test_every_answer_is_what_the_document_says(stack: Stack) -> None:
    ask = Checked(stack)
    get = ask.send

    # Consent: a state, the three answers, an unknown purpose, a seq past the log.
    get("GET", "/v1/consent/state", params={"subject": SUBJECT})
    purposes = ["marketing_email", "analytics", "service_provision", "nothing_like_it"]
    answers = {
        get("GET", "/v1/consent/decision", params={"subject": SUBJECT, "purpose": p})
        .json()
        .get("answer", "unknown")
        for p in purposes
    }
    assert {"no", "not_required", "unknown"} <= answers, answers
    get("GET", "/v1/consent/state", params={"subject": SUBJECT, "wait_for": str(10**6)})
    get("GET", "/v1/consent/state", who="", params={"subject": SUBJECT})
    get("GET", "/v1/consent/state", params={"subject": SUBJECT, "at": "2026-06-01T10:00"})

    # Histories and registers.
    get("GET", "/v1/subjects/history", params={"subject": SUBJECT, "purpose": "an access request"})
    get("GET", "/v1/subjects/history", params={"subject": SUBJECT, "purpose": "   "})
    page = get("GET", "/v1/disclosures", params={"limit": "1"})
    assert 'rel="next"' in page.headers["link"]
    get("GET", "/v1/disclosures", params={"format": "csv"})
    get("GET", "/v1/disclosures", params={"limit": "1", "limit ": "2", "cursor": "nonsense"})
    get("GET", "/v1/disclosures", who="reader")
    get("GET", "/v1/requests", params={"subject": SUBJECT})
    get("GET", "/v1/incidents")
    incident = get("GET", "/v1/incidents/{incident_id}", f"/v1/incidents/{INCIDENT}").json()
    assert incident["subjects_by_rule"], incident  # its assessment has a rule
    get("GET", "/v1/incidents/{incident_id}", "/v1/incidents/inc-never")
    affected = "/v1/incidents/{incident_id}/affected"
    path = f"/v1/incidents/{INCIDENT}/affected"
    get("GET", affected, path, params={"purpose": "notify them", "limit": "1"})
    get("GET", affected, path, params={"purpose": "notify them", "format": "csv"})
    get("GET", affected, path, who="admin", params={"purpose": "notify them"})

    # Receipts: JSON, JSON-LD, a non-consent event, an Accept that admits neither.
    receipt = "/v1/consent/receipts/{seq}"
    seq = consent_seq(stack)
    get("GET", receipt, f"/v1/consent/receipts/{seq}")
    linked = get("GET", receipt, f"/v1/consent/receipts/{seq}", headers={"Accept": JSONLD})
    assert linked.json()["@type"] == "dpv:ConsentRecord"
    get("GET", receipt, "/v1/consent/receipts/1")
    kinds = set()
    erased = 0
    for each in range(1, stack.ledger.head() + 1):  # every consent fact: an erased one's too
        found = get("GET", receipt, f"/v1/consent/receipts/{each}")
        if found.status_code == 200:
            record = found.json()["record"]
            kinds.add((record["event"]["type"], record["event"]["by"]))
            erased += record["pii_principal_id"] == "[erased]"
    types_seen = {kind for kind, _ in kinds}
    assert {"consent.given", "consent.withdrawn", "consent.renewal_requested"} <= types_seen
    assert ("consent.given", "guardian") in kinds and erased, (kinds, erased)
    get("GET", receipt, f"/v1/consent/receipts/{seq}", headers={"Accept": "text/html"})

    # Incidents recorded over HTTP: one, a batch, minimal, a resend with other content.
    facts = [
        {
            "type": "incident.opened",
            "event_id": f"evt-{uuid4().hex[:12]}",
            "occurred_at": "2026-07-01T10:00:00Z",
            "incident_id": f"inc-{uuid4().hex[:8]}",
            "detected_at": "2026-07-01T09:00:00Z",
            "summary": "A laptop was lost.",
        }
        for _ in range(3)
    ]
    get("POST", "/v1/incidents", json=facts[0])
    get("POST", "/v1/incidents", json=facts[1:])
    get("POST", "/v1/incidents", json=facts[0], headers={"Prefer": "return=minimal"})
    get("POST", "/v1/incidents", json=dict(facts[0], summary="Another laptop."))
    get("POST", "/v1/incidents", json={"type": "consent.given"})
    get("POST", "/v1/incidents", content=b"{not json")

    # Notices (read models hold the register) and an acknowledgement of no notice.
    register = get("GET", "/v1/notices").json()
    assert register["notices"], register  # a withdrawal and an erasure owe recipients notices
    owed = register["notices"][0]
    store = SqlTokenStore(open_client_database(stack.settings))
    stack.tokens["recipient"] = store.add(owed["recipient_id"], [Scope.ACK_NOTICES])[1]
    store.db.close()
    ack = "/v1/notices/{notice_id}/ack"
    done = get("POST", ack, f"/v1/notices/{owed['notice_id']}/ack", who="recipient")
    assert done.status_code == 201, done.text
    again = get("POST", ack, f"/v1/notices/{owed['notice_id']}/ack", who="recipient")
    assert again.status_code == 409, again.text
    get("POST", "/v1/notices/{notice_id}/ack", f"/v1/notices/{uuid4()}/ack")
    get("POST", "/v1/notices/{notice_id}/ack", "/v1/notices/not-a-notice/ack")

    # The log: checkpoint, keys, proofs, entries, health, metrics.
    get("GET", "/v1/checkpoint", who="")
    get("GET", "/v1/keys", who="")
    get("GET", "/metrics")
    get("GET", "/healthz", who="")
    get("GET", "/readyz", who="")
    get("GET", "/v1/proofs/inclusion", params={"index": "3"})
    get("GET", "/v1/proofs/inclusion", params={"index": "3", "size": "10"})
    get("GET", "/v1/proofs/inclusion", params={"index": "3", "size": str(10**6)})
    get("GET", "/v1/proofs/consistency", params={"from": "5"})
    get("GET", "/v1/proofs/consistency", params={"from": "5", "to": "10"})
    get("GET", "/v1/proofs/consistency", params={"from": "9", "to": "5"})
    entries = get("GET", "/v1/entries", params={"start": "0", "end": "2"}).json()
    assert [e["index"] for e in entries["entries"]] == [0, 1]
    get("GET", "/v1/entries", params={"start": str(10**6)})

    # Exports: a job, its state, its bundle (done or not yet), a job never made.
    job = get("POST", "/v1/exports", json={"scope": {"kind": "all"}, "purpose": "an audit"})
    job_id = job.json()["id"]
    get("GET", "/v1/exports/{job_id}", f"/v1/exports/{job_id}")
    scopes = [
        {"kind": "subject", "subject_ref": SUBJECT},
        {"kind": "recipient", "recipient_id": "rcp-northwind-cloud"},
        {"kind": "incident", "incident_id": INCIDENT},
        {"kind": "period", "from": "2026-01-01T00:00:00Z", "to": "2026-07-01T00:00:00+09:00"},
    ]
    for scope in scopes:
        started = get("POST", "/v1/exports", json={"scope": scope, "purpose": "an audit"})
        assert started.json()["scope"]["kind"] == scope["kind"], started.text
    get("GET", "/v1/exports/{job_id}/bundle", f"/v1/exports/{uuid4()}/bundle")
    bundle = "/v1/exports/{job_id}/bundle"
    get("GET", bundle, f"/v1/exports/{job_id}/bundle")  # 200, or 409 while it is made

    def finished() -> dict[str, Any] | None:
        state: dict[str, Any] = get("GET", "/v1/exports/{job_id}", f"/v1/exports/{job_id}").json()
        return state if state["state"] in ("done", "failed") else None

    ended = wait_until(finished, f"export {job_id} did not finish", 120, 0.1)
    assert ended is not None and ended["state"] == "done", ended
    whole = get("GET", bundle, f"/v1/exports/{job_id}/bundle")
    assert whole.status_code == 200 and whole.content.startswith(b"PK"), whole.status_code
    part = get("GET", bundle, f"/v1/exports/{job_id}/bundle", headers={"Range": "bytes=0-9"})
    assert part.status_code == 206 and part.content == whole.content[:10]
    size = len(whole.content)
    refusals = (("bytes=oops", 400, "malformed"), (f"bytes={size}-", 416, "range_not_satisfiable"))
    for asked, status, rule in refusals:
        odd = get("GET", bundle, f"/v1/exports/{job_id}/bundle", headers={"Range": asked})
        assert odd.status_code == status, (asked, odd.status_code, odd.text)
        assert odd.json()["errors"] == [
            {"field": "header.range", "rule": rule, "detail": odd.json()["detail"]}
        ]
    assert odd.headers["content-range"] == f"bytes */{size}"
    get("POST", "/v1/exports", json={"scope": {"kind": "nothing"}, "purpose": "x"})
    get(
        "POST",
        "/v1/exports",
        json={"scope": {"kind": "incident", "incident_id": "inc-never"}, "purpose": "x"},
    )

    statuses = {status for _, _, status in ask.seen}
    assert {200, 201, 202, 206, 400, 401, 403, 404, 406, 409, 416, 422} <= statuses, statuses
    # Every JSON model was met with a real answer.
    assert set(MODELS) <= ask.seen, set(MODELS) - ask.seen


JSONLD = "application/ld+json"
