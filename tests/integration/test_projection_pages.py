"""Read models applied a page at a time: the rows never depend on where pages begin and end.

The runner applies a page of events to every projection at one position in one transaction,
each projection holding the page in memory and writing its tables at the page's end, and the
consent facts kept from page to page. These tests would fail if that batching changed a row:
the same log in pages of 1, 7 and 500, followed in small groups by two runners taking turns,
or stopped by a failure half-way and resumed, gives the rows of one rebuild from zero.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, ClassVar, cast

import psycopg
import pytest

from demo.dataset import generate
from ledger.application import LedgerApplication
from ledger.config import Settings
from projections.base import LoggedEvent, PoisonEventError, Projection
from projections.consent_state import ConsentState
from projections.database import ProjectionDatabase, Sql
from projections.disclosures import DisclosureHistory
from projections.incidents import IncidentRegister
from projections.postgres import PostgresProjectionDatabase
from projections.requests import RequestRegister
from projections.retention import Retention
from projections.runner import ProjectionRunner, table_digest
from projections.sqlite import SQLiteProjectionDatabase
from tests import facts
from tests.integration.projection_fixtures import projection_database


def the_log() -> list[list[dict[str, Any]]]:
    """A demo's facts (back-dated withdrawals, a material policy change, minors, terminated
    recipients, an incident, requests, a correction) in appends of 40, with corrections of a
    consent (twice: they build on each other) and of a disclosure half-way."""
    demo = generate(users=24, seed=11).facts
    half = len(demo) // 2
    given = next(f for f in demo[:half] if f["type"] == "consent.given")
    disclosed = next(f for f in demo[:half] if f["type"] == "disclosure.recorded")

    corrections = [
        facts.time_correction(given, 20),
        facts.time_correction(disclosed, 1),
        facts.time_correction(given, 45),
    ]
    facts_in_order = demo[:half] + corrections + demo[half:]
    return [facts_in_order[i : i + 40] for i in range(0, len(facts_in_order), 40)]


def fill(ledger: LedgerApplication, appends: Sequence[list[dict[str, Any]]]) -> None:
    for batch in appends:
        ledger.append(batch)
    ledger.erase(subject_ref=erased(appends))


def erased(appends: Sequence[list[dict[str, Any]]]) -> str:
    """The subject erased at the end of the log."""
    return str(next(f["subject"] for f in appends[0] if f["type"] == "consent.given"))


def read_models(default_minimum_age: int = 18) -> list[Projection]:
    return [
        ConsentState(),
        DisclosureHistory(default_minimum_age),
        IncidentRegister(),
        RequestRegister(),
        Retention(),
    ]


def rebuilt(ledger: LedgerApplication, db: ProjectionDatabase, batch_size: int = 500) -> str:
    runner = ProjectionRunner(ledger, db, read_models(), batch_size=batch_size)
    runner.rebuild()
    assert {s.position for s in runner.status()} == {ledger.head()}
    return table_digest(db)


def test_pages_of_1_7_and_500_give_the_same_rows(
    ledger: LedgerApplication, db: ProjectionDatabase
) -> None:
    fill(ledger, the_log())
    assert ledger.head() > 300
    together = rebuilt(ledger, db, 500)
    assert rebuilt(ledger, db, 7) == together
    assert rebuilt(ledger, db, 1) == together
    # Each alone (no page shared with the others) gives them too.
    runner = ProjectionRunner(ledger, db, read_models(), batch_size=7)
    for projection in read_models():
        runner.rebuild([projection.name])
    assert table_digest(db) == together


def test_following_in_small_groups_with_two_runners_taking_turns_gives_the_rows_of_a_rebuild(
    ledger: LedgerApplication, db: ProjectionDatabase, settings: Settings
) -> None:
    """What a runner keeps in memory from page to page must be dropped when another runner
    moved the positions meanwhile: the turns below make it stale every time."""
    other_db = projection_database(settings)
    try:
        first = ProjectionRunner(ledger, db, read_models(), batch_size=500)
        second = ProjectionRunner(ledger, other_db, read_models(), batch_size=3)
        flat = [fact for batch in the_log() for fact in batch]
        sizes = [1, 5, 2, 13, 1, 1, 8]
        turn = 0
        subject = erased(the_log())
        while flat:
            group, flat = flat[: sizes[turn % len(sizes)]], flat[sizes[turn % len(sizes)] :]
            ledger.append(group)
            (first if turn % 3 != 2 else second).catch_up()
            turn += 1
        ledger.erase(subject_ref=subject)
        first.catch_up()
        followed = table_digest(db)
    finally:
        other_db.close()
    assert rebuilt(ledger, db) == followed


class Failing:
    """Makes a projection fail on one event: while processing it, or at the end of its page."""

    seq: ClassVar[int | None] = None
    in_flush: ClassVar[bool] = False


class FailingDisclosures(DisclosureHistory):
    def begin(self, sql: Sql, events: Sequence[LoggedEvent] = ()) -> None:
        super().begin(sql, events)
        self._seen: set[int] = set()

    def process(self, sql: Sql, event: LoggedEvent) -> None:
        if event.seq == Failing.seq and not Failing.in_flush:
            raise ValueError("cannot handle this one")
        self._seen.add(event.seq)
        super().process(sql, event)

    def flush(self, sql: Sql) -> None:
        if Failing.in_flush and Failing.seq in self._seen:
            raise ValueError("the page's rows cannot be written")
        super().flush(sql)


class LogUpTo:
    """The log as it stood at ``head``: a runner catches up to there and no further."""

    def __init__(self, app: LedgerApplication, head: int) -> None:
        self.ledger = app.ledger
        self.mentions_opened = app.mentions_opened
        self._head = head

    def head(self) -> int:
        return self._head


@pytest.mark.parametrize("in_flush", [False, True], ids=["in-process", "in-flush"])
def test_a_failure_half_way_through_a_page_leaves_the_last_page_and_resumes_to_the_same_rows(
    ledger: LedgerApplication, db: ProjectionDatabase, in_flush: bool
) -> None:
    fill(ledger, the_log())
    head = ledger.head()
    failing = FailingDisclosures()
    runner = ProjectionRunner(
        ledger, db, [*read_models()[:1], failing, *read_models()[2:]], batch_size=40
    )
    # A disclosure in the middle of the third page of what they read together.
    topics = set().union(*(p.topics for p in runner.projections.values()))
    seqs = [
        n.id
        for n in ledger.ledger.select_notifications(
            start=0, limit=head, stop=head, topics=sorted(topics | {"correction.recorded"})
        )
    ]
    poison = next(
        n.id
        for n in ledger.ledger.select_notifications(
            start=seqs[99], limit=40, stop=head, topics=["disclosure.recorded"]
        )
    )
    Failing.seq, Failing.in_flush = poison, in_flush
    try:
        with pytest.raises(PoisonEventError) as caught:
            runner.catch_up()
        assert (caught.value.projection, caught.value.seq) == ("disclosures", poison)
        status = {s.name: s for s in runner.status()}
        stopped_at = status["disclosures"].position
        assert 0 < stopped_at < poison and f"event {poison}" in str(status["disclosures"].error)
        # Its group (the consent facts and the read models that read them) stops with it.
        group = set(runner.group("disclosures"))
        assert group == {"consent_facts", "consent_state", "disclosures", "retention"}
        assert {status[name].position for name in group} == {stopped_at}
        assert {s.position for name, s in status.items() if name not in group} == {head}
        # Nothing of the failed page was written: the rows are those of the log up to there.
        tables = list(DisclosureHistory.tables)
        after_failure = table_digest(db, tables)
        with projection_database_like(db) as clean:
            up_to = cast(LedgerApplication, LogUpTo(ledger, stopped_at))
            ProjectionRunner(up_to, clean, [DisclosureHistory()], batch_size=500).catch_up()
            assert table_digest(clean, tables) == after_failure

        Failing.seq = None  # the code is fixed: it resumes where it stopped
        runner.catch_up()
        resumed = table_digest(db)
    finally:
        Failing.seq, Failing.in_flush = None, False
    assert rebuilt(ledger, db) == resumed


@contextmanager
def projection_database_like(db: ProjectionDatabase) -> Iterator[ProjectionDatabase]:
    """A second, empty projection database on the same backend, removed afterwards."""
    if isinstance(db, SQLiteProjectionDatabase):
        other: ProjectionDatabase = SQLiteProjectionDatabase(
            db.path.with_name("clean-projections.sqlite3")
        )
        try:
            yield other
        finally:
            other.close()
        return
    assert isinstance(db, PostgresProjectionDatabase)
    schema = db.schema + "_clean"
    other = PostgresProjectionDatabase(db.url, schema)
    try:
        yield other
    finally:
        other.close()
        with psycopg.connect(db.url, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
