"""Every validation rule gives an error naming the field and the rule, and stores nothing."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from ledger.application import LedgerApplication
from ledger.errors import ValidationError
from tests import facts

Fact = dict[str, Any]
Setup = Callable[[str, str], list[Fact]]
"""Given a policy version and a subject, the facts recorded before the one under test."""


def nothing(version: str, subject: str) -> list[Fact]:
    return []


def minor(version: str, subject: str) -> list[Fact]:
    return [facts.age(subject, 15)]


def opened(incident_id: str) -> Setup:
    def setup(version: str, subject: str) -> list[Fact]:
        return [facts.incident(incident_id)]

    return setup


CASES: list[tuple[str, Setup, Callable[[str, str], Fact], str, str]] = [
    (
        "unknown type",
        nothing,
        lambda v, s: {"type": "consent.granted", "event_id": "e"},
        "type",
        "type_unknown",
    ),
    ("missing type", nothing, lambda v, s: {"event_id": "e"}, "type", "required"),
    (
        "unknown purpose",
        nothing,
        lambda v, s: facts.consent(s, v, purposes=["service_provision", "telepathy"]),
        "purposes[1]",
        "purpose_unknown",
    ),
    (
        "unknown policy version",
        nothing,
        lambda v, s: facts.consent(s, "1999-01"),
        "policy_version",
        "policy_version_unknown",
    ),
    (
        "minor without guardian",
        minor,
        lambda v, s: facts.consent(s, v),
        "subject",
        "subject_is_minor",
    ),
    (
        "timestamp without offset",
        nothing,
        lambda v, s: dict(facts.consent(s, v), occurred_at="2026-03-01T09:00:00"),
        "occurred_at",
        "timezone_aware",
    ),
    (
        "timestamp not a date",
        nothing,
        lambda v, s: dict(facts.consent(s, v), occurred_at="01/03/2026"),
        "occurred_at",
        "datetime_parsing",
    ),
    (
        "expiry before the fact",
        nothing,
        lambda v, s: facts.consent(s, v, expires_at="2001-01-01T00:00:00Z"),
        "expires_at",
        "expires_before_occurred",
    ),
    (
        "oversized event",
        nothing,
        lambda v, s: facts.consent(s, v, contact="x" * 70_000),
        "",
        "max_event_bytes",
    ),
    (
        "oversized field",
        nothing,
        lambda v, s: facts.consent(s, v, contact="x" * 2001),
        "contact",
        "string_too_long",
    ),
    (
        "unknown field",
        nothing,
        lambda v, s: dict(facts.consent(s, v), colour="blue"),
        "colour",
        "unknown_field",
    ),
    (
        "missing field",
        nothing,
        lambda v, s: {k: x for k, x in facts.consent(s, v).items() if k != "collection_method"},
        "collection_method",
        "required",
    ),
    (
        "bad enum",
        nothing,
        lambda v, s: facts.consent(s, v, collection_method="telepathy"),
        "collection_method",
        "enum",
    ),
    (
        "bad event id",
        nothing,
        lambda v, s: dict(facts.consent(s, v), event_id="has spaces"),
        "event_id",
        "string_pattern_mismatch",
    ),
    (
        "bad country",
        nothing,
        lambda v, s: facts.recipient(country="Ireland"),
        "country",
        "string_pattern_mismatch",
    ),
    (
        "policy version twice",
        nothing,
        lambda v, s: facts.policy(v),
        "version",
        "policy_version_exists",
    ),
    (
        "unknown recipient",
        nothing,
        lambda v, s: {
            "type": "recipient.terminated",
            "event_id": facts.ref("e"),
            "occurred_at": facts.now(),
            "recipient_id": "nobody",
        },
        "recipient_id",
        "recipient_unknown",
    ),
    (
        "sub-processor of nobody",
        nothing,
        lambda v, s: facts.recipient(parent_recipient_id="nobody"),
        "parent_recipient_id",
        "recipient_unknown",
    ),
    (
        "disclosure purpose unknown",
        nothing,
        lambda v, s: facts.disclosure("r", [s], v, purpose="telepathy"),
        "purpose",
        "purpose_unknown",
    ),
    (
        "disclosure without subjects",
        nothing,
        lambda v, s: facts.disclosure("r", [], v),
        "subjects",
        "too_short",
    ),
    (
        "incident step before opening",
        nothing,
        lambda v, s: {
            "type": "incident.contained",
            "event_id": facts.ref("e"),
            "occurred_at": facts.now(),
            "incident_id": "never-opened",
            "measures": "x",
        },
        "incident_id",
        "incident_unknown",
    ),
    (
        "request step before receipt",
        nothing,
        lambda v, s: {
            "type": "request.fulfilled",
            "event_id": facts.ref("e"),
            "occurred_at": facts.now(),
            "request_id": "never",
            "subject": s,
        },
        "request_id",
        "request_unknown",
    ),
    (
        "consent to a contract purpose",
        nothing,
        lambda v, s: facts.consent(s, v, purposes=["service_provision"]),
        "purposes[0]",
        "purpose_not_consent_based",
    ),
    (
        "separate consent bundled",
        nothing,
        lambda v, s: facts.consent(s, v, purposes=["marketing_email", "usage_analytics"]),
        "purposes[1]",
        "separate_consent_bundled",
    ),
    (
        "policy not yet in effect",
        nothing,
        lambda v, s: dict(facts.consent(s, v), occurred_at="2020-01-01T00:00:00Z"),
        "policy_version",
        "policy_not_in_effect",
    ),
    (
        "purpose declared twice",
        nothing,
        lambda v, s: facts.policy(purposes=[facts.PURPOSES[0], facts.PURPOSES[0]]),
        "purposes",
        "purpose_repeated",
    ),
    ("age as a string", nothing, lambda v, s: dict(facts.age(s, 30), age="30"), "age", "int_type"),
    ("flag as a word", nothing, lambda v, s: facts.policy(material="yes"), "material", "bool_type"),
    (
        "time as a number",
        nothing,
        lambda v, s: dict(facts.consent(s, v), occurred_at=1700000000),
        "occurred_at",
        "datetime_type",
    ),
    (
        "time beyond the bounds once in UTC",
        nothing,
        lambda v, s: facts.consent(s, v, expires_at="9999-12-31T23:59:59-12:00"),
        "expires_at",
        "time_out_of_range",
    ),
    (
        "time before 1970",
        nothing,
        lambda v, s: dict(facts.consent(s, v), occurred_at="1969-12-31T23:59:59Z"),
        "occurred_at",
        "time_out_of_range",
    ),
    (
        "offset beyond real time zones",
        nothing,
        lambda v, s: facts.policy(effective_at="2026-01-01T00:00:00+23:59"),
        "effective_at",
        "offset_out_of_range",
    ),
    (
        "detection in the future",
        nothing,
        lambda v, s: dict(facts.incident(), detected_at="2099-01-01T00:00:00Z"),
        "detected_at",
        "detected_in_future",
    ),
    (
        "NUL in a name",
        nothing,
        lambda v, s: facts.recipient(name="Example\x00Cloud"),
        "name",
        "control_character",
    ),
    (
        "count beyond 2^31 - 1",
        nothing,
        lambda v, s: {
            "type": "incident.subjects_notified",
            "event_id": facts.ref("e"),
            "occurred_at": facts.now(),
            "incident_id": "never-opened",
            "channel": "email",
            "subject_count": 2**31,
        },
        "subject_count",
        "less_than_equal",
    ),
    (
        "nested too deep",
        nothing,
        lambda v, s: dict(facts.policy(), url=[[[[[[[["x"]]]]]]]]),
        "",
        "max_depth",
    ),
    (
        "correction of nothing",
        nothing,
        lambda v, s: {
            "type": "correction.recorded",
            "event_id": facts.ref("e"),
            "occurred_at": facts.now(),
            "corrects_event_id": "never",
            "reason": "typo",
        },
        "corrects_event_id",
        "corrected_event_unknown",
    ),
]


@pytest.mark.parametrize(
    ("setup", "make", "field", "rule"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_a_broken_rule_names_field_and_rule(
    ledger: LedgerApplication, setup: Setup, make: Callable[[str, str], Fact], field: str, rule: str
) -> None:
    pol = facts.policy()
    subject = facts.ref("user")
    ledger.append([pol, *setup(pol["version"], subject)])
    head = ledger.head()
    with pytest.raises(ValidationError) as caught:
        ledger.append([facts.policy(), make(pol["version"], subject)])
    assert [(p.index, p.field, p.rule) for p in caught.value.problems][:1] == [(1, field, rule)]
    assert ledger.head() == head


def test_a_sub_processor_is_engaged_by_a_processor(ledger: LedgerApplication) -> None:
    partner = facts.recipient(role="third_party")
    ledger.append([partner])
    sub = facts.recipient(role="sub_processor", parent_recipient_id=partner["recipient_id"])
    with pytest.raises(ValidationError) as caught:
        ledger.append([sub])
    assert caught.value.problems[0].rule == "parent_not_processor"
    with pytest.raises(ValidationError) as caught:
        ledger.append([facts.recipient(role="sub_processor")])
    assert (caught.value.problems[0].field, caught.value.problems[0].rule) == (
        "parent_recipient_id",
        "parent_required",
    )


def test_a_correction_may_name_an_event_earlier_in_its_batch(ledger: LedgerApplication) -> None:
    opened = facts.incident()
    correction = {
        "type": "correction.recorded",
        "event_id": facts.ref("e"),
        "occurred_at": facts.now(),
        "corrects_event_id": opened["event_id"],
        "reason": "detected a day earlier",
        "corrected_fields": {"detected_at": "2026-01-01T00:00:00Z"},
    }
    assert len(ledger.append([opened, correction])) == 2
    renamed = {**correction, "event_id": facts.ref("e"), "corrected_fields": {"colour": "red"}}
    with pytest.raises(ValidationError) as caught:
        ledger.append([renamed])
    problem = caught.value.problems[0]
    assert (problem.field, problem.rule) == ("corrected_fields.colour", "field_unknown")


def test_a_minor_may_consent_through_a_guardian(ledger: LedgerApplication) -> None:
    pol = facts.policy()
    subject = facts.ref("user")
    guardian = {"name": "Parent Name", "relationship": "parent"}
    receipts = ledger.append(
        [pol, facts.age(subject, 15), facts.consent(subject, pol["version"], guardian=guardian)]
    )
    assert len(receipts) == 3


def test_the_minimum_age_comes_from_the_policy_when_it_sets_one(ledger: LedgerApplication) -> None:
    pol = facts.policy(minimum_age=14)
    subject = facts.ref("user")
    ledger.append([pol, facts.age(subject, 15), facts.consent(subject, pol["version"])])
    with pytest.raises(ValidationError, match="subject_is_minor"):
        ledger.append([facts.age(subject, 13), facts.consent(subject, pol["version"])])


def test_a_closed_incident_takes_no_more_steps(ledger: LedgerApplication) -> None:
    opened = facts.incident()
    step = {
        "event_id": facts.ref("e"),
        "occurred_at": facts.now(),
        "incident_id": opened["incident_id"],
    }
    ledger.append([opened, {**step, "type": "incident.closed", "resolution": "Fixed"}])
    with pytest.raises(ValidationError) as caught:
        ledger.append(
            [{**step, "event_id": facts.ref("e"), "type": "incident.contained", "measures": "x"}]
        )
    assert caught.value.problems[0].rule == "incident_closed"


def test_a_request_step_must_name_the_same_subject(ledger: LedgerApplication) -> None:
    received = facts.request(facts.ref("user"))
    with pytest.raises(ValidationError) as caught:
        ledger.append(
            [
                received,
                {
                    "type": "request.fulfilled",
                    "event_id": facts.ref("e"),
                    "occurred_at": facts.now(),
                    "request_id": received["request_id"],
                    "subject": "someone-else",
                },
            ]
        )
    assert (caught.value.problems[0].index, caught.value.problems[0].rule) == (
        1,
        "subject_mismatch",
    )
    assert ledger.head() == 0


def test_a_correction_may_not_carry_personal_data(ledger: LedgerApplication) -> None:
    pol = facts.policy()
    given = facts.consent(facts.ref("user"), pol["version"])
    ledger.append([pol, given])
    correction = {
        "type": "correction.recorded",
        "event_id": facts.ref("e"),
        "occurred_at": facts.now(),
        "corrects_event_id": given["event_id"],
        "reason": "wrong address",
    }
    with pytest.raises(ValidationError) as caught:
        ledger.append([{**correction, "corrected_fields": {"contact": "new@example.org"}}])
    assert (caught.value.problems[0].field, caught.value.problems[0].rule) == (
        "corrected_fields.contact",
        "personal_data_not_allowed",
    )
    [receipt] = ledger.append(
        [{**correction, "corrected_fields": {"collection_method": "mobile_app"}}]
    )
    assert ledger.get_event(receipt.seq).data["corrected_fields"] == {
        "collection_method": "mobile_app"
    }


def test_batches_have_limits(ledger: LedgerApplication) -> None:
    with pytest.raises(ValidationError, match="batch_empty"):
        ledger.append([])
    with pytest.raises(ValidationError) as caught:
        ledger.append([facts.policy() for _ in range(ledger.limits.max_batch + 1)])
    assert caught.value.problems[0].rule == "batch_too_large"
    assert str(ledger.limits.max_batch) in caught.value.problems[0].message
    same = facts.policy()
    with pytest.raises(ValidationError) as caught:
        ledger.append([same, dict(same)])
    assert (caught.value.problems[0].index, caught.value.problems[0].rule) == (
        1,
        "event_id_repeated",
    )
