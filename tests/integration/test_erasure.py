"""Erasure keeps the proof: the key goes, the events stay, nothing shows the person again."""

from __future__ import annotations

import base64
import logging
import sqlite3
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest

from ledger.application import LedgerApplication
from ledger.config import Settings, load_keyring, open_ledger
from ledger.errors import KeyMaterialError, LedgerError, ValidationError
from ledger.export import export_bundle
from ledger.integrity import check_log
from ledger.sealing import ERASED
from ledger.subject_keys import MASTER_KEY_ENV
from ledger.verifier.bundle import verify_bundle
from ledger.verifier.entry import parse_body
from ledger.verifier.note import format_verifier_key, parse_verifier_key
from ledger.vocabulary import ErasureGround
from projections.read_models import ReadModels
from tests import facts

CONTACT = "alice.secret@example.org"
DETAILS = "Please delete everything about my flat at 12 Rue Secrète"


def populate(app: LedgerApplication) -> tuple[str, str, str]:
    """Alice (to be erased), Bob (kept) and a recipient, with personal data everywhere."""
    pol = facts.policy()
    alice, bob, recipient = facts.ref("alice"), facts.ref("bob"), facts.ref("rcpt")
    app.append(
        [
            pol,
            facts.recipient(recipient),
            facts.consent(alice, pol["version"], contact=CONTACT),
            facts.consent(bob, pol["version"], contact="bob@example.org"),
            facts.age(alice, 30),
            facts.disclosure(recipient, [alice, bob], pol["version"]),
            facts.request(alice, kind="access", details=DETAILS),
        ]
    )
    return alice, bob, recipient


def needles(alice: str) -> list[bytes]:
    return [alice.encode(), CONTACT.encode(), DETAILS.encode(), "Rue Secrète".encode()]


def everything_stored(settings: Settings) -> Iterator[tuple[str, bytes]]:
    """Every byte the ledger wrote: each file of the data directory (databases, their
    write-ahead logs, keys) and, on PostgreSQL, every row of every table of its schema."""
    for path in sorted(settings.data_dir.rglob("*")):
        if path.is_file():
            yield str(path), path.read_bytes()
    if settings.database_url is not None:
        with psycopg.connect(settings.database_url, autocommit=True) as conn:
            tables = conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
                (settings.database_schema,),
            ).fetchall()
            for (table,) in tables:
                rows = conn.execute(
                    f'SELECT * FROM "{settings.database_schema}"."{table}"'
                ).fetchall()
                yield table, repr(rows).encode()


def leaks(blobs: Iterator[tuple[str, bytes]], alice: str) -> list[str]:
    found = []
    for where, blob in blobs:
        for needle in needles(alice):
            if needle in blob:
                found.append(f"{needle!r} in {where}")
    return found


def test_after_erasure_nothing_shows_the_person_and_every_proof_holds(
    ledger: LedgerApplication,
    models: ReadModels,
    settings: Settings,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    alice, bob, _ = populate(ledger)
    pseudonym = ledger.subject_keys.pseudonym(alice)
    models.runner.catch_up()
    # Hers: her stream's, and those that mention her (sealed in the body, opened here).
    records = [r for r in ledger.iter_records() if pseudonym in str(ledger.decode(r).as_dict())]
    before = [r.seq for r in records]
    assert any(ledger.decode(r).data.get("contact") == CONTACT for r in records)

    receipt = ledger.erase(subject_ref=alice, ground=ErasureGround.ERASURE_REQUEST)
    models.runner.catch_up()

    # The erasure is an event of its own, without personal data, naming its ground.
    erasure = ledger.get_event(receipt.seq)
    assert erasure.type == "subject.erased"
    assert erasure.data == {"subject": pseudonym, "ground": "erasure_request"}
    # Her events are all still there, and show [erased] where her data was.
    for seq in before:
        event = ledger.decode(ledger.ledger.get_record(seq))  # type: ignore[arg-type]
        text = repr(event.as_dict())
        assert CONTACT not in text and alice not in text and DETAILS not in text
        if event.type.startswith("consent.") and pseudonym == event.data.get("subject"):
            assert event.data["subject_ref"] == ERASED and event.data["contact"] == ERASED
    # Bob's data, in the same shared disclosure, still opens.
    assert bob in repr([ledger.decode(r).as_dict() for r in ledger.iter_records()])
    # The read models say so, and allow nothing any more.
    assert models.consent.erasure(pseudonym) == {
        "seq": receipt.seq,
        "erased_at": erasure.occurred_at,
        "ground": "erasure_request",
    }
    verdict = models.consent.decide(pseudonym, "marketing_email", datetime.now(UTC))
    assert not verdict.valid and verdict.status == "erased"
    # Every signature, proof and checkpoint still verifies, and an export of her history
    # proves what happened without showing who she was.
    assert check_log(ledger.ledger, load_keyring(settings), mentions=ledger.mentions_opened).ok
    assert ledger.checkpointer is not None
    keys = [
        format_verifier_key(ledger.checkpointer.origin, k)
        for k in load_keyring(settings).public_keys.values()
    ]
    bundle = tmp_path / "alice"
    export_bundle(
        ledger,
        {"kind": "subject", "subject": pseudonym},
        bundle,
        verifier_keys=keys,
        report_settings={"default_minimum_age": 18},
    )
    report = verify_bundle(bundle, [parse_verifier_key(k) for k in keys])
    assert report.entries == len(before) + 3  # and the erasure, the policy, the recipient
    assert (bundle / "disclosures.csv").read_text().count(pseudonym) == 1  # it happened
    # Nowhere: not in any database, file, key store, export or log line.
    stored = list(everything_stored(settings))
    exported = [(str(p), p.read_bytes()) for p in bundle.iterdir()]
    logged = [("log", caplog.text.encode())]
    assert leaks(iter(stored + exported + logged), alice) == []


def test_appends_after_erasure_are_refused_until_a_new_lifecycle(
    ledger: LedgerApplication, models: ReadModels
) -> None:
    alice, _, recipient = populate(ledger)
    old = ledger.subject_keys.pseudonym(alice)
    version = parse_body(ledger.ledger.get_record(1).body)["data"]["version"]  # type: ignore[union-attr]
    ledger.erase(subject_ref=alice)
    for fact, field in (
        (facts.consent(alice, version), "subject"),
        (facts.age(alice, 31), "subject"),
        (facts.request(alice), "subject"),
        (facts.disclosure(recipient, [alice], version), "subjects"),
    ):
        with pytest.raises(ValidationError) as refused:
            ledger.append([facts.policy(), fact])
        [problem] = refused.value.problems
        assert (problem.index, problem.field, problem.rule) == (1, field, "subject_erased")
    with pytest.raises(LedgerError, match="was erased"):
        ledger.erase(subject_ref=alice)
    # A new lifecycle: the same reference names a new subject, with a new key.
    started = {
        "type": "subject.lifecycle_started",
        "event_id": facts.ref("evt"),
        "occurred_at": facts.now(),
        "subject": alice,
        "reason": "the person opened a new account",
    }
    ledger.append([started, facts.consent(alice, version, contact="new@example.org")])
    new = ledger.subject_keys.pseudonym(alice)
    assert new != old
    models.runner.catch_up()
    assert models.consent.erasure(old) is not None and models.consent.erasure(new) is None
    assert models.consent.decide(new, "marketing_email", datetime.now(UTC)).valid
    # A lifecycle starts only after an erasure.
    with pytest.raises(ValidationError) as refused:
        ledger.append([dict(started, event_id=facts.ref("evt"))])
    assert refused.value.problems[0].rule == "subject_not_erased"


def test_a_fulfilled_erasure_request_erases(ledger: LedgerApplication) -> None:
    alice, _, _ = populate(ledger)
    request_id = facts.ref("req")
    step = {"event_id": facts.ref("evt"), "occurred_at": facts.now(), "subject": alice}
    pseudonym = ledger.subject_keys.pseudonym(alice)
    ledger.append(
        [
            facts.request(alice, request_id, kind="erasure"),
            {**step, "type": "request.fulfilled", "request_id": request_id, "note": "done"},
        ]
    )
    # The reference no longer leads to the pseudonym, for reads or for anyone.
    assert ledger.subject_keys.current(alice) is None
    assert ledger.subject_keys.pseudonym(alice) != pseudonym
    [erasure] = [
        e for e in (ledger.decode(r) for r in ledger.iter_records()) if e.type == "subject.erased"
    ]
    assert erasure.data == {
        "subject": pseudonym,
        "ground": "erasure_request",
        "request_id": request_id,
    }
    assert ledger.subject_keys.store.erased([pseudonym]) == {pseudonym}


def test_erasure_racing_appends_leaves_nothing_under_a_destroyed_key(
    ledger: LedgerApplication, settings: Settings
) -> None:
    alice, _, _ = populate(ledger)
    version = parse_body(ledger.ledger.get_record(1).body)["data"]["version"]  # type: ignore[union-attr]
    pseudonym = ledger.subject_keys.pseudonym(alice)
    other = open_ledger(settings)  # another process's cache: it holds alice's key
    other.append([facts.consent(alice, version)])
    outcomes: list[str] = []
    go = threading.Event()

    def appender(app: LedgerApplication) -> None:
        go.wait()
        for _ in range(15):
            try:
                app.append([facts.consent(alice, version, contact=CONTACT)])
                outcomes.append("recorded")
            except ValidationError as exc:
                assert exc.problems[0].rule == "subject_erased", exc
                outcomes.append("refused")

    threads = [threading.Thread(target=appender, args=(app,)) for app in (ledger, other, other)]
    for thread in threads:
        thread.start()
    go.set()
    receipt = ledger.erase(subject_ref=alice)
    for thread in threads:
        thread.join()
    other.close()
    # Every event sealed under her key was committed before the erasure; none after it.
    for record in ledger.iter_records():
        body = parse_body(record.body)
        data = body["data"]
        if data.get("subject") == pseudonym and "subject_ref" in data:
            assert record.seq < receipt.seq, f"event {record.seq} sealed after the erasure"
            assert str(data["subject_ref"]).startswith("sealed:v1:")
        assert CONTACT.encode() not in record.body and alice.encode() not in record.body
    assert "refused" in outcomes or outcomes.count("recorded") == 45
    with pytest.raises(ValidationError):
        ledger.append([facts.consent(alice, version)])


def test_master_key_rotation_rewraps_and_the_old_key_fails_at_start(
    ledger: LedgerApplication, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    populate(ledger)
    old_key = settings.master_key_file.read_bytes()
    new_key = base64.b64decode(base64.b64encode(bytes(range(32))))
    rewrapped = ledger.subject_keys.rotate_master_key(new_key)
    assert rewrapped >= 2
    ledger.close()
    settings.master_key_file.write_bytes(base64.b64encode(new_key) + b"\n")
    reopened = open_ledger(settings)
    try:
        contacts = [reopened.decode(r).data.get("contact") for r in reopened.iter_records()]
        assert CONTACT in contacts  # the log was not touched, the data opens
    finally:
        reopened.close()
    settings.master_key_file.write_bytes(old_key)
    with pytest.raises(KeyMaterialError, match="master key does not open"):
        open_ledger(settings)
    monkeypatch.setenv(MASTER_KEY_ENV, "not base64!")
    with pytest.raises(KeyMaterialError, match="not base64"):
        open_ledger(settings)


def test_key_material_never_reaches_logs_exports_or_errors(
    ledger: LedgerApplication,
    settings: Settings,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    caplog.set_level(logging.DEBUG)
    alice, _, _ = populate(ledger)
    pseudonym = ledger.subject_keys.pseudonym(alice)
    subject_key = ledger.subject_keys.keys_for([pseudonym], create=False)[pseudonym]
    signing_key = bytes(ledger.ledger.signer.signing_key)
    master_text = settings.master_key_file.read_text().strip()
    secrets = {
        "master key": [master_text.encode(), base64.b64decode(master_text)],
        "signing key": [signing_key, base64.b64encode(signing_key)],
        "subject key": [subject_key, base64.b64encode(subject_key), subject_key.hex().encode()],
    }
    assert ledger.checkpointer is not None
    keys = [
        format_verifier_key(ledger.checkpointer.origin, k)
        for k in load_keyring(settings).public_keys.values()
    ]
    bundle = tmp_path / "all"
    export_bundle(ledger, {"kind": "all"}, bundle, verifier_keys=keys, report_settings={})
    messages: list[str] = []
    ledger.erase(subject_ref=alice)
    for attempt in (
        lambda: ledger.erase(subject_ref=alice),
        lambda: ledger.append([facts.consent(alice, "no-such-policy")]),
        lambda: ledger.subject_keys.rotate_master_key(b"short"),
    ):
        with pytest.raises((LedgerError, ValueError)) as failed:
            attempt()
        messages.append(str(failed.value))
    monkeypatch.setenv(MASTER_KEY_ENV, base64.b64encode(bytes(32)).decode())
    with pytest.raises(KeyMaterialError) as wrong:
        open_ledger(settings)
    messages.append(str(wrong.value))
    places = [("log", caplog.text.encode()), ("errors", "\n".join(messages).encode())]
    places += [(str(p), p.read_bytes()) for p in bundle.iterdir()]
    found = [
        f"{name} in {where}"
        for where, blob in places
        for name, forms in secrets.items()
        for form in forms
        if form in blob
    ]
    assert found == []


def test_a_restored_key_store_does_not_bring_an_erased_subject_back(
    ledger: LedgerApplication, settings: Settings
) -> None:
    alice, bob, _ = populate(ledger)
    pseudonym, kept = ledger.subject_keys.pseudonym(alice), ledger.subject_keys.pseudonym(bob)
    backup = ledger.subject_keys.store.select([pseudonym, kept])  # the key store's backup
    ledger.erase(subject_ref=alice)
    # Restored from that backup: alice's wrapped key is back in the store.
    ledger.subject_keys.store.destroy([pseudonym])  # make room for the old row
    if settings.database_url is None:
        with sqlite3.connect(settings.sqlite_path.with_name("keystore.sqlite3")) as conn:
            conn.execute("DELETE FROM ledger_subject_keys WHERE pseudonym = ?", (pseudonym,))
    else:
        with psycopg.connect(settings.database_url, autocommit=True) as conn:
            conn.execute(
                f'DELETE FROM "{settings.database_schema}".ledger_subject_keys '
                "WHERE pseudonym = %s",
                (pseudonym,),
            )
    ledger.subject_keys.store.persist({pseudonym: backup[pseudonym]})
    assert ledger.subject_keys.store.select([pseudonym])
    assert ledger.reapply_erasures() == [pseudonym]
    assert not ledger.subject_keys.store.select([pseudonym])
    assert ledger.subject_keys.store.erased([pseudonym]) == {pseudonym}
    assert ledger.subject_keys.store.select([kept])  # bob untouched
    assert ledger.reapply_erasures() == []
