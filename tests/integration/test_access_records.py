"""Reads of personal data are on the record (invariant 11): ``personal_data.accessed``.

The event names the client, the action, the scope and the purpose; the subjects whose data
was opened are sealed mentions, so that each finds the read in their own bundle and nobody
else learns who they are.
"""

from __future__ import annotations

import json
from pathlib import Path

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.access_records import AccessAction, AccessRecord
from ledger.application import LedgerApplication
from ledger.config import Settings
from ledger.errors import ValidationError
from ledger.operations import LedgerOperations
from ledger.verifier.bundle import verify_bundle
from ledger.verifier.entry import parse_body
from ledger.verifier.mentions import WITHHELD
from tests import facts
from tests.support import bundles


def _three_subjects(ledger: LedgerApplication) -> list[str]:
    pol = facts.policy()
    refs = [facts.ref("person") for _ in range(3)]
    ledger.append([pol, *(facts.consent(r, pol["version"]) for r in refs)])
    return [ledger.subject_keys.pseudonym(r) for r in refs]


def test_a_read_is_recorded_with_its_subjects_sealed(
    ledger: LedgerApplication, settings: Settings, tmp_path: Path
) -> None:
    pseudonyms = _three_subjects(ledger)
    receipt = ledger.record_access(
        AccessRecord(
            client="responder",
            action=AccessAction.INCIDENT_AFFECTED,
            scope="incidents:identify",
            purpose="notify the people of the breach",
            subjects=pseudonyms[:2],
            details={"incident_id": "inc-1"},
        )
    )
    record = ledger.ledger.get_record(receipt.seq)
    assert record is not None
    body = orjson.loads(record.body)
    assert body["type"] == "personal_data.accessed"
    assert body["event_id"] is None
    stored = body["data"]
    assert stored["client"] == "responder" and stored["count"] == 2
    assert stored["details"] == {"incident_id": "inc-1"}
    # The pseudonyms are not in the stored body: each is sealed under the mention key.
    for pseudonym in pseudonyms:
        assert pseudonym.encode() not in record.body
    # The ledger's own readers see them opened.
    shown = ledger.get_event(receipt.seq).data
    assert shown["opened_subjects"] == pseudonyms[:2]
    # verify-log checks the event like any other.
    report = LedgerOperations(ledger, settings).verify_log()
    assert report.ok, report.problems

    # The first subject's bundle holds the read, with the other subject withheld; the third
    # subject's bundle does not hold it.
    mine = bundles.export(
        ledger, settings, {"kind": "subject", "subject": pseudonyms[0]}, tmp_path / "a"
    )
    verify_bundle(mine.path, bundles.trusted(ledger, settings))
    lines = [line.split(b"\t") for line in (mine.path / "events.tsv").read_bytes().splitlines()]
    reads = [f for f in lines if parse_body(f[3])["type"] == "personal_data.accessed"]
    assert len(reads) == 1
    assert json.loads(reads[0][2]) == [pseudonyms[0], WITHHELD]
    assert pseudonyms[1].encode() not in (mine.path / "events.tsv").read_bytes()
    theirs = bundles.export(
        ledger, settings, {"kind": "subject", "subject": pseudonyms[2]}, tmp_path / "c"
    )
    text = (theirs.path / "events.tsv").read_bytes()
    assert b"personal_data.accessed" not in text


def test_a_read_of_many_names_none_and_counts_them(ledger: LedgerApplication) -> None:
    receipt = ledger.record_access(
        AccessRecord(
            client="regulator-desk",
            action=AccessAction.BUNDLE_EXPORT,
            scope="exports:create",
            purpose="annual audit",
            count=250_000,
            details={"scope": "all", "checkpoint_size": 250_000},
        )
    )
    data = ledger.get_event(receipt.seq).data
    assert data["count"] == 250_000 and "opened_subjects" not in data


@pytest.mark.parametrize(
    ("record", "field", "rule"),
    [
        (AccessRecord("", "event", "history:read"), "client", "required"),
        (AccessRecord("c", "event", "history:read", purpose=" "), "purpose", "required"),
        (
            AccessRecord("c", "event", "history:read", purpose="a\nb"),
            "purpose",
            "control_character",
        ),
        (AccessRecord("c", "event", "history:read", purpose="x" * 501), "purpose", "too_long"),
        (AccessRecord("c", "event", "s", subjects=["alice"]), "subjects", "not_a_pseudonym"),
        (AccessRecord("c", "event", "s", count=-1), "count", "out_of_range"),
        (AccessRecord("c", "event", "s", details={"k": True}), "details.k", "type"),
    ],
)
def test_a_bad_record_is_refused_and_nothing_is_appended(
    ledger: LedgerApplication, record: AccessRecord, field: str, rule: str
) -> None:
    head = ledger.head()
    with pytest.raises(ValidationError) as caught:
        ledger.record_access(record)
    assert (field, rule) in {(p.field, p.rule) for p in caught.value.problems}
    assert ledger.head() == head


ANY_TEXT = st.characters(codec=None, categories=None)
"""Any code point, lone surrogates and controls included."""


@given(
    purpose=st.text(ANY_TEXT, max_size=600),
    client=st.text(ANY_TEXT, max_size=250),
    detail=st.one_of(st.text(max_size=250), st.integers()),
)
@settings(max_examples=60, deadline=None)
def test_any_record_is_refused_by_name_or_checks(purpose: str, client: str, detail: object) -> None:
    """A record from odd input either passes its checks or names what is wrong: it never
    fails some other way (it is checked before anything is appended)."""
    record = AccessRecord(client, "event", "history:read", purpose, details={"d": detail})  # type: ignore[dict-item]
    problems = record.problems()
    if not problems:
        orjson.dumps(record.data())  # what is appended serialises
    assert all(p.field and p.rule for p in problems)
