"""Consent receipts over HTTP, on both backends: a receipt fetched verifies offline, opens its
own subject's data and nobody else's, is on the record before it is answered, and every way to
ask for the wrong thing is a problem document."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from api.http.app import ServerSettings, create_app, open_client_database
from api.token_store import Scope, SqlTokenStore
from ledger.application import LedgerApplication
from ledger.config import Settings
from ledger.verifier.__main__ import main
from ledger.verifier.entry import parse_body
from ledger.verifier.note import Verifier, parse_verifier_key
from ledger.verifier.receipt import (
    ReceiptError,
    check_consistency,
    check_receipt,
    load_receipt,
)
from tests import facts
from tests.support.in_process import InProcess


@dataclass
class Deployment:
    http: InProcess
    ledger: LedgerApplication
    tokens: dict[str, str]
    keys: list[Verifier]

    def get(self, path: str, who: str = "receipts", **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.tokens[who]}", **kwargs.pop("headers", {})}
        return self.http.get(path, headers=headers, **kwargs)

    def last_event(self) -> dict[str, Any]:
        record = self.ledger.ledger.get_record(self.ledger.head())
        assert record is not None
        return parse_body(record.body)


@pytest.fixture
def deployment(settings: Settings) -> Iterator[Deployment]:
    cli = SqlTokenStore(open_client_database(settings))
    tokens = {
        "receipts": cli.add("receipt-desk", [Scope.READ_RECEIPTS])[1],
        "history": cli.add("auditor", [Scope.READ_HISTORY])[1],
    }
    app = create_app(settings, server=ServerSettings(projections=False, signer=False))
    http = InProcess(app)
    keys = [parse_verifier_key(k) for k in app.state.verifier_keys]
    try:
        yield Deployment(http, app.state.ledger, tokens, keys)
    finally:
        http.close()
        cli.db.close()


def _consents(ledger: LedgerApplication) -> tuple[int, int, int]:
    """A policy, Alice's consent (with contact, evidence, expiry) and Bob's: their seqs."""
    policy = facts.policy()
    alice = facts.consent(
        "alice-ref-1",
        policy["version"],
        contact="alice@example.org",
        evidence={"ip_address": "203.0.113.9", "notice_id": "notice-7"},
        expires_at="2030-01-01T00:00:00Z",
    )
    bob = facts.consent("bob-ref-2", policy["version"], contact="bob@example.org")
    seqs = [r.seq for r in ledger.append([policy, alice, bob])]
    return seqs[0], seqs[1], seqs[2]


def test_a_receipt_verifies_offline_and_its_read_is_on_the_record(
    deployment: Deployment,
) -> None:
    _, alice, _ = _consents(deployment.ledger)
    before = deployment.ledger.head()
    response = deployment.get(
        f"/v1/consent/receipts/{alice}", params={"purpose": "the subject asked for a copy"}
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert response.headers["cache-control"] == "no-store"
    receipt = load_receipt(response.content)
    report = check_receipt(receipt, deployment.keys)
    assert report.seq == alice and report.type == "consent.given"
    record = receipt["record"]
    assert record["pii_principal_id"] == "alice-ref-1"
    assert record["consent_status"] == "dpv:ConsentGiven"
    assert record["processing"]["purposes"] == ["marketing_email"]
    assert record["event"]["expires_at"] == "2030-01-01T00:00:00Z"
    assert record["personal_data"] == {
        "contact": "alice@example.org",
        "evidence.ip_address": "203.0.113.9",
        "subject_ref": "alice-ref-1",
    }
    assert receipt["kantara"]["piiPrincipalId"] == "alice-ref-1"
    # Nobody else's data: not Bob's reference, contact or pseudonym.
    text = response.text
    bob_pseudonym = deployment.ledger.subject_keys.pseudonym("bob-ref-2")
    for other in ("bob-ref-2", "bob@example.org", bob_pseudonym):
        assert other not in text
    # The read is the next event, naming who, what, why; Alice as a sealed mention.
    assert deployment.ledger.head() == before + 1
    assert response.headers["x-access-seq"] == str(before + 1)
    accessed = deployment.last_event()
    assert accessed["type"] == "personal_data.accessed"
    data = accessed["data"]
    assert data["client"] == "receipt-desk" and data["action"] == "consent_receipt"
    assert data["scope"] == "receipts:read" and data["purpose"] == "the subject asked for a copy"
    assert data["count"] == 1 and data["details"] == {"seq": alice}
    assert len(data["opened_subjects"]) == 1
    assert record["pii_principal_pseudonym"] not in json.dumps(accessed)


def test_the_json_ld_form_uses_dpv_terms_and_verifies_the_same(deployment: Deployment) -> None:
    _, alice, _ = _consents(deployment.ledger)
    withdrawn = facts.consent("alice-ref-1", _policy_of(deployment, alice), kind="withdrawn")
    [seq] = [r.seq for r in deployment.ledger.append([withdrawn])]
    response = deployment.get(
        f"/v1/consent/receipts/{seq}", headers={"Accept": "application/ld+json"}
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/ld+json")
    document = load_receipt(response.content)
    assert document["@type"] == "dpv:ConsentRecord"
    assert document["dpv:hasConsentStatus"] == {"@id": "dpv:ConsentWithdrawn"}
    assert document["dpv:hasPurpose"] == [
        {"@type": "dpv:Purpose", "dct:identifier": "marketing_email"}
    ]
    assert check_receipt(document, deployment.keys).seq == seq
    # The statements must say what the carried receipt says.
    document["dpv:hasConsentStatus"] = {"@id": "dpv:ConsentGiven"}
    with pytest.raises(ReceiptError) as failed:
        check_receipt(document, deployment.keys)
    assert failed.value.check == "dpv"


def _policy_of(deployment: Deployment, seq: int) -> str:
    record = deployment.ledger.ledger.get_record(seq)
    assert record is not None
    version: str = parse_body(record.body)["data"]["policy_version"]
    return version


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        ("*/*", "application/json"),
        ("application/json, application/ld+json;q=0.5", "application/json"),
        ("application/ld+json, application/json;q=0.9", "application/ld+json"),
        ("application/*", "application/json"),
    ],
)
def test_accept_chooses_the_form(deployment: Deployment, accept: str, expected: str) -> None:
    _, alice, _ = _consents(deployment.ledger)
    response = deployment.get(f"/v1/consent/receipts/{alice}", headers={"Accept": accept})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith(expected)


def test_refusals_answer_problems_and_record_nothing(deployment: Deployment) -> None:
    policy, alice, _ = _consents(deployment.ledger)
    head = deployment.ledger.head()

    forbidden = deployment.get(f"/v1/consent/receipts/{alice}", who="history")
    assert forbidden.status_code == 403
    assert "receipts:read" in forbidden.json()["detail"]

    unacceptable = deployment.get(f"/v1/consent/receipts/{alice}", headers={"Accept": "text/html"})
    assert unacceptable.status_code == 406
    assert unacceptable.json()["errors"][0]["rule"] == "not_acceptable"

    not_consent = deployment.get(f"/v1/consent/receipts/{policy}")
    assert not_consent.status_code == 404
    assert not_consent.headers["content-type"] == "application/problem+json"
    assert not_consent.json()["errors"] == [
        {"field": "path.seq", "rule": "not_a_consent_fact", "detail": not_consent.json()["detail"]}
    ]

    beyond = deployment.get(f"/v1/consent/receipts/{head + 1000}")
    assert beyond.status_code == 404

    too_long = deployment.get(f"/v1/consent/receipts/{alice}", params={"purpose": "x" * 501})
    assert too_long.status_code == 400  # a bad parameter: 400 (docs/api.md, "Conventions")
    control = deployment.get(f"/v1/consent/receipts/{alice}", params={"purpose": "a\x00b"})
    assert control.status_code == 400
    blank = deployment.get(f"/v1/consent/receipts/{alice}", params={"purpose": "   "})
    assert blank.status_code == 400 and blank.json()["errors"][0]["rule"] == "required"
    assert deployment.ledger.head() == head


@pytest.mark.parametrize("seq", ["abc", "-1", "0", "9223372036854775808", "1.5"])
def test_a_bad_seq_is_the_problem_the_events_route_answers(
    deployment: Deployment, seq: str
) -> None:
    receipt = deployment.get(f"/v1/consent/receipts/{seq}")
    event = deployment.get(f"/v1/events/{seq}", who="history")
    assert receipt.status_code == event.status_code == 400
    assert receipt.headers["content-type"] == "application/problem+json"
    shape = [(e["field"], e["rule"]) for e in receipt.json()["errors"]]
    assert shape == [(e["field"], e["rule"]) for e in event.json()["errors"]]


def test_an_erased_subjects_receipt_proves_the_entry_and_opens_nothing(
    deployment: Deployment,
) -> None:
    _, alice, _ = _consents(deployment.ledger)
    deployment.ledger.erase(subject_ref="alice-ref-1")
    response = deployment.get(f"/v1/consent/receipts/{alice}")
    assert response.status_code == 200, response.text
    assert "alice" not in response.text
    receipt = load_receipt(response.content)
    check_receipt(receipt, deployment.keys)
    assert set(receipt["record"]["personal_data"].values()) == {"[erased]"}
    assert receipt["record"]["pii_principal_id"] == "[erased]"
    accessed = deployment.last_event()["data"]
    assert accessed["count"] == 0 and "opened_subjects" not in accessed


def test_a_later_consistency_proof_shows_the_entry_was_never_removed(
    deployment: Deployment, tmp_path: Path
) -> None:
    _, alice, _ = _consents(deployment.ledger)
    receipt = load_receipt(deployment.get(f"/v1/consent/receipts/{alice}").content)
    report = check_receipt(receipt, deployment.keys)
    _consents(deployment.ledger)
    deployment.ledger.sign_checkpoint()
    size = receipt["proof"]["tree_size"]
    answer = deployment.get(f"/v1/proofs/consistency?from={size}", who="history").json()
    later = check_consistency(report, receipt, answer, deployment.keys)
    assert later.size > size
    # The same from the command line, with the files a person keeps.
    files = {"receipt.json": receipt, "later.json": answer}
    for name, value in files.items():
        (tmp_path / name).write_text(json.dumps(value), encoding="utf-8")
    keys = tmp_path / "keys.txt"
    keys.write_text(deployment.get("/v1/keys").text, encoding="utf-8")
    args = [str(tmp_path / "receipt.json"), "--key", str(keys)]
    assert main(["receipt", *args, "--consistent-with", str(tmp_path / "later.json")]) == 0
    answer["proof"] = answer["proof"][::-1] if len(answer["proof"]) > 1 else ["A" * 43 + "="]
    with pytest.raises(ReceiptError) as failed:
        check_consistency(report, receipt, answer, deployment.keys)
    assert failed.value.check == "consistency"


def test_no_record_no_receipt(deployment: Deployment) -> None:
    """When the read cannot be recorded (here: the ledger admits no more events), the answer
    is that error, and no personal data leaves."""
    _, alice, _ = _consents(deployment.ledger)
    head = deployment.ledger.head()
    admission = deployment.ledger.ledger.admission
    with admission.holding(admission.limit):  # every place in flight taken
        response = deployment.get(f"/v1/consent/receipts/{alice}")
    assert response.status_code == 503, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert "alice" not in response.text and "example.org" not in response.text
    assert deployment.ledger.head() == head
    assert deployment.get(f"/v1/consent/receipts/{alice}").status_code == 200
