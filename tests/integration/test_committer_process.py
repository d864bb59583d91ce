"""The committer process: every worker's appends signed and committed by one process.

Two "workers" here are two ledgers opened in this test process (or an appender process), each
handing its groups to one :class:`ledger.committer.CommitterProcess`, as the workers of
``consent-ledger serve`` do with ``CONSENT_LEDGER_COMMITTER=process``.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import orjson
import pytest

from ledger.application import LedgerApplication
from ledger.committer import CommitterAddress, CommitterLink, CommitterProcess
from ledger.config import Settings, load_keyring, open_ledger
from ledger.errors import LedgerError, StorageError
from ledger.integrity import check_log
from ledger.verifier.entry import entry_hash, parse_body
from tests import facts
from tests.support.crash_checks import check_after_crash
from tests.support.processes import start_appender
from tests.support.waiting import wait_until


@contextmanager
def committer(settings: Settings) -> Iterator[CommitterProcess]:
    process = CommitterProcess(settings.storage(), CommitterAddress.new())
    process.start()
    try:
        yield process
    finally:
        process.stop()


@contextmanager
def worker(settings: Settings, process: CommitterProcess) -> Iterator[LedgerApplication]:
    app = open_ledger(settings, committer=process.address)
    try:
        yield app
    finally:
        app.close()


def published_policy(settings: Settings) -> str:
    app = open_ledger(settings)
    try:
        pol = facts.policy()
        app.append([pol])
        return str(pol["version"])
    finally:
        app.close()


def test_two_workers_share_one_gapless_signed_log(settings: Settings) -> None:
    version = published_policy(settings)
    receipts: list[tuple[str, int, str]] = []
    lock = threading.Lock()

    def append_from(app: LedgerApplication, name: str) -> None:
        for k in range(15):
            batch = [facts.consent(facts.ref("user"), version) for _ in range(1 + k % 4)]
            got = app.append(batch)
            with lock:
                receipts.extend((r.event_id, r.seq, r.event_hash) for r in got)

    with (
        committer(settings) as process,
        worker(settings, process) as one,
        worker(settings, process) as two,
    ):
        threads = [
            threading.Thread(target=append_from, args=(app, f"{name}-{t}"))
            for name, app in (("one", one), ("two", two))
            for t in range(3)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        head = one.ledger.max_notification_id() or 0
        # Every event after the policy was committed for one of the two workers.
        assert one.ledger.events_committed > 0
        assert two.ledger.events_committed > 0
        assert one.ledger.events_committed + two.ledger.events_committed == head - 1

    assert len({seq for _, seq, _ in receipts}) == len(receipts)
    app = open_ledger(settings)
    try:
        for event_id, seq, event_hash in receipts:
            record = app.ledger.get_record(seq)
            assert record is not None
            assert entry_hash(record.entry).hex() == event_hash
            assert parse_body(record.body)["event_id"] == event_id
        report = check_log(app.ledger, load_keyring(settings), mentions=app.mentions_opened)
        assert report.ok, report.problems
    finally:
        app.close()


def test_one_event_id_sent_by_two_workers_at_once_is_stored_once(settings: Settings) -> None:
    version = published_policy(settings)
    fact = facts.consent(facts.ref("user"), version)
    answers: list[tuple[int, bool]] = []
    with (
        committer(settings) as process,
        worker(settings, process) as one,
        worker(settings, process) as two,
    ):
        barrier = threading.Barrier(2)

        def send(app: LedgerApplication) -> None:
            barrier.wait()
            (receipt,) = app.append([fact])
            answers.append((receipt.seq, receipt.duplicate))

        threads = [threading.Thread(target=send, args=(a,)) for a in (one, two)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        stored = [
            r.seq for r in one.iter_records() if parse_body(r.body)["event_id"] == fact["event_id"]
        ]
    seq = stored[0]
    assert len(stored) == 1
    assert sorted(answers) == [(seq, False), (seq, True)]


def test_without_its_committer_a_worker_refuses_instead_of_committing_itself(
    settings: Settings,
) -> None:
    version = published_policy(settings)
    with committer(settings) as process, worker(settings, process) as app:
        app.append([facts.consent(facts.ref("user"), version)])
        process.stop()  # the committer is gone (and not started again: it was stopped)
        link = app.ledger.link
        assert isinstance(link, CommitterLink)
        link.CONNECT_WAIT_S = 0.5  # not 30 s: it will not come back
        head = app.ledger.max_notification_id()
        with pytest.raises(StorageError, match="committer process did not answer"):
            app.append([facts.consent(facts.ref("user"), version)])
        assert app.ledger.max_notification_id() == head  # the worker committed nothing itself


def test_a_killed_committer_loses_no_receipted_event_and_comes_back(settings: Settings) -> None:
    version = published_policy(settings)
    subjects = [facts.ref("user") for _ in range(10)]
    size = 5
    with committer(settings) as process:
        appender = start_appender(
            settings, "crash", version, 100_000, size, subjects, committer=process.environment()
        )
        assert appender.stdout is not None
        receipted: list[tuple[str, int, str]] = []
        for line in appender.stdout:
            receipted.extend(orjson.loads(line)["receipts"])
            if len(receipted) >= 30 * size:
                break
        assert process.process is not None and process.process.pid is not None
        os.kill(process.process.pid, signal.SIGKILL)  # while the appender hands it batches
        # The appender's appends in flight fail (it stops at its first error), and the
        # committer is started again at the same address.
        appender.wait(timeout=60)
        assert appender.returncode != 0
        for line in appender.stdout:
            receipted.extend(orjson.loads(line)["receipts"])
        appender.stdout.close()
        wait_until(lambda: process.restarts == 1, "the committer started again", seconds=60)
        with worker(settings, process) as app:
            app.append([facts.consent(subjects[0], version)])

    app = open_ledger(settings)
    try:
        check_after_crash(app, settings, receipted, "crash", size)
    finally:
        app.close()


def test_an_erasure_committed_for_one_worker_closes_the_subject_for_the_other(
    settings: Settings,
) -> None:
    version = published_policy(settings)
    alice = facts.ref("user")
    contact = "alice@example.org"
    with (
        committer(settings) as process,
        worker(settings, process) as one,
        worker(settings, process) as two,
    ):
        (given,) = one.append([facts.consent(alice, version, contact=contact)])
        record = two.ledger.get_record(given.seq)
        assert record is not None
        assert two.decode(record).data["contact"] == contact  # the other worker opens it
        one.erase(subject_ref=alice)
        # The key the committer destroyed opens nothing in the other worker, which did not
        # erase (and so forgot nothing itself).
        assert contact not in repr(two.decode(record).as_dict())
        assert two.subject_keys.was_erased(alice)
        # Nor can the other worker seal anything more under it.
        with pytest.raises(LedgerError, match="erased"):
            two.append([facts.consent(alice, version)])


def test_started_without_waiting_the_first_appends_wait_for_it(settings: Settings) -> None:
    version = published_policy(settings)
    process = CommitterProcess(settings.storage(), CommitterAddress.new())
    process.start(wait=False)
    try:
        with worker(settings, process) as app:
            (receipt,) = app.append([facts.consent(facts.ref("user"), version)])
            assert app.ledger.get_record(receipt.seq) is not None
    finally:
        process.stop()


def test_the_committer_key_is_private_and_removed_at_stop(settings: Settings) -> None:
    with committer(settings) as process:
        key_file = process.address.key_file
        assert key_file.stat().st_mode & 0o777 == 0o600
        assert key_file.parent.stat().st_mode & 0o777 == 0o700
    assert not key_file.parent.exists()


def test_a_connection_without_the_key_is_refused_before_anything_is_read(
    settings: Settings,
) -> None:
    from multiprocessing import AuthenticationError
    from multiprocessing.connection import Client

    with committer(settings) as process:
        with pytest.raises(AuthenticationError):
            Client(process.address.socket, family="AF_UNIX", authkey=b"not the key")
        # It still answers its workers.
        version = published_policy(settings)
        with worker(settings, process) as app:
            (receipt,) = app.append([facts.consent(facts.ref("user"), version)])
            assert app.ledger.get_record(receipt.seq) is not None
