"""Whoever edits the database directly is caught by verification, which names the event."""

from __future__ import annotations

import sqlite3

import psycopg
import pytest
from nacl.signing import SigningKey

from ledger.application import LedgerApplication
from ledger.config import Settings, load_keyring
from ledger.integrity import LogReport, check_log
from ledger.verifier.entry import encode_entry, key_id_for
from ledger.verifier.scopes import tags_for
from tests import facts
from tests.conftest import RawDatabase


@pytest.fixture
def filled(ledger: LedgerApplication, raw_db: RawDatabase) -> LedgerApplication:
    pol = facts.policy()
    subjects = [facts.ref("user") for _ in range(3)]
    ledger.append([pol] + [facts.consent(s, pol["version"]) for s in subjects])  # seq 1..7
    ledger.append([facts.consent(subjects[0], pol["version"], kind="withdrawn")])  # seq 8
    assert check_log(
        ledger.ledger, load_keyring(ledger_settings(raw_db)), mentions=ledger.mentions_opened
    ).ok
    raw_db.drop_append_only_guards()
    return ledger


INSERT = (
    "INSERT INTO ledger_events "
    "(seq, originator_id, originator_version, topic, entry, body, signature, key_id) "
)


def ledger_settings(raw_db: RawDatabase) -> Settings:
    return raw_db.settings


def verify(app: LedgerApplication, raw_db: RawDatabase) -> LogReport:
    assert app.checkpointer is not None
    return check_log(
        app.ledger,
        load_keyring(raw_db.settings),
        origin=app.checkpointer.origin,
        mentions=app.mentions_opened,
    )


def problems_of(report: LogReport) -> dict[int | None, str]:
    """Each named event with all that is wrong with it, one problem a line."""
    found: dict[int | None, str] = {}
    for problem in report.problems:
        found[problem.seq] = (found.get(problem.seq, "") + "\n" + problem.message).strip()
    return found


def test_an_untouched_log_verifies(filled: LedgerApplication, raw_db: RawDatabase) -> None:
    report = verify(filled, raw_db)
    assert report.ok and report.checked == 8 and report.head == 8


def test_a_changed_body_byte_is_named(filled: LedgerApplication, raw_db: RawDatabase) -> None:
    [(body,)] = raw_db.execute("SELECT body FROM ledger_events WHERE seq = 5")
    changed = bytes(body).replace(b'"web_form"', b'"web_forn"')
    assert changed != bytes(body)
    raw_db.execute("UPDATE ledger_events SET body = ? WHERE seq = 5", (changed,))
    problems = problems_of(verify(filled, raw_db))
    assert list(problems) == [5]
    assert "the body is not the one its signed entry commits to" in problems[5]


def test_a_changed_entry_byte_is_named(filled: LedgerApplication, raw_db: RawDatabase) -> None:
    [(entry,)] = raw_db.execute("SELECT entry FROM ledger_events WHERE seq = 5")
    changed = bytearray(entry)
    changed[-1] ^= 1  # a bit of its last tag
    raw_db.execute("UPDATE ledger_events SET entry = ? WHERE seq = 5", (bytes(changed),))
    problems = problems_of(verify(filled, raw_db))
    assert set(problems) <= {5, None}
    assert "signature does not verify" in problems[5]
    assert "level 0, index 4 (event 5)" in problems[5]  # and the tree no longer matches it


def test_wrong_tags_signed_by_the_ledger_are_named(
    filled: LedgerApplication, raw_db: RawDatabase
) -> None:
    # The ledger's own key signs an entry whose tags hide whom the event concerns.
    [(body,)] = raw_db.execute("SELECT body FROM ledger_events WHERE seq = 5")
    entry = encode_entry(5, filled.ledger.signer.key_id, bytes(body), tags_for(["policy"], 5))
    raw_db.execute(
        "UPDATE ledger_events SET entry = ?, signature = ? WHERE seq = 5",
        (entry, filled.ledger.signer.sign(entry)),
    )
    problems = problems_of(verify(filled, raw_db))
    assert "the entry's tags are not those of the scopes its body concerns" in problems[5]


def test_a_changed_signature_is_named(filled: LedgerApplication, raw_db: RawDatabase) -> None:
    raw_db.execute("UPDATE ledger_events SET signature = ? WHERE seq = 2", (b"\0" * 64,))
    assert list(problems_of(verify(filled, raw_db))) == [2]


def test_a_deleted_row_is_named(filled: LedgerApplication, raw_db: RawDatabase) -> None:
    raw_db.execute("DELETE FROM ledger_events WHERE seq = 4")
    problems = problems_of(verify(filled, raw_db))
    assert 4 in problems and "missing" in problems[4]


def test_a_deleted_last_row_is_named(filled: LedgerApplication, raw_db: RawDatabase) -> None:
    raw_db.execute("DELETE FROM ledger_events WHERE seq = 8")
    problems = problems_of(verify(filled, raw_db))
    assert list(problems) == [8] and "was recorded as it" in problems[8]


def test_two_swapped_rows_are_named(filled: LedgerApplication, raw_db: RawDatabase) -> None:
    rows = {
        seq: (entry, body, signature)
        for seq, entry, body, signature in raw_db.execute(
            "SELECT seq, entry, body, signature FROM ledger_events WHERE seq IN (3, 5)"
        )
    }
    for seq, other in ((3, 5), (5, 3)):
        raw_db.execute(
            "UPDATE ledger_events SET entry = ?, body = ?, signature = ? WHERE seq = ?",
            (*rows[other], seq),
        )
    problems = problems_of(verify(filled, raw_db))
    assert {3, 5} <= set(problems)
    assert "holds the signed entry of event 5" in problems[3]


def test_a_copied_row_is_named(filled: LedgerApplication, raw_db: RawDatabase) -> None:
    raw_db.execute(
        INSERT
        + "SELECT 9, originator_id, originator_version + 100, topic, entry, body, signature, "
        "key_id "
        "FROM ledger_events WHERE seq = 3"
    )
    problems = problems_of(verify(filled, raw_db))
    assert 9 in problems and "holds the signed entry of event 3" in problems[9]


def test_a_forged_row_is_named(filled: LedgerApplication, raw_db: RawDatabase) -> None:
    [(body,)] = raw_db.execute("SELECT body FROM ledger_events WHERE seq = 8")
    forger = SigningKey.generate()
    forged_key_id = key_id_for(bytes(forger.verify_key))
    forged = encode_entry(9, forged_key_id, bytes(body), [])
    raw_db.execute(
        INSERT
        + "SELECT 9, originator_id, originator_version + 1, topic, ?, body, ?, ? "
        + "FROM ledger_events WHERE seq = 8",
        (forged, forger.sign(forged).signature, forged_key_id),
    )
    problems = problems_of(verify(filled, raw_db))
    assert [seq for seq in problems if seq is not None] == [9] and "unknown key" in problems[9]


def test_a_row_inserted_in_the_middle_is_named(
    filled: LedgerApplication, raw_db: RawDatabase
) -> None:
    # Shift event 8 up and put a copy of event 2 where it was.
    raw_db.execute("UPDATE ledger_events SET seq = 9 WHERE seq = 8")
    raw_db.execute(
        INSERT
        + "SELECT 8, originator_id || 'x', originator_version, topic, entry, body, signature, "
        "key_id "
        "FROM ledger_events WHERE seq = 2"
    )
    problems = problems_of(verify(filled, raw_db))
    assert {8, 9} <= set(problems)


def test_a_changed_merkle_node_is_named(filled: LedgerApplication, raw_db: RawDatabase) -> None:
    raw_db.execute(
        "UPDATE ledger_merkle_nodes SET hash = ? WHERE level = 1 AND idx = 1", (b"\2" * 32,)
    )
    report = verify(filled, raw_db)
    assert [p.message for p in report.problems if "level 1, index 1" in p.message] == [
        "the stored Merkle node at level 1, index 1 (events 3..4) does not match the entries"
    ]


def test_a_cut_tail_is_caught_by_the_last_checkpoint(
    filled: LedgerApplication, raw_db: RawDatabase
) -> None:
    signed = filled.sign_checkpoint()
    assert signed.size == 8
    # Remove the last event with everything that points at it: the claim and its tree nodes.
    raw_db.execute("DELETE FROM ledger_claims WHERE seq = 8")
    raw_db.execute("DELETE FROM ledger_events WHERE seq = 8")
    raw_db.execute("DELETE FROM ledger_merkle_nodes WHERE level = 0 AND idx = 7")
    raw_db.execute("DELETE FROM ledger_merkle_nodes WHERE level > 0 AND (idx + 1) << level = 8")
    messages = [p.message for p in verify(filled, raw_db).problems]
    assert any("signed at size 8 but the log ends at 7" in m for m in messages), messages


def test_a_forged_checkpoint_is_named(filled: LedgerApplication, raw_db: RawDatabase) -> None:
    signed = filled.sign_checkpoint()
    raw_db.execute(
        "UPDATE ledger_checkpoints SET note = ? WHERE size = ?",
        (signed.note.replace("\n8\n", "\n9\n"), signed.size),
    )
    messages = [p.message for p in verify(filled, raw_db).problems]
    assert any("checkpoint of size 8" in m and "does not verify" in m for m in messages), messages


# -- what someone with database access can do without disabling anything, and what is caught


LOG_TABLES = ("events", "claims", "merkle_nodes", "checkpoints", "meta")


@pytest.mark.parametrize("table", LOG_TABLES)
def test_no_table_of_the_log_can_be_emptied(
    ledger: LedgerApplication, raw_db: RawDatabase, table: str
) -> None:
    pol = facts.policy()
    ledger.append([pol, facts.consent(facts.ref("user"), pol["version"])])
    ledger.sign_checkpoint()
    # PostgreSQL empties a table with TRUNCATE (row triggers do not see it); SQLite with a
    # DELETE without WHERE.
    empty = f"TRUNCATE ledger_{table}" if raw_db.postgres else f"DELETE FROM ledger_{table}"
    with pytest.raises((sqlite3.Error, psycopg.Error), match="append-only"):
        raw_db.execute(empty)
    [(count,)] = raw_db.execute(f"SELECT count(*) FROM ledger_{table}")
    assert count > 0


def test_the_checkpoint_counters_only_count_up(
    ledger: LedgerApplication, raw_db: RawDatabase
) -> None:
    ledger.append([facts.policy()])
    ledger.sign_checkpoint()
    with pytest.raises((sqlite3.Error, psycopg.Error), match="append-only"):
        raw_db.execute("UPDATE ledger_meta SET value = '0' WHERE name = 'checkpoints_signed'")
    with pytest.raises((sqlite3.Error, psycopg.Error), match="append-only"):
        raw_db.execute("DELETE FROM ledger_meta WHERE name = 'checkpoint_largest'")
    assert dict(raw_db.execute("SELECT name, value FROM ledger_meta")) == {
        "origin": ledger.checkpointer.origin if ledger.checkpointer else None,
        "checkpoints_signed": "1",
        "checkpoint_largest": "1",
    }


def test_removed_claims_are_named(filled: LedgerApplication, raw_db: RawDatabase) -> None:
    claimed = dict(raw_db.execute("SELECT seq, event_id FROM ledger_claims"))
    raw_db.execute("DELETE FROM ledger_claims")
    problems = problems_of(verify(filled, raw_db))
    assert set(problems) == set(claimed)
    for seq, event_id in claimed.items():
        assert f"event id {event_id!r} has no claim" in problems[seq]


def test_a_fact_imported_again_after_its_claims_went_is_named(
    filled: LedgerApplication, raw_db: RawDatabase
) -> None:
    pol = facts.policy()
    again = facts.consent(facts.ref("user"), pol["version"])
    filled.append([pol, again])  # seq 9; 10 registers the subject, 11 is the consent
    raw_db.execute("DELETE FROM ledger_claims WHERE event_id = ?", (again["event_id"],))
    [receipt] = filled.append([again])
    assert receipt.seq == 12 and not receipt.duplicate  # what lost claims let through
    problems = problems_of(verify(filled, raw_db))
    assert f"event id {again['event_id']!r} is in the log already, as event 11" in problems[12]
    assert "has no claim" in problems[11]


def test_a_claim_moved_to_another_event_is_named(
    filled: LedgerApplication, raw_db: RawDatabase
) -> None:
    [(event_id,)] = raw_db.execute("SELECT event_id FROM ledger_claims WHERE seq = 5")
    raw_db.execute("UPDATE ledger_claims SET seq = 4 WHERE seq = 5")  # 4: a subject registered
    problems = problems_of(verify(filled, raw_db))
    assert (
        f"event id {event_id!r} is claimed for this event, which carries no event id"
        in (problems[4])
    )
    assert "has no claim" in problems[5]


@pytest.mark.parametrize("removed", ["the middle one", "the last one", "all"])
def test_removed_checkpoints_are_named(
    ledger: LedgerApplication, raw_db: RawDatabase, removed: str
) -> None:
    pol = facts.policy()
    for batch in ([pol], [facts.consent(facts.ref("user"), pol["version"])], [facts.policy()]):
        ledger.append(batch)
        ledger.sign_checkpoint()  # sizes 1, 3 and 4
    assert verify(ledger, raw_db).ok
    raw_db.drop_append_only_guards()
    where = {"the middle one": "size = 3", "the last one": "size = 4", "all": "size > 0"}
    raw_db.execute(f"DELETE FROM ledger_checkpoints WHERE {where[removed]}")
    messages = [p.message for p in verify(ledger, raw_db).problems]
    missing = 3 if removed == "all" else 1
    assert f"{missing} of the 3 checkpoints signed are missing" in "\n".join(messages), messages
    if removed != "the middle one":
        assert any("the checkpoint of size 4 was signed and is missing" in m for m in messages), (
            messages
        )
