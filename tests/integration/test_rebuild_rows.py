"""A rebuild from zero gives the same rows however the log is paged, and the same as following.

The read models take shortcuts that hold only while what they keep in memory matches their
tables: a consent decision's rows derived once for the three consent books that hold it, new
validity intervals inserted (copied, on PostgreSQL) rather than upserted, a corrected decision
retracted by its subject. Each shortcut is exact only if it changes no row, so these tests
rebuild the examples and the demo data set with pages of 1, 7 and 1,000 events and compare every
table, then compare with the rows of a runner that followed the log as it was written, a few
facts at a time (where nothing is complete in memory and every shortcut is off).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest

from demo.dataset import generate
from ledger.application import LedgerApplication
from projections.base import Projection
from projections.consent_state import ConsentState
from projections.database import ProjectionDatabase
from projections.disclosures import DisclosureHistory
from projections.incidents import IncidentRegister
from projections.requests import RequestRegister
from projections.retention import Retention
from projections.runner import ProjectionRunner, table_digest
from tests import facts
from tests.support.examples import example_lines

PAGES = (1, 7, 1000)


def read_models() -> list[Projection]:
    return [ConsentState(), DisclosureHistory(), IncidentRegister(), RequestRegister(), Retention()]


def demo_with_corrections() -> list[dict[str, Any]]:
    """The demo data set, with a consent corrected twice (the second builds on the first) and a
    disclosure and an age attestation corrected, half-way."""
    demo = generate(users=20, seed=7).facts
    half = len(demo) // 2

    def first(type_name: str) -> dict[str, Any]:
        return next(f for f in demo[:half] if f["type"] == type_name)

    given = first("consent.given")
    corrections = [
        facts.time_correction(given, 20),
        facts.time_correction(first("disclosure.recorded"), 1),
        facts.time_correction(given, 45),
        facts.time_correction(first("subject.age_attested"), 3),
    ]
    return demo[:half] + corrections + demo[half:]


def rebuilt(ledger: LedgerApplication, db: ProjectionDatabase, page: int) -> str:
    runner = ProjectionRunner(ledger, db, read_models(), batch_size=page)
    runner.rebuild()
    assert {s.position for s in runner.status()} == {ledger.head()}
    assert all(s.error is None for s in runner.status())
    return table_digest(db)


def followed(
    ledger: LedgerApplication, db: ProjectionDatabase, log: list[dict[str, Any]], step: int
) -> str:
    """The rows of runners that caught up after every ``step`` facts appended, a new runner
    each time: nothing is kept in memory from one catch-up to the next, so every page reads
    what it needs from the tables."""
    for start in range(0, len(log), step):
        ledger.append(log[start : start + step])
        ProjectionRunner(ledger, db, read_models(), batch_size=3).catch_up()
    return table_digest(db)


@pytest.mark.parametrize("data", ["examples", "demo"])
def test_a_rebuild_gives_the_rows_of_following_the_log_with_pages_of_1_7_and_1000(
    ledger: LedgerApplication, db: ProjectionDatabase, data: str
) -> None:
    log = example_lines() if data == "examples" else demo_with_corrections()
    as_followed = followed(ledger, db, log, 9)
    rows = {page: rebuilt(ledger, db, page) for page in PAGES}
    assert set(rows.values()) == {as_followed}, rows


def test_a_decision_corrected_twice_leaves_one_row_a_purpose_in_the_consent_book(
    ledger: LedgerApplication, db: ProjectionDatabase
) -> None:
    """The retraction of a corrected decision removes its rows (by subject and seq) before its
    corrected form is recorded: the book holds the decision once, at its corrected time."""
    log = demo_with_corrections()
    ledger.append(log)
    rebuilt(ledger, db, 1000)
    given = next(f for f in log if f["type"] == "consent.given")
    claim = ledger.ledger.select_claims([given["event_id"]])[given["event_id"]]
    moment = datetime.fromisoformat(str(given["occurred_at"])) - timedelta(days=45)
    for prefix in ("proj_consent_facts_",):
        rows = db.query(
            f"SELECT purpose, occurred_at FROM {prefix}decisions WHERE seq = ?", (claim.seq,)
        )
        assert sorted(purpose for purpose, _ in rows) == sorted(set(given["purposes"]))
        assert {datetime.fromisoformat(at.replace("Z", "+00:00")) for _, at in rows} == {moment}


def test_a_rebuild_of_some_read_models_gives_their_rows_again_and_leaves_the_others(
    ledger: LedgerApplication, db: ProjectionDatabase
) -> None:
    """Rebuilding one or two read models (a table of one dropped by hand meanwhile) gives the
    rows of the first rebuild; the read models not rebuilt keep theirs (corrections'
    bookkeeping included)."""
    ledger.append(demo_with_corrections())
    first = rebuilt(ledger, db, 1000)
    runner = ProjectionRunner(ledger, db, read_models(), batch_size=1000)
    runner.rebuild(["consent_state"])
    assert table_digest(db) == first
    with db.transaction() as sql:
        sql.execute("DROP TABLE proj_consent_intervals")
    runner.rebuild(["consent_state", "retention"])
    assert "proj_consent_intervals" in db.table_names()
    assert table_digest(db) == first
    assert {s.position for s in runner.status()} == {ledger.head()}
