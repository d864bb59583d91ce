"""consent.renewal_requested through the API, on both backends: the consent state shows the
request as pending until the subject's next decision, "may I?" does not change with it, the
subject's history lists it, and an exported bundle verifies with it on the report's timeline.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from ledger.config import Settings
from ledger.verifier.times import utc
from tests import facts
from tests.integration.full_stack import Stack, first_problem, full_stack

PURPOSE = "marketing_email"


def renewal(subject: str, policy_version: str, **fields: Any) -> dict[str, Any]:
    return {
        "type": "consent.renewal_requested",
        "event_id": facts.ref("evt"),
        "occurred_at": facts.now(),
        "subject": subject,
        "purposes": [PURPOSE],
        "policy_version": policy_version,
        "reason": "periodic_refresh",
        "channel": "email",
        **fields,
    }


@pytest.fixture
def stack(settings: Settings, tmp_path: Path) -> Iterator[Stack]:
    with full_stack(settings, tmp_path) as running:
        yield running


def state_of(stack: Stack, subject: str) -> dict[str, Any]:
    stack.process()
    body = stack.ok("/v1/consent/state", subject=subject)
    (purpose,) = [p for p in body["purposes"] if p["purpose"] == PURPOSE]
    state: dict[str, Any] = purpose
    return state


def seqs(stack: Stack, facts_sent: list[dict[str, Any]]) -> list[int]:
    response = stack.record(facts_sent)
    assert response.status_code in (200, 201), response.text
    return [receipt["seq"] for receipt in response.json()["receipts"]]


def test_a_renewal_request_is_pending_until_the_next_decision_and_changes_no_answer(
    stack: Stack,
) -> None:
    subject, policy = facts.ref("user"), facts.policy()
    given = facts.consent(subject, policy["version"], occurred_at=facts.now(-timedelta(hours=2)))
    [_, given_seq] = seqs(stack, [policy, given])
    before = state_of(stack, subject)
    decision = stack.ok("/v1/consent/decision", subject=subject, purpose=PURPOSE)
    assert before["pending_renewal"] is None and before["valid"]

    due = facts.now(timedelta(days=30))
    asked = renewal(subject, policy["version"], occurred_at=facts.now(-timedelta(hours=1)))
    [asked_seq] = seqs(stack, [dict(asked, respond_by=due)])
    pending = state_of(stack, subject)
    assert pending["pending_renewal"] == {
        "seq": asked_seq,
        "since": utc(asked["occurred_at"]),
        "policy_version": policy["version"],
        "reason": "periodic_refresh",
        "channel": "email",
        "respond_by": utc(due),
    }
    # It decides nothing: the status and "may I?" are what they were.
    assert {k: v for k, v in pending.items() if k != "pending_renewal"} == {
        k: v for k, v in before.items() if k != "pending_renewal"
    }
    assert stack.ok("/v1/consent/decision", subject=subject, purpose=PURPOSE) == decision

    history = stack.ok("/v1/subjects/history", subject=subject)
    assert [e["type"] for e in history["events"]][-1] == "consent.renewal_requested"

    pseudonym = stack.ok("/v1/consent/state", subject=subject)["subject"]
    [renewed_seq] = seqs(stack, [facts.consent(subject, policy["version"])])
    after = state_of(stack, subject)
    assert after["pending_renewal"] is None
    assert (after["status"], after["decided_by_seq"]) == ("given", renewed_seq)

    # The whole log exports, verifies offline, and its report shows the request.
    stack.check_processable()
    bundle = stack.workdir / "bundle-0"
    with (bundle / "consent.csv").open(encoding="utf-8", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["subject"] == pseudonym]
    assert [(r["change"], r["seq"]) for r in rows] == [
        ("given", str(given_seq)),
        ("renewal_requested", str(asked_seq)),
        ("given", str(renewed_seq)),
    ]
    assert rows[1]["details"] == f"reason: periodic_refresh; channel: email; respond_by: {utc(due)}"
    assert (rows[1]["status"], rows[1]["policy_version"]) == ("given", policy["version"])
    page = (bundle / "report.html").read_text(encoding="utf-8")
    assert f"<td>renewal_requested</td><td>{asked_seq}</td>" in page


def test_a_newer_request_replaces_an_older_one_and_a_correction_moves_its_due_date(
    stack: Stack,
) -> None:
    subject, policy = facts.ref("user"), facts.policy()
    seqs(
        stack,
        [
            policy,
            facts.consent(subject, policy["version"], occurred_at=facts.now(-timedelta(days=3))),
        ],
    )
    first = renewal(subject, policy["version"], occurred_at=facts.now(-timedelta(days=2)))
    second = renewal(
        subject,
        policy["version"],
        occurred_at=facts.now(-timedelta(days=1)),
        reason="expiry_approaching",
        respond_by=facts.now(timedelta(days=7)),
    )
    [_, second_seq] = seqs(stack, [first, second])
    assert state_of(stack, subject)["pending_renewal"]["seq"] == second_seq

    later = facts.now(timedelta(days=14))
    correction = {
        "type": "correction.recorded",
        "event_id": facts.ref("evt"),
        "occurred_at": facts.now(),
        "corrects_event_id": second["event_id"],
        "reason": "The reminder e-mail gave two weeks, not one.",
        "corrected_fields": {"respond_by": later},
    }
    seqs(stack, [correction])
    pending = state_of(stack, subject)["pending_renewal"]
    assert (pending["seq"], pending["reason"], pending["respond_by"]) == (
        second_seq,
        "expiry_approaching",
        utc(later),
    )
    # Rebuilt from the log, one event a page, the consent state holds the same.
    runner, page = stack.models.runner, stack.models.runner.batch_size
    runner.batch_size = 1
    try:
        runner.rebuild(["consent_state"])
    finally:
        runner.batch_size = page
    assert state_of(stack, subject)["pending_renewal"] == pending
    stack.check_processable()


def test_only_consent_given_before_is_renewed_and_never_an_erased_subjects(
    stack: Stack,
) -> None:
    subject, policy = facts.ref("user"), facts.policy()
    seqs(stack, [policy])
    # Never given: a first request for consent is not a renewal.
    refused = stack.record([renewal(subject, policy["version"])])
    assert refused.status_code == 422, refused.text
    assert first_problem(refused) == ("purposes[0]", "renewal_without_prior_consent")
    # Given afterwards, by occurred_at: still not before the request.
    asked_at = facts.now(-timedelta(hours=2))
    late = [
        facts.consent(subject, policy["version"], occurred_at=facts.now(-timedelta(hours=1))),
        renewal(subject, policy["version"], occurred_at=asked_at),
    ]
    assert first_problem(stack.record(late)) == ("purposes[0]", "renewal_without_prior_consent")
    unknown = stack.record([renewal(subject, facts.ref("policy"))])
    assert first_problem(unknown) == ("policy_version", "policy_version_unknown")
    not_consent = renewal(subject, policy["version"], purposes=["service_provision"])
    assert first_problem(stack.record([not_consent])) == (
        "purposes[0]",
        "purpose_not_consent_based",
    )
    early = renewal(subject, policy["version"], respond_by=facts.now(-timedelta(days=1)))
    seqs(
        stack,
        [facts.consent(subject, policy["version"], occurred_at=facts.now(-timedelta(days=2)))],
    )
    assert first_problem(stack.record([early])) == ("respond_by", "respond_by_before_occurred")

    request = facts.request(subject, kind="erasure")
    fulfilled = {
        "type": "request.fulfilled",
        "event_id": facts.ref("evt"),
        "occurred_at": facts.now(),
        "request_id": request["request_id"],
        "subject": subject,
    }
    seqs(stack, [request, fulfilled])
    erased = stack.record([renewal(subject, policy["version"])])
    assert first_problem(erased) == ("subject", "subject_erased")
    stack.check_processable()
