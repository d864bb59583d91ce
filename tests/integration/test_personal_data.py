"""Personal data never reaches storage in plaintext; sealed values are bound to their event."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from ledger.application import LedgerApplication
from ledger.config import Settings
from ledger.sealing import open_data
from ledger.subject_keys import SealError, Survey
from ledger.verifier.entry import parse_body
from tests import facts
from tests.conftest import RawDatabase

SECRETS = {
    "subject": "zq-subject-778122",
    "other": "zq-subject-990311",
    "email": "zq.person@example.org",
    "ip": "198.51.100.77",
    "agent": "ZqBrowser/9.1 (Linux)",
    "guardian": "Zq Guardian Parent",
    "details": "Zq please send me every record you hold",
}


def record_everything(ledger: LedgerApplication) -> None:
    pol = facts.policy()
    rcpt = facts.recipient()
    request = facts.request(SECRETS["subject"], details=SECRETS["details"])
    ledger.append(
        [
            pol,
            rcpt,
            facts.age(SECRETS["other"], 15),
            facts.consent(
                SECRETS["subject"],
                pol["version"],
                contact=SECRETS["email"],
                evidence={
                    "ip_address": SECRETS["ip"],
                    "user_agent": SECRETS["agent"],
                    "form_id": "signup",
                },
            ),
            facts.consent(
                SECRETS["other"],
                pol["version"],
                guardian={
                    "name": SECRETS["guardian"],
                    "relationship": "parent",
                    "contact": SECRETS["email"],
                },
            ),
            facts.disclosure(
                rcpt["recipient_id"], [SECRETS["subject"], SECRETS["other"]], pol["version"]
            ),
            request,
            {
                "type": "request.fulfilled",
                "event_id": facts.ref("e"),
                "occurred_at": facts.now(),
                "request_id": request["request_id"],
                "subject": SECRETS["subject"],
                "note": SECRETS["details"],
            },
        ]
    )


def stored_bytes(settings: Settings, raw_db: RawDatabase) -> bytes:
    """Every byte of every table of the ledger's storage (files too, for SQLite)."""
    if raw_db.postgres:
        tables = raw_db.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = ?",
            (settings.database_schema,),
        )
        assert len(tables) >= 4
        chunks = []
        for (table,) in tables:
            for row in raw_db.execute(f'SELECT t::text FROM "{table}" t'):
                chunks.append(str(row[0]).encode())
        return b"\n".join(chunks)
    files = [p for p in Path(settings.data_dir).rglob("*") if p.is_file()]
    assert any(p.name == "ledger.sqlite3" for p in files)
    return b"\n".join(p.read_bytes() for p in files)


def test_no_table_holds_personal_data_in_plaintext(
    ledger: LedgerApplication, settings: Settings, raw_db: RawDatabase
) -> None:
    record_everything(ledger)
    everything = stored_bytes(settings, raw_db)
    for name, secret in SECRETS.items():
        for form in (
            secret.encode(),
            secret.encode().hex().encode(),
            base64.b64encode(secret.encode()),
        ):
            assert form not in everything, f"{name} is stored in plaintext"
    # ... while the ledger itself can still read them back.
    shown = [ledger.get_event(seq).data for seq in range(1, ledger.head() + 1)]
    assert any(d.get("contact") == SECRETS["email"] for d in shown)
    assert any(d.get("subject_ref") == SECRETS["subject"] for d in shown)
    disclosed = next(d for d in shown if "subjects" in d)
    assert [s["ref"] for s in disclosed["subjects"]] == [SECRETS["subject"], SECRETS["other"]]


def test_a_sealed_value_moved_to_another_event_does_not_open(ledger: LedgerApplication) -> None:
    pol = facts.policy()
    subject = facts.ref("user")
    receipts = ledger.append(
        [
            pol,
            facts.consent(subject, pol["version"], contact="first@example.org"),
            facts.consent(subject, pol["version"], kind="withdrawn", contact="second@example.org"),
        ]
    )
    first, second = (parse_body(ledger.ledger.get_record(r.seq).body) for r in receipts[1:])  # type: ignore[union-attr]
    moved = dict(second["data"], contact=first["data"]["contact"])
    with pytest.raises(SealError):
        open_data(
            "consent.withdrawn",
            moved,
            second["stream"],
            second["stream_version"],
            ledger.subject_keys,
        )
    into_other_field = dict(first["data"], subject_ref=first["data"]["contact"])
    with pytest.raises(SealError):
        open_data(
            "consent.given",
            into_other_field,
            first["stream"],
            first["stream_version"],
            ledger.subject_keys,
        )
    # Untouched, both open.
    assert (
        open_data(
            "consent.given",
            first["data"],
            first["stream"],
            first["stream_version"],
            ledger.subject_keys,
        )["contact"]
        == "first@example.org"
    )


def test_subjects_are_pseudonymous_and_stable(ledger: LedgerApplication) -> None:
    keys = ledger.subject_keys
    assert keys.pseudonym("user-1") == keys.pseudonym("user-1") != keys.pseudonym("user-2")
    assert "user-1" not in keys.pseudonym("user-1")


def test_two_writers_making_a_new_subjects_key_agree_on_one(
    ledger: LedgerApplication, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A writer that sealed under a key another writer beat it to storing starts again."""
    from ledger.config import open_ledger

    pol = facts.policy()
    subject = facts.ref("user")
    ledger.append([pol])
    other = open_ledger(settings)
    try:
        other.append([facts.consent(subject, pol["version"], contact="won@example.org")])
        # This writer looked before the other one stored the key: it sees no key (nor the
        # subject's stream), whichever read it makes first.
        store = ledger.subject_keys.store
        real_select, real_survey = store.select, store.survey
        calls = []

        def stale_select(pseudonyms: list[str]) -> dict[str, bytes]:
            calls.append(pseudonyms)
            return {} if len(calls) == 1 else real_select(pseudonyms)

        def stale_survey(bases: list[str]) -> Survey:
            calls.append(bases)
            return Survey({}, {}, set()) if len(calls) == 1 else real_survey(bases)

        monkeypatch.setattr(store, "select", stale_select)
        monkeypatch.setattr(store, "survey", stale_survey)
        [receipt] = ledger.append(
            [facts.consent(subject, pol["version"], contact="late@example.org")]
        )
        assert len(calls) >= 2  # it lost the race once, then used the stored key
        assert ledger.get_event(receipt.seq).data["contact"] == "late@example.org"
        assert other.get_event(receipt.seq).data["contact"] == "late@example.org"
        assert ledger.get_event(receipt.seq - 1).data["contact"] == "won@example.org"
    finally:
        other.close()
