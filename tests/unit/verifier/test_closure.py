"""The closure of a scope: a least fixpoint of the events that count, in whatever order."""

from __future__ import annotations

import itertools
from typing import Any

from ledger.verifier.incident_rules import normalised_rule, rule_selects
from ledger.verifier.scopes import Closure, correction_concerns

S, T = "pseudonym-s", "pseudonym-t"
RULE = normalised_rule(
    {
        "recipient_id": "rcp-a",
        "disclosed_from": "2026-05-01T00:00:00+09:00",
        "disclosed_to": "2026-06-01T00:00:00Z",
    }
)


def disclosure(recipient: str, subjects: list[str], at: str) -> tuple[str, dict[str, Any], str]:
    data = {"recipient_id": recipient, "subjects": [{"subject": s} for s in subjects]}
    return "disclosure.recorded", data, at


def assessment(incident: str, rule: dict[str, str] | None, named: list[str]) -> Any:
    data: dict[str, Any] = {
        "incident_id": incident,
        "affected_subjects": [{"subject": s} for s in named],
    }
    if rule is not None:
        data["affected_rule"] = rule
    return "incident.assessed", data, "2026-06-02T00:00:00.000000Z"


def closure_of(scope: dict[str, Any], events: list[Any]) -> set[str]:
    closure = Closure(scope)
    for event in events:
        closure.see(*event)
    names: set[str] = set()
    while new := closure.grow():
        names |= new
    return names


def test_a_rule_selects_its_recipient_from_its_start_up_to_its_end() -> None:
    assert rule_selects(RULE, "rcp-a", "2026-04-30T15:00:00.000000Z")  # 1 May, 00:00 +09:00
    assert not rule_selects(RULE, "rcp-a", "2026-04-30T14:59:59.999999Z")
    assert rule_selects(RULE, "rcp-a", "2026-05-31T23:59:59.999999Z")
    assert not rule_selects(RULE, "rcp-a", "2026-06-01T00:00:00.000000Z")
    assert not rule_selects(RULE, "rcp-b", "2026-05-15T00:00:00.000000Z")


def test_a_subject_holds_the_incidents_whose_rule_selects_one_of_its_disclosures() -> None:
    events = [
        disclosure("rcp-a", [S, T], "2026-05-15T00:00:00.000000Z"),
        disclosure("rcp-b", [T], "2026-05-15T00:00:00.000000Z"),
        assessment("inc-1", RULE, [T]),  # selects S's row, names only T
        assessment("inc-2", {**RULE, "recipient_id": "rcp-b"}, []),  # selects only T's
        assessment("inc-3", None, [S]),  # names S
    ]
    want = {
        f"subject:{S}",
        "policy",
        "recipient:rcp-a",
        "incident-rule:rcp-a",
        "incident:inc-1",
        "incident:inc-3",
    }
    # In any order: the exporter sees events as it finds them, the verifier in log order.
    for order in itertools.permutations(events):
        assert closure_of({"kind": "subject", "subject": S}, list(order)) == want


def test_an_event_that_does_not_count_adds_nothing() -> None:
    # A disclosure of T's data slipped into S's bundle, and an assessment at a recipient S's
    # data never went to, add no name: only events tagged for the closure's names count.
    events = [
        disclosure("rcp-b", [T], "2026-05-15T00:00:00.000000Z"),
        assessment("inc-2", {**RULE, "recipient_id": "rcp-b"}, [T]),
    ]
    assert closure_of({"kind": "subject", "subject": S}, events) == {f"subject:{S}", "policy"}


def test_a_recipient_holds_every_incident_opened_against_it_or_ruled_at_it() -> None:
    events = [
        (
            "incident.opened",
            {"incident_id": "inc-1", "recipient_id": "rcp-a"},
            "2026-06-01T00:00:00Z",
        ),
        assessment("inc-2", RULE, []),
        assessment("inc-3", {**RULE, "recipient_id": "rcp-b"}, []),
        disclosure("rcp-a", [S], "2026-01-01T00:00:00.000000Z"),
    ]
    names = closure_of({"kind": "recipient", "recipient_id": "rcp-a"}, events)
    assert {"incident:inc-1", "incident:inc-2", f"subject:{S}"} <= names
    assert "incident:inc-3" not in names


def test_a_corrected_rule_or_time_counts_as_corrected() -> None:
    original = assessment("inc-1", {**RULE, "recipient_id": "rcp-b"}, [])
    fields = {"affected_rule": RULE}
    concerns = correction_concerns(original[0], original[1], original[2], fields)
    assert "incident-rule:rcp-a" in concerns and "incident-rule:rcp-b" in concerns
    correction = (
        "correction.recorded",
        {"concerns": concerns, "corrected_fields": fields},
        "2026-07-01T00:00:00.000000Z",
    )
    events = [disclosure("rcp-a", [S], "2026-05-15T00:00:00.000000Z"), correction]
    assert "incident:inc-1" in closure_of({"kind": "subject", "subject": S}, events)
    # A disclosure moved into a period by a correction is found by the period's day.
    moved = disclosure("rcp-a", [S], "2026-01-01T00:00:00.000000Z")
    moved_fields = {"occurred_at": "2026-05-15T12:00:00+00:00"}
    concerns = correction_concerns(moved[0], moved[1], moved[2], moved_fields)
    assert {"day:2026-01-01", "day:2026-05-15", f"subject:{S}"} <= set(concerns)
    period = {"kind": "period", "from": "2026-05-15T00:00:00Z", "to": "2026-05-16T00:00:00Z"}
    correction = (
        "correction.recorded",
        {"concerns": concerns, "corrected_fields": moved_fields},
        "2026-07-01T00:00:00.000000Z",
    )
    names = closure_of(period, [correction, moved])
    assert {f"subject:{S}", "recipient:rcp-a"} <= names
