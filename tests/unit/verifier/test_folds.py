"""The register folds: a request's and an incident's state after each fact, and corrections.

The request and incident registers store this state and the report renders it
(tests/test_layering.py checks that they call these folds); here each rule a register shows
is checked on the fold alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import given, seed, settings
from hypothesis import strategies as st

from ledger.verifier import incident_rules, request_rules
from ledger.verifier.fold import FoldError
from ledger.verifier.incidents_fold import Incident
from ledger.verifier.incidents_fold import correct as correct_incident
from ledger.verifier.incidents_fold import fold as fold_incident
from ledger.verifier.requests_fold import Request
from ledger.verifier.requests_fold import correct as correct_request
from ledger.verifier.requests_fold import fold as fold_request

SUBJECT = "aaaaaaaa-0000-0000-0000-000000000001"
OTHER = "bbbbbbbb-0000-0000-0000-000000000002"


@dataclass(frozen=True)
class Fact:
    type: str
    seq: int
    occurred_at: str
    data: dict[str, Any] = field(default_factory=dict)

    def corrected(self, **fields: Any) -> Fact:
        occurred_at = fields.pop("occurred_at", self.occurred_at)
        return Fact(self.type, self.seq, occurred_at, {**self.data, **fields})


def at(day: int, hour: int = 9) -> str:
    return f"2026-03-{day:02d}T{hour:02d}:00:00.000000Z"


# -- requests -----------------------------------------------------------------------------------


def received(seq: int = 1, request_id: str = "req-1") -> Fact:
    return Fact(
        request_rules.RECEIVED,
        seq,
        at(1),
        {
            "request_id": request_id,
            "subject": SUBJECT,
            "kind": "access",
            "channel": "email",
            "jurisdiction": "EU",
        },
    )


def request_step(type_name: str, seq: int, day: int, **data: Any) -> Fact:
    return Fact(type_name, seq, at(day), {"request_id": "req-1", **data})


def fold_requests(*facts: Fact) -> Request:
    state = None
    for fact in facts:
        state = fold_request(state, fact)
    assert state is not None
    return state


def test_a_received_request_is_open_with_no_extension() -> None:
    state = fold_requests(received(seq=4))
    assert state.fields() == {
        "request_id": "req-1",
        "subject": SUBJECT,
        "kind": "access",
        "channel": "email",
        "jurisdiction": "EU",
        "received_at": at(1),
        "received_seq": 4,
        "identity_verified_at": None,
        "identity_verified_seq": None,
        "extension_days": 0,
        "extensions": 0,
        "status": "received",
        "closed_at": None,
        "closed_seq": None,
        "refusal_ground": None,
        "last_seq": 4,
    }
    assert state.is_open


def test_the_first_identity_verification_is_the_one_shown() -> None:
    state = fold_requests(
        received(),
        request_step(request_rules.IDENTITY_VERIFIED, 2, 2),
        request_step(request_rules.IDENTITY_VERIFIED, 3, 5),
    )
    assert (state.identity_verified_at, state.identity_verified_seq) == (at(2), 2)
    assert state.status == "identity_verified"
    assert state.last_seq == 3


def test_extensions_add_up_and_a_closed_request_stays_closed() -> None:
    state = fold_requests(
        received(),
        request_step(request_rules.EXTENDED, 2, 3, extension_days=10),
        request_step(request_rules.EXTENDED, 3, 4, extension_days=5),
        request_step(request_rules.REFUSED, 4, 6, ground="manifestly_unfounded"),
        request_step(request_rules.IDENTITY_VERIFIED, 5, 7),
    )
    assert (state.extensions, state.extension_days) == (2, 15)
    assert state.status == "refused"  # a verification after the refusal does not reopen it
    assert (state.closed_at, state.closed_seq) == (at(6), 4)
    assert state.refusal_ground == "manifestly_unfounded"
    assert state.identity_verified_seq == 5
    assert not state.is_open


def test_a_fulfilled_request_has_no_refusal_ground() -> None:
    state = fold_requests(received(), request_step(request_rules.FULFILLED, 2, 8))
    assert (state.status, state.closed_at, state.refusal_ground) == ("fulfilled", at(8), None)


def test_the_fold_refuses_what_cannot_happen_to_a_request() -> None:
    with pytest.raises(FoldError, match="never received"):
        fold_request(None, request_step(request_rules.FULFILLED, 2, 8))
    with pytest.raises(FoldError, match="received twice"):
        fold_requests(received(1), received(2))
    with pytest.raises(FoldError, match="not a request fact"):
        fold_request(fold_requests(received()), request_step("incident.closed", 2, 3))


def test_a_stored_request_folds_on_as_the_one_in_memory() -> None:
    state = fold_requests(received(), request_step(request_rules.EXTENDED, 2, 3, extension_days=7))
    stored = {
        name: (str(v) if name == "extension_days" else v) for name, v in state.fields().items()
    }
    assert Request.from_fields(stored) == state


def test_request_corrections_move_the_fields_they_fill() -> None:
    receipt = received()
    extension = request_step(request_rules.EXTENDED, 2, 3, extension_days=10)
    first = request_step(request_rules.IDENTITY_VERIFIED, 3, 4)
    second = request_step(request_rules.IDENTITY_VERIFIED, 4, 5)
    closing = request_step(request_rules.FULFILLED, 5, 9)
    state = fold_requests(receipt, extension, first, second, closing)

    fixed = correct_request(state, receipt, receipt.corrected(occurred_at=at(2), channel="post"))
    assert (fixed.received_at, fixed.channel, fixed.received_seq) == (at(2), "post", 1)
    fixed = correct_request(state, extension, extension.corrected(extension_days=4))
    assert (fixed.extension_days, fixed.extensions) == (4, 1)
    assert correct_request(state, second, second.corrected(occurred_at=at(6))) == state
    fixed = correct_request(state, first, first.corrected(occurred_at=at(3)))
    assert (fixed.identity_verified_at, fixed.identity_verified_seq) == (at(3), 3)
    fixed = correct_request(state, closing, closing.corrected(occurred_at=at(8)))
    assert (fixed.closed_at, fixed.status) == (at(8), "fulfilled")
    assert correct_request(state, receipt, receipt.corrected(subject=OTHER)) == state


# -- incidents ----------------------------------------------------------------------------------

RULE = {
    "recipient_id": "ads",
    "disclosed_from": "2026-02-01T00:00:00+01:00",
    "disclosed_to": "2026-03-01T00:00:00Z",
}


def opened(seq: int = 1) -> Fact:
    return Fact(
        incident_rules.OPENED,
        seq,
        at(1),
        {
            "incident_id": "inc-1",
            "detected_at": "2026-03-01T10:00:00+01:00",
            "summary": "a lost laptop",
            "data_categories": ["contact"],
        },
    )


def assessed(seq: int, day: int, risk: str, *subjects: str, **data: Any) -> Fact:
    return Fact(
        incident_rules.ASSESSED,
        seq,
        at(day),
        {
            "incident_id": "inc-1",
            "risk": risk,
            "data_categories": ["contact", "health"],
            "likely_consequences": "phishing",
            "affected_subjects": [{"subject": s, "ref": "sealed:v1:x"} for s in subjects],
            **data,
        },
    )


def incident_step(type_name: str, seq: int, day: int, **data: Any) -> Fact:
    return Fact(type_name, seq, at(day), {"incident_id": "inc-1", **data})


def notified(seq: int, day: int) -> Fact:
    return incident_step(
        incident_rules.AUTHORITY_NOTIFIED, seq, day, authority="cnil", dpo_contact="dpo@x.org"
    )


def fold_incidents(*facts: Fact) -> Incident:
    state = None
    for fact in facts:
        state = fold_incident(state, fact)
    assert state is not None
    return state


def test_an_opened_incident_is_open_with_its_detection_in_the_stored_form() -> None:
    state = fold_incidents(opened(seq=3))
    assert (state.status, state.opened_seq, state.last_seq) == ("open", 3, 3)
    assert state.detected_at == "2026-03-01T09:00:00.000000Z"
    assert list(state.data_categories) == ["contact"]
    assert state.affected == ()
    assert state.risk is None


def test_the_latest_assessment_is_shown_and_every_named_subject_stays_affected() -> None:
    state = fold_incidents(
        opened(),
        assessed(2, 2, "high_risk", SUBJECT, SUBJECT, affected_rule=RULE),
        assessed(3, 3, "unlikely", OTHER, SUBJECT, approximate_subject_count=2),
    )
    assert (state.risk, state.assessed_at, state.assessed_seq) == ("unlikely", at(3), 3)
    assert list(state.data_categories) == ["contact", "health"]
    assert state.affected_rule is None  # the re-assessment named no rule
    assert state.approximate_subject_count == 2
    assert state.affected == (SUBJECT, OTHER)
    assert state.status == "assessed"


def test_an_assessment_rule_is_kept_in_the_stored_form() -> None:
    state = fold_incidents(opened(), assessed(2, 2, "risk", affected_rule=RULE))
    assert state.affected_rule == {
        "recipient_id": "ads",
        "disclosed_from": "2026-01-31T23:00:00.000000Z",
        "disclosed_to": "2026-03-01T00:00:00.000000Z",
    }


def test_the_first_notification_is_shown_and_the_status_never_moves_back() -> None:
    state = fold_incidents(
        opened(),
        notified(2, 2),
        incident_step(incident_rules.CLOSED, 3, 4, resolution="wiped remotely"),
        notified(4, 5),
        assessed(5, 6, "risk"),
        incident_step(incident_rules.CONTAINED, 6, 7, measures="passwords reset"),
    )
    assert (state.authority_notified_at, state.authority_notified_seq) == (at(2), 2)
    assert state.status == "closed"
    assert (state.closed_at, state.resolution) == (at(4), "wiped remotely")
    assert (state.contained_seq, state.measures) == (6, "passwords reset")
    assert state.last_seq == 6


def test_the_fold_refuses_what_cannot_happen_to_an_incident() -> None:
    with pytest.raises(FoldError, match="never opened"):
        fold_incident(None, notified(2, 2))
    with pytest.raises(FoldError, match="opened twice"):
        fold_incidents(opened(1), opened(2))
    with pytest.raises(FoldError, match="not an incident fact"):
        fold_incident(fold_incidents(opened()), incident_step(request_rules.EXTENDED, 2, 3))


def test_a_stored_incident_folds_on_as_the_one_in_memory() -> None:
    state = fold_incidents(opened(), assessed(2, 2, "risk", SUBJECT, affected_rule=RULE))
    assert Incident.from_fields(state.fields(), state.affected) == state
    assert "affected" not in state.fields()


def test_incident_corrections_apply_only_where_the_state_still_shows_them() -> None:
    opening = opened()
    first, second = assessed(2, 2, "high_risk", SUBJECT), assessed(3, 3, "risk")
    told, again = notified(4, 4), notified(5, 5)
    state = fold_incidents(opening, first, second, told, again)

    fixed = correct_incident(state, second, second.corrected(likely_consequences="none"))
    assert fixed.likely_consequences == "none"
    assert correct_incident(state, first, first.corrected(likely_consequences="none")) == state
    assert correct_incident(state, again, again.corrected(authority="ico")) == state
    fixed = correct_incident(state, told, told.corrected(occurred_at=at(3), authority="ico"))
    assert (fixed.authority_notified_at, fixed.authority) == (at(3), "ico")
    fixed = correct_incident(
        state, opening, opening.corrected(summary="a stolen laptop", data_categories=["ids"])
    )
    assert fixed.summary == "a stolen laptop"
    assert list(fixed.data_categories) == ["contact", "health"]  # the assessment's stay
    assert fixed.status == state.status
    unassessed = fold_incidents(opening)
    fixed = correct_incident(unassessed, opening, opening.corrected(data_categories=["ids"]))
    assert list(fixed.data_categories) == ["ids"]
    fixed = correct_incident(state, second, second.corrected(affected_subjects=[]))
    assert fixed.affected == (SUBJECT,)  # personal data: never corrected this way


STEPS = (
    incident_rules.ASSESSED,
    incident_rules.CONTAINED,
    incident_rules.AUTHORITY_NOTIFIED,
    incident_rules.SUBJECTS_NOTIFIED,
    incident_rules.CLOSED,
)


STEP_DATA: dict[str, dict[str, Any]] = {
    incident_rules.CONTAINED: {"measures": "m"},
    incident_rules.AUTHORITY_NOTIFIED: {"authority": "cnil", "dpo_contact": "d"},
    incident_rules.SUBJECTS_NOTIFIED: {"channel": "email", "subject_count": 1},
    incident_rules.CLOSED: {"resolution": "r"},
}


def any_step(type_name: str, seq: int, subjects: list[str]) -> Fact:
    if type_name == incident_rules.ASSESSED:
        return assessed(seq, 2, "risk", *subjects)
    return incident_step(type_name, seq, 2, **STEP_DATA[type_name])


@seed(20261202)
@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(STEPS),
            st.lists(st.sampled_from([SUBJECT, OTHER, "c", "d"]), max_size=3),
        ),
        max_size=8,
    )
)
def test_any_order_of_steps_folds_to_the_furthest_status_and_every_named_subject(
    steps: list[tuple[str, list[str]]],
) -> None:
    facts = [opened()] + [
        any_step(type_name, seq, subjects) for seq, (type_name, subjects) in enumerate(steps, 2)
    ]
    state = fold_incidents(*facts)
    reached = [incident_rules.STEP_STATUS[t] for t, _ in steps if t in incident_rules.STEP_STATUS]
    assert state.status == max(["open", *reached], key=incident_rules.STATUSES.index)
    named = [s for t, subjects in steps if t == incident_rules.ASSESSED for s in subjects]
    assert state.affected == tuple(dict.fromkeys(named))
    assert state.last_seq == facts[-1].seq
    firsts = [seq for seq, (t, _) in enumerate(steps, 2) if t == incident_rules.AUTHORITY_NOTIFIED]
    assert state.authority_notified_seq == (firsts[0] if firsts else None)
