"""Export jobs: bundles asked for over HTTP, made one at a time beside the API, kept for a while.

A bundle of a large log takes minutes, longer than a request may wait, so ``POST /v1/exports``
only queues a job (:meth:`ExportJobs.start`) and a runner (:meth:`ExportJobs.run`, a thread
of the API process) makes the bundles in order. Jobs are rows of ``export_jobs`` in the
ledger's database (``exports.sqlite3`` in the data directory, or the ledger's PostgreSQL
schema), so they outlive the process; bundles are files in the export directory.

What a reader of a bundle relies on:

- **Nothing half-written is served.** A bundle is written in a work directory of its own
  attempt, verified with the stand-alone verifier, and only then moved to ``<job id>.zip``
  (one rename) and the job marked done.
- **A restart resumes.** A job left ``running`` by a process that died (its runner is gone:
  on PostgreSQL, nobody holds the job's advisory lock; on SQLite, which one process serves,
  no runner of this process has it) is queued again and made from scratch, its work directory
  deleted first; after :data:`MAX_ATTEMPTS` interruptions it fails with the reason. A runner
  stopped with the API puts its job back in the queue the same way.
- **Every bundle is on the record** (invariant 11): before a bundle can be downloaded, the
  ledger appends a ``personal_data.accessed`` event naming the client, the purpose, the scope
  and the manifest's digest (:mod:`ledger.access_records`).
- **Bundles expire**: a done job's file is deleted after the configured time, or as soon as
  the runner sees that the subject of a subject's bundle was erased, and the job says
  ``expired``.
- **A client sees its own jobs only**; whoever asks for another's is told there is none.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import secrets
import shutil
import sqlite3
import threading
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any

import orjson

from ledger.access_records import AccessAction, AccessRecord
from ledger.application import LedgerApplication
from ledger.errors import LedgerError
from ledger.export import ExportError, ScopeNotFoundError, export_bundle, missing_scope
from ledger.mapper import format_time
from ledger.verifier.bundle import MANIFEST, BundleError, BundleFiles, verify_bundle
from ledger.verifier.note import parse_verifier_key
from ledger.verifier.scopes import SUBJECT_PREFIX, Closure, ScopeError

logger = logging.getLogger("consent_ledger.exports")

MAX_ATTEMPTS = 3
"""Interruptions (a restart, a stop) a job survives; the next one fails it."""
EXPORT_SCOPE = "exports:create"
"""The API scope that lets a client ask for bundles (named in each export's access record)."""
PROGRESS_EVERY = 0.5
"""Seconds between writes of a running job's progress (the export reports every page)."""


class JobState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    EXPIRED = "expired"


class ExportJobError(LedgerError):
    """A job cannot be started or read as asked; the message says why."""


class JobNotFoundError(ExportJobError):
    """No job of that id that this client may see (another client's job reads as none)."""


class QueueFullError(ExportJobError):
    """The client has as many jobs waiting or running as it may."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        super().__init__(
            f"this client has {limit} exports queued or running, the most it may have; "
            "ask again when one is done"
        )


class BundleNotReadyError(ExportJobError):
    """The job's bundle is not there to download: not made yet, failed, or expired."""

    def __init__(self, state: str) -> None:
        self.state = state
        super().__init__(
            {
                JobState.EXPIRED: "the bundle expired and was deleted; start a new export",
                JobState.FAILED: "the export failed; its failure says why",
            }.get(JobState(state), f"the export is {state}; the bundle is there once it is done")
        )


@dataclass(frozen=True)
class ExportJob:
    """One job as stored: what was asked, by whom, and how far it got."""

    job_id: str
    client_id: str
    client: str
    scope: dict[str, Any]
    """As :class:`ledger.verifier.scopes.Closure` takes it (a subject by pseudonym)."""
    purpose: str
    answers_request: str | None
    state: str
    phase: str | None
    done: int
    total: int
    attempts: int
    created_at: str
    started_at: str | None
    finished_at: str | None
    expires_at: str | None
    manifest_sha256: str | None
    bytes: int | None
    checkpoint_size: int | None
    entries: int | None
    failure: str | None

    @property
    def scope_text(self) -> str:
        """The scope as one line: its kind and what it names (``subject <pseudonym>``)."""
        scope = self.scope
        kind = str(scope.get("kind"))
        name = {
            "subject": scope.get("subject"),
            "recipient": scope.get("recipient_id"),
            "incident": scope.get("incident_id"),
            "period": f"{scope.get('from')}..{scope.get('to')}",
        }.get(kind)
        # A subject is named by the record's sealed opened_subjects, never in clear.
        return kind if name is None or kind == "subject" else f"{kind} {name}"


_COLUMNS = (
    "job_id",
    "client_id",
    "client",
    "scope",
    "purpose",
    "answers_request",
    "state",
    "phase",
    "done",
    "total",
    "attempts",
    "created_at",
    "started_at",
    "finished_at",
    "expires_at",
    "manifest_sha256",
    "bytes",
    "checkpoint_size",
    "entries",
    "failure",
    "runner",
)
_SELECT = f"SELECT {', '.join(_COLUMNS[:-1])} FROM export_jobs"  # noqa: S608 (our columns)
_CREATE = (
    "CREATE TABLE IF NOT EXISTS export_jobs (job_id TEXT PRIMARY KEY, client_id TEXT NOT NULL, "
    "client TEXT NOT NULL, scope TEXT NOT NULL, purpose TEXT NOT NULL, answers_request TEXT, "
    "state TEXT NOT NULL, phase TEXT, done BIGINT NOT NULL DEFAULT 0, "
    "total BIGINT NOT NULL DEFAULT 0, attempts INTEGER NOT NULL DEFAULT 0, "
    "created_at TEXT NOT NULL, started_at TEXT, finished_at TEXT, expires_at TEXT, "
    "manifest_sha256 TEXT, bytes BIGINT, checkpoint_size BIGINT, entries BIGINT, failure TEXT, "
    "runner TEXT)"
)
_INDEX = "CREATE INDEX IF NOT EXISTS export_jobs_by_state ON export_jobs (state, created_at)"

Row = tuple[Any, ...]


class JobTable(ABC):
    """The ``export_jobs`` table on one backend: statements in portable SQL (``?``)."""

    @abstractmethod
    def execute(self, query: str, params: Sequence[Any] = ()) -> list[Row]:
        """One statement, committed; the rows it returns (``RETURNING`` included)."""

    @abstractmethod
    def holding(self, job_id: str) -> AbstractContextManager[None]:
        """While inside, this process is known to be working on ``job_id``."""

    @abstractmethod
    def orphaned(self, job_id: str) -> bool:
        """Whether a ``running`` job has no live runner (its process died)."""

    @abstractmethod
    def close(self) -> None: ...


class SQLiteJobTable(JobTable):
    """``exports.sqlite3``: one process serves a SQLite ledger, so a job is orphaned when no
    runner of this process holds it."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA busy_timeout=60000")
        self._lock = threading.Lock()
        self._held: set[str] = set()
        self.execute(_CREATE)
        self.execute(_INDEX)

    def execute(self, query: str, params: Sequence[Any] = ()) -> list[Row]:
        with self._lock:
            return self._conn.execute(query, tuple(params)).fetchall()

    @contextmanager
    def holding(self, job_id: str) -> Iterator[None]:
        with self._lock:
            self._held.add(job_id)
        try:
            yield
        finally:
            with self._lock:
                self._held.discard(job_id)

    def orphaned(self, job_id: str) -> bool:
        with self._lock:
            return job_id not in self._held

    def close(self) -> None:
        with self._lock:
            self._conn.close()


class PostgresJobTable(JobTable):
    """``export_jobs`` in the ledger's schema. A runner holds a session advisory lock on its
    job while it works: the lock goes with the connection when its process dies, so any
    process can tell an orphan from a job another worker is making."""

    def __init__(self, url: str, schema: str) -> None:
        from ledger.postgres import create_pool

        self.url = url
        self.schema = schema
        self._pool = create_pool(url, max_size=4)
        # Workers starting together would race to create the table: one at a time.
        with self._pool.connection() as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (self._key("(schema)"),))
            conn.execute(f'SET LOCAL search_path TO "{schema}"')
            conn.execute(_CREATE)
            conn.execute(_INDEX)

    def execute(self, query: str, params: Sequence[Any] = ()) -> list[Row]:
        with self._pool.connection() as conn:
            conn.execute(f'SET search_path TO "{self.schema}"')
            cursor = conn.execute(query.replace("?", "%s"), tuple(params))
            return [tuple(row) for row in cursor.fetchall()] if cursor.description else []

    def _key(self, job_id: str) -> int:
        digest = hashlib.sha256(f"export-job:{self.schema}:{job_id}".encode()).digest()
        return int.from_bytes(digest[:8], "big", signed=True)

    @contextmanager
    def holding(self, job_id: str) -> Iterator[None]:
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute("SELECT pg_advisory_lock(%s)", (self._key(job_id),))
            yield

    def orphaned(self, job_id: str) -> bool:
        with self._pool.connection() as conn:
            row = conn.execute("SELECT pg_try_advisory_lock(%s)", (self._key(job_id),)).fetchone()
            if row is None or not row[0]:
                return False
            conn.execute("SELECT pg_advisory_unlock(%s)", (self._key(job_id),))
            return True

    def close(self) -> None:
        self._pool.close()


class _StoppedError(Exception):
    """The runner was asked to stop in the middle of a job."""


@dataclass(frozen=True)
class ExportPolicy:
    """How long bundles are kept, and how many jobs a client may have waiting."""

    ttl: timedelta = timedelta(hours=24)
    per_client: int = 10


class ExportJobs:
    """Start, read and make export jobs (the service the exports routes call).

    ``directory`` holds the bundles (``<job id>.zip``) and the work directories of the jobs
    being made (``work/<job id>-<attempt>``). ``clock`` and ``on_progress`` are for tests (a
    fixed time; a hook that slows or interrupts a job).
    """

    def __init__(
        self,
        app: LedgerApplication,
        table: JobTable,
        directory: Path,
        *,
        verifier_keys: Sequence[str],
        report_settings: Mapping[str, Any],
        policy: ExportPolicy | None = None,
        clock: Callable[[], datetime] | None = None,
        on_progress: Callable[[str, str, int, int], None] | None = None,
    ) -> None:
        self.app = app
        self.table = table
        self.directory = directory
        self.verifier_keys = list(verifier_keys)
        self.report_settings = dict(report_settings)
        self.policy = policy or ExportPolicy()
        self._clock = clock or (lambda: datetime.now(UTC))
        self._on_progress = on_progress
        self.runner = f"{os.getpid()}-{secrets.token_hex(6)}"
        self.wake = threading.Event()
        directory.mkdir(parents=True, exist_ok=True)

    # -- asking -----------------------------------------------------------------------------

    def start(
        self,
        client_id: str,
        client: str,
        scope: Mapping[str, Any],
        purpose: str,
        answers_request: str | None = None,
    ) -> ExportJob:
        """Queue an export of ``scope`` (as :func:`ledger.operations.export_scope` makes it:
        a subject by pseudonym) for ``client``.

        Raises :class:`~ledger.export.ScopeNotFoundError` when the scope names a subject,
        recipient or incident the log holds nothing of (the message the CLI prints too),
        :class:`~ledger.export.ExportError` for a scope that is not one, and
        :class:`QueueFullError` when the client has its quota of jobs waiting or running.
        """
        try:
            Closure(scope)
        except ScopeError as exc:
            raise ExportError(str(exc)) from None
        if answers_request is not None and scope.get("kind") != "subject":
            raise ExportJobError("only a subject's bundle answers an access request")
        missing = missing_scope(self.app, scope)
        if missing is not None:
            raise ScopeNotFoundError(f"nothing to export: {missing}")
        job_id = str(uuid.uuid4())
        now = self._now()
        inserted = self.table.execute(
            "INSERT INTO export_jobs (job_id, client_id, client, scope, purpose, "
            "answers_request, state, created_at) SELECT ?, ?, ?, ?, ?, ?, ?, ? WHERE "
            "(SELECT count(*) FROM export_jobs WHERE client_id = ? AND state IN (?, ?)) < ? "
            "RETURNING job_id",
            (
                job_id,
                client_id,
                client,
                orjson.dumps(dict(scope), option=orjson.OPT_SORT_KEYS).decode(),
                purpose,
                answers_request,
                JobState.QUEUED,
                now,
                client_id,
                JobState.QUEUED,
                JobState.RUNNING,
                self.policy.per_client,
            ),
        )
        if not inserted:
            raise QueueFullError(self.policy.per_client)
        self.wake.set()
        return self._get(job_id)

    def pseudonym(self, subject_ref: str) -> str:
        """The pseudonym of a reference's current lifecycle, as a subject scope names it (a
        stand-in for an unknown or erased one, which :meth:`start` refuses)."""
        return self.app.subject_keys.pseudonym(subject_ref)

    def get(self, job_id: str, client_id: str, *, admin: bool = False) -> ExportJob:
        """The job, if ``client_id`` made it (or ``admin``); else :class:`JobNotFoundError`,
        the same for a job that does not exist and one of another client."""
        rows = self.table.execute(f"{_SELECT} WHERE job_id = ?", (job_id,))
        if not rows:
            raise JobNotFoundError(f"no export {job_id}")
        job = _job(rows[0])
        if job.client_id != client_id and not admin:
            raise JobNotFoundError(f"no export {job_id}")
        return self._as_seen(job)

    def bundle(self, job_id: str, client_id: str, *, admin: bool = False) -> tuple[ExportJob, Path]:
        """The job and its bundle's file, when it is done and not expired (else
        :class:`BundleNotReadyError`)."""
        job = self.get(job_id, client_id, admin=admin)
        path = self.bundle_path(job.job_id)
        if job.state != JobState.DONE or not path.is_file():
            raise BundleNotReadyError(JobState.EXPIRED if job.state == JobState.DONE else job.state)
        return job, path

    def bundle_path(self, job_id: str) -> Path:
        return self.directory / f"{uuid.UUID(job_id)}.zip"

    # -- making -----------------------------------------------------------------------------

    def run(self, stop: threading.Event, poll: float = 5.0) -> None:
        """Make queued bundles one at a time until ``stop`` is set (the API's runner thread).

        Each round first takes back orphaned jobs and expires old bundles; :meth:`start`
        wakes it at once, else it looks again every ``poll`` seconds.
        """
        while not stop.is_set():
            self.wake.clear()
            try:
                self.sweep()
                while not stop.is_set() and self.run_next(stop):
                    pass
            except Exception:
                logger.exception("export runner: a round failed; trying again")
            self.wake.wait(poll)

    def sweep(self) -> None:
        """Queue again the jobs whose runner died (fail those interrupted too often), and
        delete the bundles whose time is up."""
        rows = self.table.execute(
            "SELECT job_id, attempts, runner FROM export_jobs WHERE state = ?", (JobState.RUNNING,)
        )
        for job_id, attempts, runner in rows:
            if self.table.orphaned(str(job_id)):
                why = "interrupted by a restart"
                self._interrupted(str(job_id), int(attempts), str(runner), why)
        now = self._now()
        for (job_id,) in self.table.execute(
            "SELECT job_id FROM export_jobs WHERE state = ? AND expires_at <= ?",
            (JobState.DONE, now),
        ):
            self.bundle_path(str(job_id)).unlink(missing_ok=True)
            self.table.execute(
                "UPDATE export_jobs SET state = ? WHERE job_id = ? AND state = ?",
                (JobState.EXPIRED, job_id, JobState.DONE),
            )
        self._forget_erased()
        self._clear_work()

    def _forget_erased(self) -> None:
        """Delete the kept bundles of subjects erased since (their key is gone): a bundle
        opens the person's data, and erasure forgets the person. The job reads ``expired``."""
        kept = [
            (str(job_id), orjson.loads(scope))
            for job_id, scope in self.table.execute(
                "SELECT job_id, scope FROM export_jobs WHERE state = ?", (JobState.DONE,)
            )
        ]
        subjects = {job_id: s["subject"] for job_id, s in kept if s.get("kind") == "subject"}
        if not subjects:
            return
        live = self.app.subject_keys.keys_for(set(subjects.values()), create=False)
        for job_id, pseudonym in subjects.items():
            if pseudonym not in live:
                self.bundle_path(job_id).unlink(missing_ok=True)
                self.table.execute(
                    "UPDATE export_jobs SET state = ?, failure = ? WHERE job_id = ? AND state = ?",
                    (JobState.EXPIRED, "the subject was erased", job_id, JobState.DONE),
                )

    def run_next(self, stop: threading.Event | None = None) -> bool:
        """Take the oldest queued job and make its bundle; whether there was one."""
        claimed = self.table.execute(
            "UPDATE export_jobs SET state = ?, runner = ?, started_at = ?, attempts = "
            "attempts + 1, phase = NULL, done = 0, total = 0 WHERE state = ? AND job_id = "
            "(SELECT job_id FROM export_jobs WHERE state = ? ORDER BY created_at, job_id "
            "LIMIT 1) RETURNING job_id",
            (
                JobState.RUNNING,
                self.runner,
                self._now(),
                JobState.QUEUED,
                JobState.QUEUED,
            ),
        )
        if not claimed:
            return False
        job = self._get(str(claimed[0][0]))
        with self.table.holding(job.job_id):
            # A sweep elsewhere may have taken the job back between the claim and the hold.
            rows = self.table.execute(
                "SELECT job_id FROM export_jobs WHERE job_id = ? AND runner = ? AND state = ?",
                (job.job_id, self.runner, JobState.RUNNING),
            )
            if rows:
                self._make(job, stop or threading.Event())
        return True

    def _make(self, job: ExportJob, stop: threading.Event) -> None:
        work = self.directory / "work" / f"{job.job_id}-{job.attempts}"
        shutil.rmtree(work, ignore_errors=True)
        try:
            result, digest, size, held = self._write(job, work, stop)
            one = job.scope.get("kind") == "subject"
            record = AccessRecord(
                client=job.client,
                action=AccessAction.BUNDLE_EXPORT,
                scope=EXPORT_SCOPE,
                purpose=job.purpose,
                # A subject's bundle names them (sealed, as a mention); a bundle of many counts
                # the subjects its closure holds, and the whole log's is not counted.
                subjects=[job.scope["subject"]] if one else [],
                count=None if one else held,
                details={
                    "export_id": job.job_id,
                    "scope": job.scope_text,
                    "checkpoint_size": result.size,
                    "manifest_sha256": digest,
                },
            )
            # On the record before anyone can read it: no record, no bundle.
            self.app.record_access(record)
            os.replace(work / "bundle.zip", self.bundle_path(job.job_id))
            finished = self._clock()
            self._update(
                job,
                state=JobState.DONE,
                finished_at=format_time(finished),
                expires_at=format_time(finished + self.policy.ttl),
                manifest_sha256=digest,
                bytes=size,
                checkpoint_size=result.size,
                entries=result.entries,
            )
        except _StoppedError:
            self._interrupted(job.job_id, job.attempts, self.runner, "interrupted by a stop")
        except Exception as exc:
            if stop.is_set():  # the ledger may close under a stopping export: no failure
                self._interrupted(job.job_id, job.attempts, self.runner, "interrupted by a stop")
            else:
                self._failed(job, exc)
        finally:
            shutil.rmtree(work, ignore_errors=True)

    def _failed(self, job: ExportJob, exc: Exception) -> None:
        if isinstance(exc, LedgerError | BundleError | OSError):
            logger.warning("export %s failed: %s", job.job_id, exc)
            self._update(
                job, state=JobState.FAILED, finished_at=self._now(), failure=str(exc)[:1000]
            )
        else:
            logger.exception("export %s failed", job.job_id, exc_info=exc)
            self._update(
                job,
                state=JobState.FAILED,
                finished_at=self._now(),
                failure=f"internal error ({exc.__class__.__name__})",
            )

    def _write(
        self, job: ExportJob, work: Path, stop: threading.Event
    ) -> tuple[Any, str, int, int | None]:
        """Write and verify the bundle in ``work``; the export's result, the manifest's
        SHA-256, the zip's bytes and the number of subjects it holds (None: the whole log)."""
        seen: dict[str, Any] = {"phase": "", "done": 0, "at": 0.0}

        def progress(phase: str, done: int, total: int) -> None:
            if stop.is_set():
                raise _StoppedError
            if phase != seen["phase"]:
                seen.update(phase=phase, done=0)
            seen["done"] += done
            if self._on_progress is not None:
                self._on_progress(job.job_id, phase, seen["done"], total)
            now = time.monotonic()
            if now - seen["at"] >= PROGRESS_EVERY or seen["done"] == total:
                seen["at"] = now
                self.table.execute(
                    "UPDATE export_jobs SET phase = ?, done = ?, total = ? WHERE job_id = ? "
                    "AND runner = ?",
                    (phase, seen["done"], total, job.job_id, self.runner),
                )

        target = work / "bundle.zip"
        result = export_bundle(
            self.app,
            job.scope,
            target,
            verifier_keys=self.verifier_keys,
            report_settings=self.report_settings,
            progress=progress,
            jobs=1,  # in the server's runner thread: no worker processes of its own
        )
        progress("verify", 0, 1)
        trusted = [parse_verifier_key(key) for key in self.verifier_keys]
        verify_bundle(target, trusted, None, lambda _what, _count: progress("verify", 0, 1), jobs=1)
        progress("verify", 1, 1)
        with BundleFiles(target).open(MANIFEST) as manifest:
            text = manifest.read()
        digest = hashlib.sha256(text).hexdigest()
        return result, digest, target.stat().st_size, _subjects_in(json.loads(text))

    def _interrupted(self, job_id: str, attempts: int, runner: str, why: str) -> None:
        """Put a job whose making stopped back in the queue (or fail it after too many), if
        ``runner`` still has it."""
        shutil.rmtree(self.directory / "work" / f"{job_id}-{attempts}", ignore_errors=True)
        if attempts >= MAX_ATTEMPTS:
            self.table.execute(
                "UPDATE export_jobs SET state = ?, finished_at = ?, failure = ?, runner = NULL "
                "WHERE job_id = ? AND state = ? AND runner = ?",
                (
                    JobState.FAILED,
                    self._now(),
                    f"{why} ({attempts} times)",
                    job_id,
                    JobState.RUNNING,
                    runner,
                ),
            )
        else:
            self.table.execute(
                "UPDATE export_jobs SET state = ?, phase = NULL, done = 0, total = 0, "
                "runner = NULL WHERE job_id = ? AND state = ? AND runner = ?",
                (JobState.QUEUED, job_id, JobState.RUNNING, runner),
            )
            self.wake.set()

    def _clear_work(self) -> None:
        """Delete work directories no live job of this process is writing."""
        work = self.directory / "work"
        if not work.is_dir():
            return
        running = {
            f"{job_id}-{attempts}"
            for job_id, attempts in self.table.execute(
                "SELECT job_id, attempts FROM export_jobs WHERE state = ?", (JobState.RUNNING,)
            )
        }
        for path in work.iterdir():
            if path.name not in running:
                shutil.rmtree(path, ignore_errors=True)

    def _update(self, job: ExportJob, **values: Any) -> None:
        names = ", ".join(f"{name} = ?" for name in values)
        self.table.execute(
            f"UPDATE export_jobs SET {names}, runner = NULL WHERE job_id = ? AND runner = ?",  # noqa: S608 (our columns)
            (*values.values(), job.job_id, self.runner),
        )

    def _get(self, job_id: str) -> ExportJob:
        rows = self.table.execute(f"{_SELECT} WHERE job_id = ?", (job_id,))
        return self._as_seen(_job(rows[0]))

    def _as_seen(self, job: ExportJob) -> ExportJob:
        """A done job whose time is up reads as expired, swept or not yet."""
        if (
            job.state == JobState.DONE
            and job.expires_at is not None
            and job.expires_at <= self._now()
        ):
            return replace(job, state=JobState.EXPIRED)
        return job

    def _now(self) -> str:
        return format_time(self._clock())

    def close(self) -> None:
        self.table.close()


def _job(row: Row) -> ExportJob:
    values = dict(zip(_COLUMNS[:-1], row, strict=True))
    values["scope"] = orjson.loads(values["scope"])
    for name in ("done", "total", "attempts"):
        values[name] = int(values[name])
    for name in ("bytes", "checkpoint_size", "entries"):
        values[name] = None if values[name] is None else int(values[name])
    return ExportJob(**values)


def open_job_table(database_url: str | None, schema: str, data_dir: Path) -> JobTable:
    """The jobs table beside the ledger: ``exports.sqlite3`` in the data directory, or the
    ledger's PostgreSQL schema."""
    if database_url is None:
        return SQLiteJobTable(data_dir / "exports.sqlite3")
    return PostgresJobTable(database_url, schema)


__all__ = [
    "BundleNotReadyError",
    "ExportJob",
    "ExportJobError",
    "ExportJobs",
    "ExportPolicy",
    "JobNotFoundError",
    "JobState",
    "QueueFullError",
    "open_job_table",
]


def _subjects_in(manifest: Any) -> int | None:
    """The subjects a bundle's closure holds (``subject:`` names of its manifest), or None
    for a bundle of the whole log (its closure names nothing: every entry is in it)."""
    closure = manifest.get("closure") if isinstance(manifest, dict) else None
    if not isinstance(closure, list) or manifest.get("scope", {}).get("kind") == "all":
        return None
    return sum(1 for name in closure if isinstance(name, str) and name.startswith(SUBJECT_PREFIX))
