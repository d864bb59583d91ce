"""Consent questions in one statement: the policies kept in memory never answer stale, an
erasure answers as soon as it is processed, and a lifecycle begun elsewhere is found."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from ledger.application import LedgerApplication
from ledger.config import Settings, open_ledger
from projections.consent_state import ConsentState, ConsentStateView
from projections.database import ProjectionDatabase
from projections.queries import Queries
from projections.read_models import ReadModels
from projections.runner import ProjectionRunner
from tests import facts
from tests.integration.projection_fixtures import projection_database

NOW = datetime.now(UTC).replace(microsecond=0)
PURPOSE = "marketing_email"


def at(days: float) -> str:
    return (NOW + timedelta(days=days)).isoformat()


class Setting:
    """The read model's worker and the API's view, each on a database connection of its own
    (as when ``projections run`` is a process apart from ``serve``)."""

    def __init__(
        self, ledger: LedgerApplication, worker_db: ProjectionDatabase, api_db: ProjectionDatabase
    ) -> None:
        self.ledger = ledger
        self.runner = ProjectionRunner(ledger, worker_db, [ConsentState()])
        self.view = ConsentStateView(api_db)
        self.policy = facts.policy(effective_at=at(-100), occurred_at=at(-100))
        self.subject = facts.ref("user")
        self.record(self.policy)

    @property
    def pseudonym(self) -> str:
        """The subject's pseudonym now (the ledger makes one when it first meets the
        reference; an erased reference has none)."""
        return self.ledger.subject_keys.pseudonym(self.subject)

    def record(self, *items: dict[str, Any]) -> list[int]:
        receipts = self.ledger.append(list(items))
        self.runner.catch_up()
        return [r.seq for r in receipts]

    def answer(self) -> tuple[bool, str | None, int | None]:
        verdict = self.view.decide(self.pseudonym, PURPOSE, datetime.now(UTC))
        return verdict.valid, verdict.status, verdict.seq


@pytest.fixture
def setting(ledger: LedgerApplication, settings: Settings) -> Iterator[Setting]:
    worker_db, api_db = projection_database(settings), projection_database(settings)
    try:
        yield Setting(ledger, worker_db, api_db)
    finally:
        worker_db.close()
        api_db.close()


def test_a_policy_published_after_the_view_answered_is_in_the_next_answer(
    setting: Setting,
) -> None:
    [given] = setting.record(
        facts.consent(setting.subject, setting.policy["version"], occurred_at=at(-50))
    )
    assert setting.answer() == (True, "given", given)  # the view now keeps the policies
    material = facts.policy(effective_at=at(-1), material=True, occurred_at=at(-1))
    [published] = setting.record(material)
    assert setting.answer() == (False, "renewal_required", published)


def test_a_corrected_policy_keeps_its_seq_and_the_view_still_sees_the_change(
    setting: Setting,
) -> None:
    later = facts.policy(effective_at=at(30), material=True, occurred_at=at(-60))
    [published, given] = setting.record(
        later, facts.consent(setting.subject, setting.policy["version"], occurred_at=at(-50))
    )
    assert setting.answer() == (True, "given", given)
    correction = {
        "type": "correction.recorded",
        "event_id": facts.ref("e"),
        "occurred_at": at(0),
        "corrects_event_id": later["event_id"],
        "reason": "the new version took effect last week, not next month",
        "corrected_fields": {"effective_at": at(-7)},
    }
    setting.record(correction)
    # Same rows, same seqs, one field changed: the view must not answer from what it kept.
    assert setting.answer() == (False, "renewal_required", published)


def test_the_policies_kept_match_the_table_after_a_rebuild(setting: Setting) -> None:
    [given] = setting.record(
        facts.consent(setting.subject, setting.policy["version"], occurred_at=at(-50))
    )
    assert setting.answer() == (True, "given", given)
    setting.runner.rebuild()
    assert setting.answer() == (True, "given", given)
    material = facts.policy(effective_at=at(-1), material=True, occurred_at=at(-1))
    [published] = setting.record(material)
    assert setting.answer() == (False, "renewal_required", published)


def test_an_erasure_is_the_answer_as_soon_as_it_is_processed(setting: Setting) -> None:
    [given] = setting.record(
        facts.consent(setting.subject, setting.policy["version"], occurred_at=at(-50))
    )
    assert setting.answer() == (True, "given", given)
    pseudonym = setting.pseudonym
    receipt = setting.ledger.erase(subject_ref=setting.subject)
    setting.runner.catch_up()
    # The subject's stream says erased; the reference leads nowhere any more.
    verdict = setting.view.decide(pseudonym, PURPOSE, datetime.now(UTC))
    assert (verdict.valid, verdict.status, verdict.seq) == (False, "erased", receipt.seq)
    state = setting.view.state(pseudonym, datetime.now(UTC))
    assert [(s.purpose, s.verdict.status) for s in state] == [(PURPOSE, "erased")]
    assert setting.answer() == (False, None, None)
    assert setting.view.state(setting.pseudonym, datetime.now(UTC)) == []


def test_a_lifecycle_begun_by_another_process_is_found_by_this_one(
    ledger: LedgerApplication, settings: Settings
) -> None:
    """Worker B asked about the reference before worker A erased it and began its next
    lifecycle: B's remembered pseudonym names the erased subject, and must not answer."""
    other = open_ledger(settings)
    models = ReadModels(ledger, settings)
    try:
        policy = facts.policy()
        alice = facts.ref("alice")
        ledger.append([policy, facts.consent(alice, policy["version"])])
        models.runner.catch_up()
        first = Queries(other, models).subject_facts(
            alice, PURPOSE
        )  # B now remembers the first lifecycle
        assert first.erasure is None and PURPOSE in first.decisions
        ledger.erase(subject_ref=alice)
        started = {
            "type": "subject.lifecycle_started",
            "event_id": facts.ref("evt"),
            "occurred_at": facts.now(),
            "subject": alice,
            "reason": "the person opened a new account",
        }
        ledger.append([started, facts.consent(alice, policy["version"], kind="refused")])
        models.runner.catch_up()
        seen = Queries(other, models).subject_facts(alice, PURPOSE)
        assert seen.subject == ledger.subject_keys.pseudonym(alice) != first.subject
        assert seen.erasure is None
        verdict = models.consent.verdict_of(seen, PURPOSE, datetime.now(UTC))
        assert (verdict.valid, verdict.status) == (False, "refused")
        # Erased again, with no later lifecycle: the reference leads to nothing, in either
        # process, whatever they remembered.
        ledger.erase(subject_ref=alice)
        models.runner.catch_up()
        erased = Queries(other, models).subject_facts(alice, PURPOSE)
        assert erased.subject != seen.subject
        assert erased.erasure is None and not erased.decisions
    finally:
        models.close()
        other.close()
