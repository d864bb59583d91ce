"""The projection runner: exactly once across crashes, versions, poison events, following."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any, ClassVar

import pytest

from ledger.application import LedgerApplication
from ledger.config import Settings
from projections.base import LoggedEvent, PoisonEventError, Projection
from projections.consent_state import ConsentState
from projections.database import Sql
from projections.disclosures import DisclosureHistory
from projections.runner import ProjectionRunner, table_digest
from tests import facts
from tests.integration.projection_fixtures import projection_database
from tests.support.processes import ROOT, settings_env
from tests.support.waiting import wait_until


def fill(ledger: LedgerApplication, subjects: int, batches: int = 1) -> None:
    pol = facts.policy()
    rcpt = facts.recipient()
    ledger.append([pol, rcpt])
    for _ in range(batches):
        people = [facts.ref("user") for _ in range(subjects)]
        ledger.append([facts.consent(p, pol["version"]) for p in people])
        ledger.append(
            [
                facts.disclosure(rcpt["recipient_id"], people[i : i + 5], pol["version"])
                for i in range(0, subjects, 5)
            ]
        )
        ledger.append([facts.consent(p, pol["version"], kind="withdrawn") for p in people[::3]])


@pytest.fixture
def runner(ledger: LedgerApplication, settings: Settings) -> Iterator[ProjectionRunner]:
    db = projection_database(settings)
    try:
        yield ProjectionRunner(ledger, db, [ConsentState(), DisclosureHistory()], batch_size=25)
    finally:
        db.close()


def test_killed_mid_batch_a_runner_resumes_with_nothing_applied_twice(
    ledger: LedgerApplication, settings: Settings, runner: ProjectionRunner
) -> None:
    fill(ledger, subjects=200, batches=4)
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.integration.projection_worker", "10"],
        env=settings_env(settings),
        cwd=ROOT,
        stdout=subprocess.PIPE,
    )
    assert child.stdout is not None
    assert child.stdout.readline().strip() == b"started"
    # its first batch is in: kill it now
    wait_until(lambda: runner.position("consent_state"), "the worker made no progress", 60, 0.005)
    child.send_signal(signal.SIGKILL)
    child.wait()
    child.stdout.close()
    stopped_at = runner.position("consent_state")
    assert 0 < stopped_at < ledger.head(), "the worker was not stopped half-way"

    runner.catch_up()  # resumes from the recorded positions; a repeat would break a key
    resumed = table_digest(runner.db)
    runner.rebuild()
    assert table_digest(runner.db) == resumed


def test_status_reports_position_and_lag(
    ledger: LedgerApplication, runner: ProjectionRunner
) -> None:
    fill(ledger, subjects=10)
    status = {s.name: s for s in runner.status()}
    assert status["consent_state"].position == 0
    assert status["consent_state"].lag_events == ledger.head() > 0
    runner.catch_up()
    status = {s.name: s for s in runner.status()}
    assert all(
        s.lag_events == 0 and s.lag_seconds == 0 and s.error is None for s in status.values()
    )


def test_reads_can_wait_for_a_sequence_number(
    ledger: LedgerApplication, runner: ProjectionRunner
) -> None:
    stop = threading.Event()
    follower = threading.Thread(target=runner.follow, args=(stop, lambda exc: None), daemon=True)
    runner.poll_interval = 0.05
    follower.start()
    try:
        [receipt] = ledger.append([facts.policy()])
        assert runner.wait_for(receipt.seq, timeout=10)
        assert not runner.wait_for(receipt.seq + 1000, timeout=0.2)
    finally:
        stop.set()
        follower.join(timeout=10)
    assert not follower.is_alive()


class Counting(Projection):
    """A projection that fails on a chosen event, and counts what it applied."""

    name = "counting"
    version = 1
    topics = frozenset({"policy.version_published"})
    tables: ClassVar[dict[str, str]] = {"proj_counting": "seq BIGINT PRIMARY KEY"}
    poison: ClassVar[set[int]] = set()

    def process(self, sql: Sql, event: LoggedEvent) -> None:
        if event.seq in self.poison:
            raise ValueError("cannot handle this one")
        sql.execute("INSERT INTO proj_counting (seq) VALUES (?)", (event.seq,))


def test_a_poison_event_stops_its_projection_and_is_never_skipped(
    ledger: LedgerApplication, settings: Settings
) -> None:
    ledger.append([facts.policy() for _ in range(5)])
    db = projection_database(settings)
    try:
        Counting.poison = {3}
        runner = ProjectionRunner(ledger, db, [Counting()], batch_size=2)
        with pytest.raises(PoisonEventError) as caught:
            runner.catch_up()
        assert (caught.value.seq, caught.value.projection) == (3, "counting")
        assert "event 3 (policy.version_published)" in str(caught.value)
        [status] = runner.status()
        assert status.position == 2 and status.error and "event 3" in status.error
        assert status.failure is not None
        assert (status.failure.seq, status.failure.event_type) == (3, "policy.version_published")
        assert (status.failure.error_class, status.failure.message) == (
            "ValueError",
            "cannot handle this one",
        )
        assert [r[0] for r in db.query("SELECT seq FROM proj_counting ORDER BY seq")] == [1, 2]
        with pytest.raises(PoisonEventError):
            runner.catch_up()  # still there, still not skipped
        failure = runner.failure("counting")
        assert failure is not None and failure.attempts == 2
        assert failure.first_failed_at == status.failure.first_failed_at
        Counting.poison = set()  # the code is fixed
        runner.catch_up()
        assert [r[0] for r in db.query("SELECT seq FROM proj_counting ORDER BY seq")] == [
            1,
            2,
            3,
            4,
            5,
        ]
        assert runner.status()[0].error is None and runner.failure("counting") is None
    finally:
        Counting.poison = set()
        db.close()


def test_a_new_projection_version_rebuilds_itself(
    ledger: LedgerApplication, settings: Settings
) -> None:
    ledger.append([facts.policy() for _ in range(3)])
    db = projection_database(settings)
    try:
        runner = ProjectionRunner(ledger, db, [Counting()])
        runner.catch_up()
        db.query("SELECT 1")
        with db.transaction() as sql:
            sql.execute("INSERT INTO proj_counting (seq) VALUES (999)")  # stale row of old code

        class CountingV2(Counting):
            version = 2

        runner = ProjectionRunner(ledger, db, [CountingV2()])
        assert runner.status()[0].position == 0 and runner.status()[0].version == "2"
        runner.catch_up()
        assert [r[0] for r in db.query("SELECT seq FROM proj_counting ORDER BY seq")] == [1, 2, 3]
    finally:
        db.close()


def test_two_runners_never_apply_a_batch_twice(
    ledger: LedgerApplication, settings: Settings
) -> None:
    fill(ledger, subjects=100, batches=2)
    dbs = [projection_database(settings) for _ in range(2)]
    errors: list[BaseException] = []

    def run(db: Any) -> None:
        try:
            ProjectionRunner(
                ledger, db, [ConsentState(), DisclosureHistory()], batch_size=5
            ).catch_up()
        except BaseException as exc:
            errors.append(exc)

    try:
        threads = [threading.Thread(target=run, args=(db,)) for db in dbs]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert not errors
        together = table_digest(dbs[0])
        ProjectionRunner(ledger, dbs[0], [ConsentState(), DisclosureHistory()]).rebuild()
        assert table_digest(dbs[0]) == together
    finally:
        for db in dbs:
            db.close()


def test_on_postgresql_a_notification_wakes_the_follower(
    ledger: LedgerApplication, settings: Settings, runner: ProjectionRunner
) -> None:
    if settings.database_url is None:
        pytest.skip("SQLite has no notifications: its runner polls (the test above)")
    runner.poll_interval = 60  # only a notification can wake it in time
    stop = threading.Event()
    follower = threading.Thread(target=runner.follow, args=(stop, lambda exc: None), daemon=True)
    follower.start()
    try:
        time.sleep(0.5)  # let it catch up and start listening
        [receipt] = ledger.append([facts.policy()])
        assert runner.wait_for(receipt.seq, timeout=10)
    finally:
        stop.set()
        runner.wake()
        follower.join(timeout=10)
    assert not follower.is_alive()
