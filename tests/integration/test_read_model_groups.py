"""The read models that share the consent facts are one group (issue 16).

Consent state, the disclosure history and retention read one book of consent facts, kept by the
``consent_facts`` read model. The runner makes it when it is not given, applies each page to the
four in one transaction (the book first), keeps their positions equal, rebuilds them together
and, on a database of an earlier version (where each kept a book of its own), drops the old
books and rebuilds the group by itself.
"""

from __future__ import annotations

from ledger.application import LedgerApplication
from projections.base import Projection
from projections.consent_book import ConsentBook
from projections.consent_state import ConsentState
from projections.database import ProjectionDatabase
from projections.disclosures import DisclosureHistory
from projections.incidents import IncidentRegister
from projections.requests import RequestRegister
from projections.retention import Retention
from projections.runner import ProjectionRunner, table_digest
from tests.support.examples import example_lines

GROUP = ("consent_facts", "consent_state", "disclosures", "retention")


def read_models() -> list[Projection]:
    return [ConsentState(), DisclosureHistory(), IncidentRegister(), RequestRegister(), Retention()]


def caught_up(ledger: LedgerApplication, db: ProjectionDatabase) -> str:
    ledger.append(example_lines())
    ProjectionRunner(ledger, db, read_models()).catch_up()
    return table_digest(db)


def positions(runner: ProjectionRunner) -> dict[str, int]:
    return {s.name: s.position for s in runner.status()}


def test_a_runner_makes_the_consent_facts_its_readers_need_and_groups_them(
    ledger: LedgerApplication, db: ProjectionDatabase
) -> None:
    runner = ProjectionRunner(ledger, db, [DisclosureHistory(), IncidentRegister()])
    assert list(runner.projections) == ["consent_facts", "disclosures", "incidents"]
    assert runner.group("disclosures") == ("consent_facts", "disclosures")
    assert runner.group("consent_facts") == ("consent_facts", "disclosures")
    assert runner.group("incidents") == ("incidents",)
    full = ProjectionRunner(ledger, db, read_models())
    assert {full.group(name) for name in GROUP} == {GROUP}


def test_rebuilding_one_read_model_of_the_group_rebuilds_the_group_and_no_other(
    ledger: LedgerApplication, db: ProjectionDatabase
) -> None:
    fresh = caught_up(ledger, db)
    with db.transaction() as sql:  # damage the book, and a table of another group
        sql.execute("DELETE FROM proj_consent_facts_decisions")
        sql.execute("DELETE FROM proj_incidents")
    runner = ProjectionRunner(ledger, db, read_models())
    read = runner.rebuild(["retention"])
    assert read == ledger.head() * len(GROUP)
    assert db.query("SELECT count(*) FROM proj_incidents") == [(0,)]  # not rebuilt
    runner.rebuild(["incidents"])
    assert table_digest(db) == fresh
    assert set(positions(runner).values()) == {ledger.head()}


def test_an_old_database_drops_the_books_each_kept_and_rebuilds_the_group_by_itself(
    ledger: LedgerApplication, db: ProjectionDatabase
) -> None:
    fresh = caught_up(ledger, db)
    old_books = [
        table
        for prefix in ("proj_consent_", "proj_dc_", "proj_rt_")
        for table in ConsentBook(prefix).tables
    ]
    with db.transaction() as sql:  # as the previous version left it
        for prefix in ("proj_consent_", "proj_dc_", "proj_rt_"):
            for table, columns in ConsentBook(prefix).tables.items():
                sql.execute(f"CREATE TABLE {table} ({columns})")
        sql.execute("UPDATE proj_positions SET version = '4' WHERE name = 'consent_state'")
        sql.execute("UPDATE proj_positions SET version = '2' WHERE name = 'retention'")
        sql.execute("CREATE INDEX proj_rt_activity_seq ON proj_rt_activity (seq)")
        sql.execute("DELETE FROM proj_positions WHERE name = 'consent_facts'")
    assert set(old_books) <= set(db.table_names())
    runner = ProjectionRunner(ledger, db, read_models())
    assert not set(old_books) & set(db.table_names())
    started = positions(runner)
    assert {started[name] for name in GROUP} == {0}
    assert started["incidents"] == started["requests"] == ledger.head()
    runner.catch_up()
    assert table_digest(db) == fresh
    if db.dialect == "sqlite":  # the index of version 2 went with its table
        assert db.query("SELECT name FROM sqlite_master WHERE name = 'proj_rt_activity_seq'") == []


def test_positions_of_a_group_that_differ_start_the_group_again(
    ledger: LedgerApplication, db: ProjectionDatabase
) -> None:
    """Kept equal by the runner; should they differ (written by hand, or by a version that
    kept no groups), the book and its readers are rebuilt together from the first event."""
    fresh = caught_up(ledger, db)
    with db.transaction() as sql:
        sql.execute("UPDATE proj_positions SET position = 3 WHERE name = 'disclosures'")
    runner = ProjectionRunner(ledger, db, read_models())
    assert {positions(runner)[name] for name in GROUP} == {0}
    runner.catch_up()
    assert table_digest(db) == fresh
