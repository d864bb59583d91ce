"""A batch's unit of work: what it carries to the committer, and that it commits whole or not."""

from __future__ import annotations

import pytest

from ledger import events as ev
from ledger.application import Batch, LedgerApplication
from ledger.errors import SubjectErasedError
from ledger.handlers import Command, handler_for
from ledger.unit_of_work import UnitOfWork
from tests import facts


def _unit_for(ledger: LedgerApplication, raw: dict[str, object]) -> tuple[Batch, UnitOfWork]:
    """One fact run through its command, and the unit of work its batch hands the recorder."""
    fact = ev.parse_fact(raw)
    batch = Batch(ledger)
    handler_for(fact).handle(Command(ledger, batch, fact, ledger.clock()))
    stored = [ledger.mapper.to_stored_event(event) for event in batch.events]
    return batch, UnitOfWork.of_batch(stored, batch.keys)


def test_a_new_subjects_name_and_key_travel_with_its_events(ledger: LedgerApplication) -> None:
    pol = facts.policy()
    ledger.append([pol])
    batch, unit = _unit_for(ledger, facts.consent("unit-1", pol["version"]))
    [pseudonym] = unit.new_names.values()
    assert set(unit.new_keys) == {pseudonym}
    assert unit.sealed_under == {pseudonym}
    assert not unit.erase and not unit.lifecycles
    assert ledger.subject_keys.current("unit-1") is None  # nothing stored before the commit

    records = ledger.ledger.append(unit)
    batch.keys.committed()

    assert [r.seq for r in records] == [2, 3]  # subject.registered, consent.given
    assert ledger.subject_keys.current("unit-1") == pseudonym
    assert ledger.subject_keys.store.select([pseudonym]) == dict(unit.new_keys)


def test_a_unit_sealed_under_a_subject_erased_meanwhile_writes_nothing(
    ledger: LedgerApplication,
) -> None:
    pol = facts.policy()
    ledger.append([pol, facts.consent("unit-2", pol["version"])])
    batch, unit = _unit_for(ledger, facts.consent("unit-2", pol["version"], kind="withdrawn"))
    [pseudonym] = unit.sealed_under
    assert not unit.new_keys and not unit.new_names  # the subject is known already
    head = ledger.head()
    ledger.erase(subject_ref="unit-2")

    with pytest.raises(SubjectErasedError):
        ledger.ledger.append(unit)
    batch.keys.abandoned()

    assert ledger.head() == head + 1  # only the erasure
    assert ledger.subject_keys.store.erased([pseudonym]) == {pseudonym}
