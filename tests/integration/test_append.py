"""Appending: receipts after commit, idempotency, all-or-nothing batches, append-only storage."""

from __future__ import annotations

import base64
import hashlib
import threading
from datetime import timedelta
from uuid import UUID

import pytest

from ledger.aggregates import Subject
from ledger.application import LedgerApplication
from ledger.config import Settings, load_keyring
from ledger.errors import IdempotencyConflictError, ValidationError
from ledger.verifier.entry import parse_body, parse_entry
from tests import facts
from tests.conftest import RawDatabase


def test_a_receipt_names_the_stored_signed_entry(
    ledger: LedgerApplication, settings: Settings
) -> None:
    pol = facts.policy()
    [receipt] = ledger.append([pol])
    record = ledger.ledger.get_record(receipt.seq)
    assert record is not None
    assert receipt.event_hash == hashlib.sha256(record.entry).hexdigest()
    assert base64.b64decode(receipt.signature) == record.signature
    assert receipt.key_id == ledger.ledger.signer.key_id
    assert load_keyring(settings).verify(receipt.key_id, record.entry, record.signature)
    entry = parse_entry(record.entry)
    body = parse_body(record.body)
    assert entry.seq == receipt.seq and body["event_id"] == pol["event_id"]
    assert body["recorded_at"] == receipt.recorded_at
    assert entry.body_sha256 == hashlib.sha256(record.body).digest()


def test_sequence_numbers_are_gapless_and_in_batch_order(ledger: LedgerApplication) -> None:
    pol = facts.policy()
    ledger.append([pol])
    batch = [facts.consent(facts.ref("user"), pol["version"]) for _ in range(5)]
    receipts = ledger.append(batch)
    # Each new subject adds its subject.registered event just before its first fact.
    assert [r.seq for r in receipts] == [3, 5, 7, 9, 11]
    assert ledger.head() == 11
    assert [ledger.get_event(r.seq).event_id for r in receipts] == [f["event_id"] for f in batch]


def test_a_retry_with_the_same_content_returns_the_original_receipt(
    ledger: LedgerApplication,
) -> None:
    pol = facts.policy()
    [first] = ledger.append([pol])
    [again] = ledger.append([dict(reversed(list(pol.items())))])  # key order is not content
    assert again.duplicate and not first.duplicate
    assert (again.seq, again.event_hash, again.signature) == (
        first.seq,
        first.event_hash,
        first.signature,
    )
    assert ledger.head() == 1


def test_a_repeated_first_fact_of_a_new_subject_is_answered_from_its_claim(
    ledger: LedgerApplication,
) -> None:
    """The first attempt at a batch reads no claims and takes subjects the key store did not
    know for new: a repeat must still find the original, and a subject named twice in one
    batch is registered once."""
    pol = facts.policy()
    ledger.append([pol])
    subject = facts.ref("user")
    first = facts.consent(subject, pol["version"], contact="a@example.org")
    second = facts.consent(subject, pol["version"], purposes=["usage_analytics"])
    receipts = ledger.append([first, second])
    assert [r.seq for r in receipts] == [3, 4]  # one subject.registered, at 2
    head = ledger.head()
    again = ledger.append([first, second])
    assert [(r.seq, r.duplicate) for r in again] == [(3, True), (4, True)]
    assert [r.signature for r in again] == [r.signature for r in receipts]
    assert ledger.head() == head
    changed = dict(first, contact="b@example.org")
    with pytest.raises(IdempotencyConflictError):
        ledger.append([changed])
    assert ledger.head() == head


def test_a_retry_with_different_content_is_a_conflict_and_stores_nothing(
    ledger: LedgerApplication,
) -> None:
    pol = facts.policy()
    ledger.append([pol])
    changed = dict(pol, material=True)
    with pytest.raises(IdempotencyConflictError) as caught:
        ledger.append([facts.policy(), changed])
    assert caught.value.event_id == pol["event_id"] and caught.value.index == 1
    assert "different content" in str(caught.value)
    assert ledger.head() == 1


def test_a_batch_mixing_recorded_and_new_events_records_only_the_new(
    ledger: LedgerApplication,
) -> None:
    pol = facts.policy()
    [first] = ledger.append([pol])
    new = facts.policy()
    receipts = ledger.append([pol, new])
    assert receipts[0].duplicate and receipts[0].seq == first.seq
    assert not receipts[1].duplicate and receipts[1].seq == 2


def test_a_batch_with_one_invalid_event_stores_nothing(ledger: LedgerApplication) -> None:
    pol = facts.policy()
    ledger.append([pol])
    good = [facts.consent(facts.ref("user"), pol["version"]) for _ in range(3)]
    bad = facts.consent(facts.ref("user"), pol["version"], purposes=["no_such_purpose"])
    with pytest.raises(ValidationError) as caught:
        ledger.append([*good, bad])
    [problem] = caught.value.problems
    assert (problem.index, problem.field, problem.rule) == (3, "purposes[0]", "purpose_unknown")
    assert ledger.head() == 1  # not even the subjects' registrations
    assert not ledger.ledger.select_claims([f["event_id"] for f in good])
    receipts = ledger.append(good)  # the same events, now alone, are new
    assert not any(r.duplicate for r in receipts)


def test_a_batch_with_a_malformed_event_names_every_problem(ledger: LedgerApplication) -> None:
    pol = facts.policy()
    broken = dict(facts.consent("u", pol["version"]), occurred_at="yesterday", extra=1)
    with pytest.raises(ValidationError) as caught:
        ledger.append([pol, broken])
    found = {(p.index, p.field, p.rule) for p in caught.value.problems}
    assert (1, "occurred_at", "datetime_parsing") in found
    assert (1, "extra", "unknown_field") in found
    assert ledger.head() == 0


def test_the_log_refuses_updates_and_deletes(
    ledger: LedgerApplication, raw_db: RawDatabase
) -> None:
    ledger.append([facts.policy()])
    with pytest.raises(Exception, match="append-only"):
        raw_db.execute("UPDATE ledger_events SET topic = 'x' WHERE seq = 1")
    with pytest.raises(Exception, match="append-only"):
        raw_db.execute("DELETE FROM ledger_events WHERE seq = 1")
    with pytest.raises(Exception, match="append-only"):
        raw_db.execute("DELETE FROM ledger_claims")
    assert ledger.head() == 1


def test_old_facts_are_flagged_backdated_never_reordered(ledger: LedgerApplication) -> None:
    pol = facts.policy()
    old = dict(facts.policy(), occurred_at=facts.now(-timedelta(days=30)))
    receipts = ledger.append([pol, old])
    assert [ledger.get_event(r.seq).backdated for r in receipts] == [False, True]
    assert receipts[0].seq < receipts[1].seq


def test_facts_from_the_future_are_refused(ledger: LedgerApplication) -> None:
    future = dict(facts.policy(), occurred_at=facts.now(timedelta(hours=1)))
    with pytest.raises(ValidationError) as caught:
        ledger.append([future])
    assert caught.value.problems[0].rule == "occurred_in_future"


def test_streams_rebuild_from_the_log(ledger: LedgerApplication) -> None:
    pol = facts.policy()
    subject = facts.ref("user")
    ledger.append([pol, facts.age(subject, 30), facts.consent(subject, pol["version"])])
    stored: Subject = ledger.repository.get(_subject_id(ledger, subject))
    assert isinstance(stored, Subject)
    assert stored.attested_age == 30 and stored.version == 3


def _subject_id(ledger: LedgerApplication, subject: str) -> UUID:
    return UUID(ledger.subject_keys.pseudonym(subject))


def test_a_subscription_follows_the_log_in_sequence_order(ledger: LedgerApplication) -> None:
    ledger.append([facts.policy()])
    seen: list[int] = []

    def follow() -> None:
        with ledger.ledger.subscribe(gt=0) as subscription:
            for notification in subscription:
                seen.append(notification.id)
                if len(seen) == 3:
                    return

    follower = threading.Thread(target=follow, daemon=True)
    follower.start()
    ledger.append([facts.policy(), facts.policy()])  # after the follower started
    follower.join(timeout=10)
    assert not follower.is_alive(), f"the subscription stalled after {seen}"
    assert seen == [1, 2, 3]
