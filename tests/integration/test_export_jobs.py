"""Export jobs (ledger/export_jobs.py) on both backends: each scope kind becomes a verified
bundle on the record; unknown names are refused before anything is queued; a job survives a
crash or a stop (made again from scratch) or fails with the reason; bundles expire and are
deleted; a client sees only its own jobs and has a bounded queue."""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from ledger.application import LedgerApplication
from ledger.config import Settings
from ledger.export import ScopeNotFoundError
from ledger.export_jobs import (
    MAX_ATTEMPTS,
    BundleNotReadyError,
    ExportJob,
    ExportJobError,
    ExportJobs,
    ExportPolicy,
    JobNotFoundError,
    JobState,
    QueueFullError,
    open_job_table,
)
from ledger.operations import export_scope
from ledger.verifier.bundle import MANIFEST, BundleFiles, verify_bundle
from ledger.verifier.entry import parse_body
from tests import facts
from tests.support import bundles

PURPOSE = "answer the regulator's inquiry 2026-17"


class Crash(BaseException):
    """Stands for the process dying in the middle of a job: nothing of ours catches it."""


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


Hook = Callable[[str, str, int, int], None]


@pytest.fixture
def open_jobs(
    ledger: LedgerApplication, settings: Settings, tmp_path: Path
) -> Iterator[Callable[..., ExportJobs]]:
    """Open the export jobs of ``ledger`` (as many times as a test restarts them)."""
    opened: list[ExportJobs] = []

    def make(
        policy: ExportPolicy | None = None,
        clock: Callable[[], datetime] | None = None,
        on_progress: Hook | None = None,
    ) -> ExportJobs:
        jobs = ExportJobs(
            ledger,
            open_job_table(settings.database_url, settings.database_schema, settings.data_dir),
            tmp_path / "exports",
            verifier_keys=bundles.verifier_keys(ledger, settings),
            report_settings=bundles.REPORT_SETTINGS,
            policy=policy,
            clock=clock,
            on_progress=on_progress,
        )
        opened.append(jobs)
        return jobs

    yield make
    for jobs in opened:
        jobs.close()


def recorded(ledger: LedgerApplication) -> dict[str, dict[str, Any]]:
    """A subject with consent, a recipient with a disclosure of them, an incident: the scope
    of each kind."""
    pol = facts.policy()
    subject, recipient, incident = facts.ref("user"), facts.ref("rcpt"), facts.ref("inc")
    ledger.append(
        [
            pol,
            facts.recipient(recipient),
            facts.consent(subject, pol["version"]),
            facts.disclosure(recipient, [subject], pol["version"]),
            facts.incident(incident),
        ]
    )
    start = datetime.now(UTC) - timedelta(days=1)
    return {
        "subject": export_scope(subject_pseudonym=ledger.subject_keys.pseudonym(subject)),
        "recipient": export_scope(recipient=recipient),
        "incident": export_scope(incident=incident),
        "period": export_scope(period=(start, start + timedelta(days=2))),
        "all": export_scope(),
    }


def access_events(ledger: LedgerApplication) -> list[dict[str, Any]]:
    """The data of every ``personal_data.accessed`` in the log, opened."""
    found = []
    for record in ledger.ledger.select_records(1, 100_000):
        if parse_body(record.body)["type"] == "personal_data.accessed":
            found.append(ledger.get_event(record.seq).data)
    return found


def drain(jobs: ExportJobs) -> None:
    while jobs.run_next():
        pass


def test_each_scope_kind_becomes_a_verified_bundle_on_the_record(
    ledger: LedgerApplication, settings: Settings, open_jobs: Callable[..., ExportJobs]
) -> None:
    scopes = recorded(ledger)
    jobs = open_jobs()
    started = {
        kind: jobs.start("c-1", "regulator", scope, PURPOSE) for kind, scope in scopes.items()
    }
    assert {job.state for job in started.values()} == {JobState.QUEUED}
    drain(jobs)
    trusted = bundles.trusted(ledger, settings)
    reads = {event["details"]["export_id"]: event for event in access_events(ledger)}
    for kind, job in started.items():
        done, path = jobs.bundle(job.job_id, "c-1")
        assert done.state == JobState.DONE, done.failure
        report = verify_bundle(path, trusted, jobs=1)
        assert report.scope == scopes[kind]
        with BundleFiles(path).open(MANIFEST) as manifest:
            text = manifest.read()
        assert done.manifest_sha256 == hashlib.sha256(text).hexdigest()
        closure = json.loads(text)["closure"]
        assert done.bytes == path.stat().st_size
        assert done.checkpoint_size is not None and done.checkpoint_size >= 5
        assert done.expires_at is not None and done.expires_at > (done.finished_at or "")
        # On the record: who, why, under which scope, which bundle.
        read = reads[job.job_id]
        assert read["client"] == "regulator" and read["purpose"] == PURPOSE
        assert read["action"] == "bundle_export" and read["scope"] == "exports:create"
        assert read["details"]["manifest_sha256"] == done.manifest_sha256
        assert read["details"]["checkpoint_size"] == done.checkpoint_size
        assert read["details"]["scope"].split(" ")[0] == kind
        if kind == "subject":
            # Named once, sealed: the pseudonym is not in the record's details in clear.
            assert read["opened_subjects"] == [scopes["subject"]["subject"]]
            assert read["count"] == 1 and read["details"]["scope"] == "subject"
        elif kind == "all":
            assert "opened_subjects" not in read and "count" not in read  # not counted
        else:  # the subjects the bundle's closure holds
            held = [name for name in closure if name.startswith("subject:")]
            assert "opened_subjects" not in read and read["count"] == len(held)
    assert len(reads) == len(started)


def test_unknown_names_are_refused_and_nothing_is_queued(
    ledger: LedgerApplication, open_jobs: Callable[..., ExportJobs]
) -> None:
    recorded(ledger)
    jobs = open_jobs()
    unknown = [
        (export_scope(recipient="rcpt-nobody"), "nothing to export: no recipient 'rcpt-nobody'"),
        (export_scope(incident="inc-nobody"), "nothing to export: no incident 'inc-nobody'"),
        (
            export_scope(subject_pseudonym=ledger.subject_keys.pseudonym("never-seen")),
            "nothing to export: no subject has that reference",
        ),
    ]
    for scope, message in unknown:
        with pytest.raises(ScopeNotFoundError, match=message):
            jobs.start("c-1", "regulator", scope, PURPOSE)
    assert jobs.table.execute("SELECT count(*) FROM export_jobs") == [(0,)]
    assert not jobs.run_next()


def test_only_a_subjects_bundle_answers_an_access_request(
    ledger: LedgerApplication, open_jobs: Callable[..., ExportJobs]
) -> None:
    scopes = recorded(ledger)
    jobs = open_jobs()
    with pytest.raises(ExportJobError, match="only a subject's bundle"):
        jobs.start("c-1", "privacy", scopes["all"], PURPOSE, answers_request="req-1")
    job = jobs.start("c-1", "privacy", scopes["subject"], PURPOSE, answers_request="req-1")
    assert job.answers_request == "req-1"


def test_another_clients_job_reads_as_no_job_at_all(
    ledger: LedgerApplication, open_jobs: Callable[..., ExportJobs]
) -> None:
    scopes = recorded(ledger)
    jobs = open_jobs()
    job = jobs.start("c-1", "regulator", scopes["all"], PURPOSE)
    drain(jobs)
    with pytest.raises(JobNotFoundError) as theirs:
        jobs.get(job.job_id, "c-2")
    with pytest.raises(JobNotFoundError) as nobodys:
        jobs.get("00000000-0000-4000-8000-000000000000", "c-2")
    assert str(theirs.value).replace(job.job_id, "ID") == str(nobodys.value).replace(
        "00000000-0000-4000-8000-000000000000", "ID"
    )
    with pytest.raises(JobNotFoundError):
        jobs.bundle(job.job_id, "c-2")
    assert jobs.get(job.job_id, "c-2", admin=True).state == JobState.DONE


def _crash_in_entries(job_id: str, phase: str, done: int, total: int) -> None:
    if phase == "entries":
        raise Crash


def test_a_crash_mid_export_serves_nothing_and_the_job_is_made_again(
    ledger: LedgerApplication, settings: Settings, open_jobs: Callable[..., ExportJobs]
) -> None:
    scopes = recorded(ledger)
    first = open_jobs(on_progress=_crash_in_entries)
    job = first.start("c-1", "regulator", scopes["all"], PURPOSE)
    with pytest.raises(Crash):
        first.run_next()
    running = first.get(job.job_id, "c-1")
    assert running.state == JobState.RUNNING and running.attempts == 1
    with pytest.raises(BundleNotReadyError, match="running"):
        first.bundle(job.job_id, "c-1")
    assert not first.bundle_path(job.job_id).exists()
    first.close()
    # What a process killed mid-write leaves: its attempt's work directory.
    leftover = first.directory / "work" / f"{job.job_id}-1"
    leftover.mkdir(parents=True, exist_ok=True)
    (leftover / "bundle.zip.partial").write_bytes(b"PK half")

    restarted = open_jobs()
    restarted.sweep()
    assert not leftover.exists()
    queued = restarted.get(job.job_id, "c-1")
    assert queued.state == JobState.QUEUED and queued.phase is None
    drain(restarted)
    done, path = restarted.bundle(job.job_id, "c-1")
    assert done.state == JobState.DONE and done.attempts == 2
    verify_bundle(path, bundles.trusted(ledger, settings), jobs=1)
    assert [e["details"]["export_id"] for e in access_events(ledger)] == [job.job_id]


def test_a_job_interrupted_too_often_fails_with_the_reason(
    ledger: LedgerApplication, open_jobs: Callable[..., ExportJobs]
) -> None:
    scopes = recorded(ledger)
    job = open_jobs().start("c-1", "regulator", scopes["all"], PURPOSE)
    for _ in range(MAX_ATTEMPTS):
        jobs = open_jobs(on_progress=_crash_in_entries)
        jobs.sweep()
        with pytest.raises(Crash):
            jobs.run_next()
        jobs.close()
    last = open_jobs()
    last.sweep()
    failed = last.get(job.job_id, "c-1")
    assert failed.state == JobState.FAILED
    assert failed.failure == f"interrupted by a restart ({MAX_ATTEMPTS} times)"
    with pytest.raises(BundleNotReadyError, match="failed"):
        last.bundle(job.job_id, "c-1")
    assert not last.run_next()
    assert access_events(ledger) == []


def test_a_stop_puts_the_running_job_back_in_the_queue(
    ledger: LedgerApplication, open_jobs: Callable[..., ExportJobs]
) -> None:
    scopes = recorded(ledger)
    stop = threading.Event()

    def stop_in_leaves(job_id: str, phase: str, done: int, total: int) -> None:
        stop.set()

    jobs = open_jobs(on_progress=stop_in_leaves)
    job = jobs.start("c-1", "regulator", scopes["all"], PURPOSE)
    assert jobs.run_next(stop)
    queued = jobs.get(job.job_id, "c-1")
    assert queued.state == JobState.QUEUED and queued.attempts == 1
    assert not (jobs.directory / "work").exists() or not any((jobs.directory / "work").iterdir())
    drain(open_jobs())
    assert jobs.get(job.job_id, "c-1").state == JobState.DONE


def test_a_bundle_expires_and_is_deleted(
    ledger: LedgerApplication, open_jobs: Callable[..., ExportJobs]
) -> None:
    scopes = recorded(ledger)
    clock = Clock()
    jobs = open_jobs(policy=ExportPolicy(ttl=timedelta(hours=2)), clock=clock)
    job = jobs.start("c-1", "regulator", scopes["incident"], PURPOSE)
    drain(jobs)
    done, path = jobs.bundle(job.job_id, "c-1")
    assert done.expires_at == "2026-12-01T11:00:00.000000Z"
    clock.now += timedelta(hours=2)
    # Due: it reads as expired at once, and the next sweep deletes the file.
    assert jobs.get(job.job_id, "c-1").state == JobState.EXPIRED
    with pytest.raises(BundleNotReadyError, match="expired"):
        jobs.bundle(job.job_id, "c-1")
    jobs.sweep()
    assert not path.exists()
    row = jobs.table.execute("SELECT state FROM export_jobs WHERE job_id = ?", (job.job_id,))
    assert row == [(JobState.EXPIRED.value,)]


def test_a_client_has_a_bounded_queue(
    ledger: LedgerApplication, open_jobs: Callable[..., ExportJobs]
) -> None:
    scopes = recorded(ledger)
    jobs = open_jobs(policy=ExportPolicy(per_client=2))
    first = jobs.start("c-1", "regulator", scopes["all"], PURPOSE)
    jobs.start("c-1", "regulator", scopes["incident"], PURPOSE)
    with pytest.raises(QueueFullError, match="2 exports queued or running"):
        jobs.start("c-1", "regulator", scopes["recipient"], PURPOSE)
    jobs.start("c-2", "auditor", scopes["recipient"], PURPOSE)  # another client's own quota
    drain(jobs)
    assert jobs.get(first.job_id, "c-1").state == JobState.DONE
    jobs.start("c-1", "regulator", scopes["recipient"], PURPOSE)  # done jobs free the queue


def test_a_job_reads_back_as_it_was_asked(
    ledger: LedgerApplication, open_jobs: Callable[..., ExportJobs]
) -> None:
    scopes = recorded(ledger)
    jobs = open_jobs()
    job: ExportJob = jobs.start("c-1", "regulator", scopes["period"], PURPOSE)
    again = jobs.get(job.job_id, "c-1")
    assert again == job
    assert orjson.loads(orjson.dumps(again.scope)) == scopes["period"]
    assert again.scope_text == f"period {scopes['period']['from']}..{scopes['period']['to']}"


def test_an_erased_subjects_kept_bundle_is_deleted(
    ledger: LedgerApplication, open_jobs: Callable[..., ExportJobs]
) -> None:
    pol = facts.policy()
    kept, erased = facts.ref("user"), facts.ref("user")
    ledger.append([pol, facts.consent(kept, pol["version"]), facts.consent(erased, pol["version"])])
    jobs = open_jobs()
    started = {
        ref: jobs.start(
            "c-1", "privacy", export_scope(subject_pseudonym=jobs.pseudonym(ref)), PURPOSE
        )
        for ref in (kept, erased)
    }
    drain(jobs)
    ledger.erase(subject_ref=erased)
    jobs.sweep()
    gone = jobs.get(started[erased].job_id, "c-1")
    assert gone.state == JobState.EXPIRED and gone.failure == "the subject was erased"
    assert not jobs.bundle_path(gone.job_id).exists()
    with pytest.raises(BundleNotReadyError, match="expired"):
        jobs.bundle(gone.job_id, "c-1")
    assert jobs.bundle(started[kept].job_id, "c-1")[1].is_file()
