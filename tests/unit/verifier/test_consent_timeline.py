"""The consent timeline and the pending renewal, as the read models and the report derive them.

Both come from :mod:`ledger.verifier.consent_rules` (one definition): here they are checked on
decisions and notes alone, without storage.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hypothesis import given, seed, settings
from hypothesis import strategies as st

from ledger.verifier.consent_rules import (
    CONSENT_TYPES,
    NOTE_TYPES,
    RENEWAL_REQUESTED,
    Decision,
    Note,
    Policy,
    consent_purposes,
    note_of,
    pending_renewal,
    timeline,
    verdict_at,
)
from ledger.verifier.report import ReportEvent, write_report

V1 = Policy("v1", "2026-01-01T00:00:00.000000Z", False, None, 1)
V2 = Policy("v2", "2026-06-01T00:00:00.000000Z", True, None, 2)
POLICIES = {"v1": V1, "v2": V2}


def at(day: int) -> str:
    """Day ``day`` of 2026 (1: 1 January) at noon, in the stored form."""
    month, rest = divmod(day - 1, 28)
    return f"2026-{month + 1:02d}-{rest + 1:02d}T12:00:00.000000Z"


def given_(seq: int, day: int, expires: int | None = None) -> Decision:
    return Decision(seq, at(day), "given", "v1", None if expires is None else at(expires), False)


def decided(seq: int, day: int, decision: str) -> Decision:
    return Decision(seq, at(day), decision, "v1", None, False)


def renewal(seq: int, day: int, respond_by: int | None = None) -> Note:
    details = (
        ("reason", "policy_changed"),
        ("respond_by", None if respond_by is None else at(respond_by)),
    )
    return Note(seq, at(day), RENEWAL_REQUESTED, "v2", details)


def test_a_renewal_request_is_pending_until_the_next_decision() -> None:
    decisions = [given_(3, 10), given_(9, 200)]
    notes = [renewal(6, 160, respond_by=190)]
    assert pending_renewal(decisions, notes, at(150)) is None
    assert pending_renewal(decisions, notes, at(160)) == notes[0]
    assert pending_renewal(decisions, notes, at(199)) == notes[0]
    assert pending_renewal(decisions, notes, at(200)) is None


def test_a_refusal_or_a_withdrawal_answers_a_renewal_request_too() -> None:
    for answer in ("refused", "withdrawn"):
        decisions = [given_(3, 10), decided(9, 170, answer)]
        assert pending_renewal(decisions, [renewal(6, 160)], at(180)) is None


def test_a_newer_request_replaces_an_older_one() -> None:
    first, second = renewal(6, 160, respond_by=170), renewal(8, 175, respond_by=190)
    assert pending_renewal([given_(3, 10)], [second, first], at(180)) == second
    assert pending_renewal([given_(3, 10)], [second, first], at(165)) == first


def test_a_decision_back_dated_before_the_request_does_not_answer_it() -> None:
    # Recorded after the request (higher seq), but it occurred before it.
    decisions = [given_(3, 10), given_(9, 150)]
    assert pending_renewal(decisions, [renewal(6, 160)], at(180)) == renewal(6, 160)


def test_the_timeline_shows_a_note_in_its_place_with_its_fields_and_no_verdict_changes() -> None:
    # Asked on 28 May to renew ahead of v2, which takes effect on 1 June; renewed in August.
    decisions = [given_(3, 10), given_(9, 200)]
    notes = [renewal(6, 140, respond_by=190)]
    items = timeline(decisions, notes, POLICIES)
    assert [(i.change, i.seq) for i in items] == [
        ("given", 3),
        ("renewal_requested", 6),
        ("renewal_required", 2),
        ("given", 9),
    ]
    (request,) = [i for i in items if i.change == "renewal_requested"]
    assert request.details == (("reason", "policy_changed"), ("respond_by", at(190)))
    assert request.policy_version == "v2"
    assert (request.expires_at, request.guardian) == (None, None)
    before = verdict_at(at(139), decisions, POLICIES, None, 18)
    after = verdict_at(at(140), decisions, POLICIES, None, 18)
    assert before == after and after.valid


def test_the_timeline_without_notes_is_the_decisions_expiries_and_policy_changes() -> None:
    decisions = [given_(3, 10, expires=100), given_(5, 120)]
    items = timeline(decisions, [], POLICIES)
    assert [(i.at, i.change, i.seq) for i in items] == [
        (at(10), "given", 3),
        (at(100), "expired", 3),
        (at(120), "given", 5),
        (V2.effective_at, "renewal_required", 2),
    ]


@st.composite
def histories(draw: st.DrawFn) -> tuple[list[Decision], list[Note], str]:
    """Decisions and renewal requests on one purpose, on a few days (ties included), recorded
    in any order; and a moment to ask at."""
    kinds = draw(st.lists(st.sampled_from(["given", "refused", "withdrawn", "asked"]), max_size=8))
    days = draw(st.lists(st.integers(1, 12), min_size=len(kinds), max_size=len(kinds)))
    seqs = draw(st.permutations(range(1, len(kinds) + 1)))
    decisions: list[Decision] = []
    notes: list[Note] = []
    for kind, day, seq in zip(kinds, days, seqs, strict=True):
        if kind == "asked":
            notes.append(renewal(seq, day))
        else:
            decisions.append(decided(seq, day, kind))
    return decisions, notes, at(draw(st.integers(1, 13)))


@seed(20261202)
@settings(max_examples=200, deadline=None)
@given(histories())
def test_the_pending_renewal_is_what_walking_the_facts_in_time_order_leaves(
    history: tuple[list[Decision], list[Note], str],
) -> None:
    decisions, notes, moment = history
    walk: list[tuple[str, int, Decision | Note]] = [(d.occurred_at, d.seq, d) for d in decisions]
    walk += [(n.occurred_at, n.seq, n) for n in notes]
    pending: Note | None = None
    for occurred_at, _, fact in sorted(walk, key=lambda item: item[:2]):
        if occurred_at > moment:
            break
        pending = fact if isinstance(fact, Note) else None
    assert pending_renewal(decisions, notes, moment) == pending


# -- consent.renewal_requested, folded --------------------------------------------------------

ALICE = "aaaaaaaa-0000-0000-0000-000000000001"
RENEWAL = "consent.renewal_requested"


def test_a_renewal_request_folds_into_a_note_on_each_purpose_with_its_fields() -> None:
    data = {
        "subject": ALICE,
        "purposes": ["mail", "sms", "mail"],
        "policy_version": "v2",
        "reason": "policy_changed",
        "channel": "email",
        "respond_by": "2026-12-31T23:59:59+09:00",
    }
    assert RENEWAL in CONSENT_TYPES and RENEWAL in NOTE_TYPES
    note = note_of(RENEWAL, 7, at(100), data)
    assert consent_purposes(data) == ["mail", "sms"]
    assert note == Note(
        7,
        at(100),
        RENEWAL_REQUESTED,
        "v2",
        (
            ("reason", "policy_changed"),
            ("channel", "email"),
            ("respond_by", "2026-12-31T14:59:59.000000Z"),
        ),
    )
    assert note.as_dict() == {
        "seq": 7,
        "since": at(100),
        "policy_version": "v2",
        "reason": "policy_changed",
        "channel": "email",
        "respond_by": "2026-12-31T14:59:59.000000Z",
    }
    without = note_of(RENEWAL, 8, at(101), {k: v for k, v in data.items() if k != "respond_by"})
    assert dict(without.details)["respond_by"] is None


def _event(seq: int, type_name: str, day: int, data: dict[str, Any]) -> ReportEvent:
    return ReportEvent(
        seq=seq,
        type=type_name,
        occurred_at=at(day),
        recorded_at="2026-12-01T00:00:00.000000Z",
        event_id=f"evt-{seq}",
        backdated=True,
        data=data,
        shown={**data, "subject_ref": "alice"} if "subject" in data else data,
    )


def _log() -> Iterator[ReportEvent]:
    purposes = [{"id": "ads", "name": "Ads", "legal_basis": "consent"}]
    for seq, version, material in ((1, "p1", False), (2, "p2", True)):
        yield _event(
            seq,
            "policy.version_published",
            1 if seq == 1 else 120,
            {
                "version": version,
                "effective_at": V1.effective_at if seq == 1 else V2.effective_at,
                "material": material,
                "purposes": purposes,
            },
        )
    consent = {"subject": ALICE, "purposes": ["ads"], "policy_version": "p1"}
    yield _event(3, "consent.given", 10, consent)
    yield _event(
        4,
        RENEWAL,
        130,
        {**consent, "policy_version": "p2", "reason": "policy_changed", "channel": "email"},
    )
    yield _event(
        5,
        "correction.recorded",
        131,
        {
            "corrects_event_id": "evt-4",
            "reason": "the e-mail gave a date",
            "corrected_fields": {"respond_by": at(160)},
        },
    )
    yield _event(6, "consent.given", 170, {**consent, "policy_version": "p2"})


def test_the_report_shows_a_renewal_request_on_the_timeline_as_corrected(tmp_path: Path) -> None:
    write_report({"kind": "all"}, "o\n1\nAA==\n", _log, tmp_path, default_minimum_age=18)
    with (tmp_path / "consent.csv").open(encoding="utf-8", newline="") as f:
        rows = [
            (r["at"], r["change"], r["seq"], r["status"], r["details"]) for r in csv.DictReader(f)
        ]
    assert rows == [
        (at(10), "given", "3", "given", ""),
        (
            at(130),
            "renewal_requested",
            "4",
            "given",
            f"reason: policy_changed; channel: email; respond_by: {at(160)}",
        ),
        (V2.effective_at, "renewal_required", "2", "renewal_required", ""),
        (at(170), "given", "6", "given", ""),
    ]
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert "<td>renewal_requested</td><td>4</td><td>p2</td>" in page
