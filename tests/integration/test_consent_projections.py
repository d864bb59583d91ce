"""Consent state and disclosure history: scenarios from the seed policy's obligations."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from ledger.application import LedgerApplication
from ledger.config import Settings
from ledger.errors import ValidationError
from projections.consent_state import ConsentState, ConsentStateView
from projections.disclosures import DisclosureHistory, DisclosureHistoryView
from projections.runner import ProjectionRunner, table_digest
from tests import facts
from tests.integration.projection_fixtures import projection_database

NOW = datetime.now(UTC).replace(microsecond=0)


def at(days: float) -> str:
    """A moment ``days`` from now (negative: in the past)."""
    return (NOW + timedelta(days=days)).isoformat()


def when(days: float) -> datetime:
    return NOW + timedelta(days=days)


@pytest.fixture
def runner(ledger: LedgerApplication, settings: Settings) -> Iterator[ProjectionRunner]:
    db = projection_database(settings)
    runner = ProjectionRunner(ledger, db, [ConsentState(), DisclosureHistory()], batch_size=7)
    try:
        yield runner
    finally:
        db.close()


class World:
    """A policy, a recipient and a subject, set 100 days in the past."""

    def __init__(self, ledger: LedgerApplication, runner: ProjectionRunner) -> None:
        self.ledger = ledger
        self.runner = runner
        self.policy = facts.policy(effective_at=at(-100), occurred_at=at(-100))
        self.recipient = facts.recipient(role="third_party", occurred_at=at(-100))
        self.subject = facts.ref("user")
        ledger.append([self.policy, self.recipient])
        self.consent = ConsentStateView(runner.db)
        self.disclosures = DisclosureHistoryView(runner.db)

    @property
    def pseudonym(self) -> str:
        """The subject's pseudonym now (the ledger makes one when it first meets the
        reference; an erased reference has none)."""
        return self.ledger.subject_keys.pseudonym(self.subject)

    def consent_fact(self, kind: str, days: float, **fields: Any) -> dict[str, Any]:
        return facts.consent(
            self.subject, self.policy["version"], kind=kind, occurred_at=at(days), **fields
        )

    def disclosure(self, days: float, **fields: Any) -> dict[str, Any]:
        return facts.disclosure(
            self.recipient["recipient_id"],
            [self.subject],
            self.policy["version"],
            occurred_at=at(days),
            **fields,
        )

    def record(self, *items: dict[str, Any]) -> list[int]:
        receipts = self.ledger.append(list(items))
        self.runner.catch_up()
        return [r.seq for r in receipts]

    def verdicts(self) -> list[str]:
        return [row.verdict for row in self.disclosures.find(subject=self.pseudonym)]


@pytest.fixture
def world(ledger: LedgerApplication, runner: ProjectionRunner) -> World:
    return World(ledger, runner)


def test_withdrawal_does_not_rewrite_what_was_lawful_before_it(world: World) -> None:
    [given] = world.record(world.consent_fact("given", -50))
    world.record(world.disclosure(-40))
    [withdrawn] = world.record(world.consent_fact("withdrawn", -30))
    world.record(world.disclosure(-20))
    assert world.verdicts() == ["consent_valid", "consent_missing"]
    rows = world.disclosures.find(subject=world.pseudonym)
    assert rows[0].consent_seq == given and not rows[0].violation
    assert rows[1].violation and rows[1].recipient_name == world.recipient["name"]
    before = world.consent.decide(world.pseudonym, "marketing_email", when(-40))
    after = world.consent.decide(world.pseudonym, "marketing_email", when(-20))
    assert (before.valid, before.status, before.seq) == (True, "given", given)
    assert (after.valid, after.status, after.seq) == (False, "withdrawn", withdrawn)
    [state] = world.consent.state(world.pseudonym, NOW)
    assert state.as_dict()["status"] == "withdrawn"
    assert state.as_dict()["dpv_status"] == "dpv:ConsentWithdrawn"


def test_a_backdated_withdrawal_recomputes_later_disclosures(world: World) -> None:
    world.record(world.consent_fact("given", -50))
    world.record(world.disclosure(-20))
    assert world.verdicts() == ["consent_valid"]
    world.record(world.consent_fact("withdrawn", -30))  # recorded later, occurred earlier
    assert world.verdicts() == ["consent_missing"]


def test_a_material_policy_change_requires_renewal(world: World) -> None:
    world.record(world.consent_fact("given", -50))
    material = facts.policy(material=True, effective_at=at(-10), occurred_at=at(-12))
    [policy_seq] = world.record(material)
    before = world.consent.decide(world.pseudonym, "marketing_email", when(-11))
    after = world.consent.decide(world.pseudonym, "marketing_email", when(-1))
    assert before.valid and not after.valid
    assert (after.status, after.seq) == ("renewal_required", policy_seq)
    world.record(world.disclosure(-5))
    assert world.verdicts() == ["consent_missing"]
    renewed = facts.consent(world.subject, material["version"], occurred_at=at(-3))
    world.record(renewed)
    assert world.consent.decide(world.pseudonym, "marketing_email", when(-1)).valid


def test_consent_expires_by_itself(world: World) -> None:
    world.record(world.consent_fact("given", -50, expires_at=at(-10)))
    assert world.consent.decide(world.pseudonym, "marketing_email", when(-11)).valid
    expired = world.consent.decide(world.pseudonym, "marketing_email", when(-9))
    assert (expired.valid, expired.status) == (False, "expired")
    [interval] = world.consent.intervals(world.pseudonym, "marketing_email")
    assert interval.end_reason == "expired"


def test_a_minors_consent_is_invalid_once_the_age_is_known(world: World) -> None:
    world.record(world.consent_fact("given", -50))
    world.record(world.disclosure(-40))
    assert world.verdicts() == ["consent_valid"]
    [age_seq] = world.record(facts.age(world.subject, 15))  # attested now, after the consent
    verdict = world.consent.decide(world.pseudonym, "marketing_email", when(-40))
    assert (verdict.valid, verdict.status, verdict.seq) == (False, "invalid_minor", age_seq)
    assert world.verdicts() == ["consent_missing"]


def test_a_guardians_consent_is_not_a_minors_unless_the_policy_accepts_it(world: World) -> None:
    # The world's policy leaves guardian_consent_allowed out: off, as in the seed policy ("If
    # you are a minor under the age of 18, we will not provide you with the Services").
    [age_seq] = world.record(facts.age(world.subject, 15))
    guardian = {"name": "A Parent", "relationship": "parent"}
    world.record(world.consent_fact("given", -1, guardian=guardian), world.disclosure(-0.5))
    verdict = world.consent.decide(world.pseudonym, "marketing_email", NOW)
    assert verdict.answer(world.pseudonym, "marketing_email") | {"since": None} == {
        "subject": world.pseudonym,
        "purpose": "marketing_email",
        "allowed": False,
        "answer": "no",
        "legal_basis": "consent",
        "status": "guardian_not_allowed",
        "dpv_status": "dpv:ConsentInvalidated",
        "decided_by_seq": age_seq,
        "policy_version": world.policy["version"],
        "since": None,
    }
    [state] = world.consent.state(world.pseudonym, NOW)
    assert state.as_dict()["status"] == "guardian_not_allowed"
    assert world.verdicts() == ["consent_missing"]


def test_a_guardians_consent_stands_for_a_minors_where_the_policy_accepts_it(
    world: World,
) -> None:
    accepting = facts.policy(
        guardian_consent_allowed=True, effective_at=at(-100), occurred_at=at(-100)
    )
    world.record(accepting, facts.age(world.subject, 15))
    guardian = {"name": "A Parent", "relationship": "parent"}
    [given] = world.record(
        facts.consent(world.subject, accepting["version"], occurred_at=at(-1), guardian=guardian),
        facts.disclosure(
            world.recipient["recipient_id"],
            [world.subject],
            accepting["version"],
            occurred_at=at(-0.5),
        ),
    )[:1]
    verdict = world.consent.decide(world.pseudonym, "marketing_email", NOW)
    assert (verdict.valid, verdict.status, verdict.seq) == (True, "given", given)
    assert world.verdicts() == ["consent_valid"]
    # Without a guardian, the same version still refuses a minor's own consent.
    other = facts.ref("user")
    world.record(facts.age(other, 15))
    with pytest.raises(ValidationError) as refused:
        world.record(facts.consent(other, accepting["version"], occurred_at=at(-1)))
    assert refused.value.problems[0].rule == "subject_is_minor"


def test_a_corrected_policy_version_changes_the_verdicts_it_decides(world: World) -> None:
    guardian = {"name": "A Parent", "relationship": "parent"}
    world.record(facts.age(world.subject, 15))
    world.record(world.consent_fact("given", -10, guardian=guardian), world.disclosure(-5))
    assert world.verdicts() == ["consent_missing"]
    correction = {
        "type": "correction.recorded",
        "event_id": facts.ref("e"),
        "occurred_at": at(0),
        "corrects_event_id": world.policy["event_id"],
        "reason": "the published text accepts a parent's consent for members aged 14 to 17",
        "corrected_fields": {"guardian_consent_allowed": True},
    }
    world.record(correction)
    assert world.consent.decide(world.pseudonym, "marketing_email", NOW).valid
    assert world.verdicts() == ["consent_valid"]


def test_a_disclosure_under_a_lawful_exception(world: World) -> None:
    world.record(world.disclosure(-5, legal_basis="criminal_investigation"))
    [row] = world.disclosures.find(subject=world.pseudonym)
    assert (row.verdict, row.violation) == ("lawful_exception", False)


def test_a_basis_the_policy_neither_declares_nor_excepts_is_a_violation(world: World) -> None:
    # "We will not share your personal information with third parties unless we obtain your
    # authorized consent or such information falls under an exception."
    world.record(world.consent_fact("given", -50), world.consent_fact("withdrawn", -30))
    world.record(world.disclosure(-20, legal_basis="legitimate_interest"))
    [row] = world.disclosures.find(subject=world.pseudonym)
    assert (row.verdict, row.violation, row.consent_seq) == (
        "legal_basis_not_permitted",
        True,
        None,
    )
    # The purpose's declared basis is permitted (service_provision: contract), and so is every
    # exception the policy lists, whatever the purpose.
    world.record(
        world.disclosure(-10, purpose="service_provision", legal_basis="contract"),
        world.disclosure(-9, legal_basis="vital_interest"),
        world.disclosure(-8, purpose="service_provision", legal_basis="public_interest"),
    )
    assert world.verdicts() == [
        "legal_basis_not_permitted",
        "lawful_exception",
        "lawful_exception",
        "legal_basis_not_permitted",
    ]


def test_delegated_processing_of_data_not_de_identified_is_a_violation(world: World) -> None:
    # "We will employ the technical means to de-sensitize personal information subject to
    # delegate processing."
    [given] = world.record(world.consent_fact("given", -50))
    world.record(
        world.disclosure(-20, kind="delegated_processing", de_identified=False),
        world.disclosure(-19, kind="delegated_processing", de_identified=True),
        world.disclosure(-18, kind="sharing", de_identified=False),
        world.disclosure(
            -17,
            kind="delegated_processing",
            de_identified=False,
            purpose="service_provision",
            legal_basis="contract",
        ),
    )
    rows = world.disclosures.find(subject=world.pseudonym)
    assert [(r.verdict, r.violation, r.consent_seq) for r in rows] == [
        ("not_de_identified", True, given),
        ("consent_valid", False, given),
        ("consent_valid", False, given),
        ("not_de_identified", True, None),
    ]
    # Consent missing comes first: a row has one verdict, the first that applies.
    world.record(world.consent_fact("withdrawn", -15))
    world.record(world.disclosure(-10, kind="delegated_processing", de_identified=False))
    assert world.verdicts()[-1] == "consent_missing"


def test_disclosures_to_unregistered_or_terminated_recipients_are_flagged(world: World) -> None:
    world.record(world.consent_fact("given", -50))
    stranger = facts.disclosure("never-registered", [world.subject], world.policy["version"])
    world.record(stranger)
    terminated = {
        "type": "recipient.terminated",
        "event_id": facts.ref("e"),
        "occurred_at": at(-10),
        "recipient_id": world.recipient["recipient_id"],
    }
    world.record(world.disclosure(-20), terminated, world.disclosure(-5))
    by_recipient = {
        (row.recipient_id, row.occurred_at[:10]): row.verdict
        for row in world.disclosures.find(subject=world.pseudonym)
    }
    assert sorted(by_recipient.values()) == [
        "consent_valid",
        "recipient_terminated",
        "recipient_unregistered",
    ]
    assert len(world.disclosures.find(subject=world.pseudonym, violations_only=True)) == 2


def test_a_correction_of_the_consent_time_recomputes_verdicts(world: World) -> None:
    given = world.consent_fact("given", -10)
    world.record(given, world.disclosure(-20))
    assert world.verdicts() == ["consent_missing"]
    correction = {
        "type": "correction.recorded",
        "event_id": facts.ref("e"),
        "occurred_at": at(0),
        "corrects_event_id": given["event_id"],
        "reason": "the form was submitted a month earlier",
        "corrected_fields": {"occurred_at": at(-30)},
    }
    world.record(correction)
    assert world.verdicts() == ["consent_valid"]


def test_queries_by_recipient_and_period_with_pages(world: World) -> None:
    world.record(world.consent_fact("given", -50))
    world.record(*[world.disclosure(-40 + n) for n in range(5)])
    rows = world.disclosures.find(recipient_id=world.recipient["recipient_id"])
    assert len(rows) == 5
    window = world.disclosures.find(start=when(-39), end=when(-37))
    assert [r.occurred_at for r in window] == [rows[1].occurred_at, rows[2].occurred_at]
    first = world.disclosures.find(subject=world.pseudonym, limit=2)
    last = first[-1]
    rest = world.disclosures.find(
        subject=world.pseudonym, after=(last.occurred_at, last.seq, last.subject)
    )
    assert [r.seq for r in first + rest] == [r.seq for r in rows]


def test_an_incident_window_finds_the_subjects_disclosed_to_a_recipient(world: World) -> None:
    other = facts.ref("user")
    world.record(world.consent_fact("given", -50))
    world.record(world.disclosure(-20), world.disclosure(-5))
    late = facts.disclosure(
        world.recipient["recipient_id"], [other], world.policy["version"], occurred_at=at(-1)
    )
    world.record(late)
    found = world.disclosures.subjects_disclosed_to(
        world.recipient["recipient_id"], at(-21), at(-4)
    )
    assert found == [world.pseudonym]


def test_the_read_models_hold_no_plaintext_reference(world: World) -> None:
    world.record(world.consent_fact("given", -50), world.disclosure(-40))
    everything = "".join(
        str(row)
        for table in world.runner.db.table_names()
        for row in world.runner.db.query(f"SELECT * FROM {table}")
    )
    assert world.pseudonym in everything and world.subject not in everything


def test_a_rebuild_equals_the_live_result(world: World) -> None:
    world.record(world.consent_fact("given", -50))
    world.record(world.disclosure(-40), world.consent_fact("withdrawn", -30))
    world.record(facts.policy(material=True, effective_at=at(-10), occurred_at=at(-10)))
    world.record(world.disclosure(-5), facts.age(world.subject, 30))
    live = table_digest(world.runner.db)
    assert world.runner.rebuild() > 0
    assert table_digest(world.runner.db) == live
