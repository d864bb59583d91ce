"""A receipt names the fact it was asked for, even when the ledger records more after it.

A ``request.fulfilled`` that closes an erasure (or an account cancellation) makes the ledger
record the subject's ``subject.erased`` right after it, in the same commit; the receipt, and
the receipt a retry gets, name the ``request.fulfilled``.
"""

from __future__ import annotations

import orjson

from ledger.application import LedgerApplication
from ledger.receipts import Receipt
from tests import facts
from tests.conftest import RawDatabase
from tests.support.examples import example_lines


def stored(ledger: LedgerApplication, receipt: Receipt) -> dict[str, object]:
    record = ledger.ledger.get_record(receipt.seq)
    assert record is not None
    body: dict[str, object] = orjson.loads(record.body)
    return body


def test_the_receipt_of_a_fulfilled_erasure_names_the_fact(ledger: LedgerApplication) -> None:
    lines = example_lines()
    receipts = {r.event_id: r for r in ledger.append(lines)}
    fulfilled = receipts["evt-0043"]
    assert fulfilled.seq == 48
    body = stored(ledger, fulfilled)
    assert (body["type"], body["event_id"]) == ("request.fulfilled", "evt-0043")
    erased = ledger.ledger.get_record(49)
    assert erased is not None and orjson.loads(erased.body)["type"] == "subject.erased"
    # Every receipt of the import names the event that carries its event id.
    for event_id, receipt in receipts.items():
        assert stored(ledger, receipt)["event_id"] == event_id


def test_a_retry_gets_the_same_receipt(ledger: LedgerApplication) -> None:
    subject = facts.ref("user")
    request_id = facts.ref("req")
    received = facts.request(subject, request_id, kind="erasure")
    fulfilled = {
        "type": "request.fulfilled",
        "event_id": facts.ref("evt"),
        "occurred_at": facts.now(),
        "request_id": request_id,
        "subject": subject,
    }
    ledger.append([received])
    [first] = ledger.append([fulfilled])
    [again] = ledger.append([fulfilled])
    assert again.duplicate and not first.duplicate
    assert (again.seq, again.event_hash, again.signature) == (
        first.seq,
        first.event_hash,
        first.signature,
    )
    assert stored(ledger, again)["type"] == "request.fulfilled"


def test_a_claim_stored_by_earlier_versions_still_gives_the_facts_receipt(
    ledger: LedgerApplication, raw_db: RawDatabase
) -> None:
    lines = example_lines()
    ledger.append(lines)
    raw_db.drop_append_only_guards()
    raw_db.execute("UPDATE ledger_claims SET seq = 49 WHERE event_id = 'evt-0043'")  # as before
    [again] = ledger.append([lines[42]])
    assert again.duplicate and again.seq == 48 and again.event_id == "evt-0043"
