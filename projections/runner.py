"""Runs read models: catch each one up from its recorded position, then follow the log.

Positions live in ``proj_positions`` (name, version tag, position, error), written in the same
transaction as the rows of the events they cover, so a crash at any moment leaves every
projection exactly at a batch boundary: no event is applied twice or skipped. A projection whose
version tag changed is dropped and rebuilt from the first event. Read models that read another's
tables (:attr:`Projection.requires`) form a *group* with it: every page goes to the whole group
in one transaction (the read ones first), their positions stay equal (one row each, always
written together), and they are rebuilt, dropped and stopped together. An event a projection
cannot process stops that projection (and its group), with the event named in its status and in
``proj_failures``; the others go on. A follower tries a stopped projection again, backing off
from one second to a minute, so a passing fault (a lost database connection) heals by itself
while one that stays (a bug) stays visible without a busy loop.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from ledger.application import LedgerApplication
from projections.base import (
    CorrectableProjection,
    LoggedEvent,
    PoisonEventError,
    Projection,
    ProjectionError,
    ReadModelFailure,
    ReadModelStoppedError,
    corrected_event,
    dumps,
    error_message,
    parse_utc,
)
from projections.database import ProjectionDatabase, Sql, marks

POSITIONS = (
    "CREATE TABLE IF NOT EXISTS proj_positions ("
    "name TEXT PRIMARY KEY, version TEXT NOT NULL, position BIGINT NOT NULL, "
    "error TEXT, error_seq BIGINT, updated_at TEXT NOT NULL)"
)
CORRECTIONS = (
    "CREATE TABLE IF NOT EXISTS proj_corrections ("
    "projection TEXT NOT NULL, event_id TEXT NOT NULL, seq BIGINT NOT NULL, "
    "fields TEXT NOT NULL, PRIMARY KEY (projection, seq))"
)
FAILURES = (
    "CREATE TABLE IF NOT EXISTS proj_failures ("
    "name TEXT PRIMARY KEY, seq BIGINT NOT NULL, event_type TEXT NOT NULL, "
    "error_class TEXT NOT NULL, message TEXT NOT NULL, first_failed_at TEXT NOT NULL, "
    "last_failed_at TEXT NOT NULL, attempts BIGINT NOT NULL)"
)
"""The read models stopped at an event, one row each, written with the position's ``error``
and deleted in the transaction that moves the read model past it (or by a rebuild)."""
BOOKKEEPING = frozenset({"proj_positions", "proj_failures"})
"""The runner's own tables: not rows of a read model."""
CORRECTION = "correction.recorded"
PAGE = 5000
"""Events a page holds at most: one transaction, each table written once (a rebuild of 20,000
events: 500 a page cost about a fifth more time than 2,000, in statements and commits; 2,000
about 7% more CPU than 5,000, in six pairs on each backend: docs/performance.md, "Read models
from zero (round two)"). A page's events and rows are held in memory until it commits (some
megabytes at 5,000)."""
RETRY_FIRST = 1.0
"""Seconds a follower waits before it tries a stopped read model again; doubled after each
failed try, up to :data:`RETRY_MAX`."""
RETRY_MAX = 60.0

logger = logging.getLogger("consent_ledger.projections")


@dataclass(frozen=True)
class ProjectionStatus:
    name: str
    version: str
    position: int
    head: int
    lag_events: int
    lag_seconds: float
    error: str | None
    failure: ReadModelFailure | None = None
    """Where and why it stopped, when it did (``error`` says it in one line)."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "position": self.position,
            "head": self.head,
            "lag_events": self.lag_events,
            "lag_seconds": self.lag_seconds,
            "error": self.error,
            "failure": None if self.failure is None else self.failure.as_dict(),
        }


@dataclass
class _Retry:
    """When a follower tries a stopped read model again."""

    at: float
    delay: float
    recorded: bool
    """Stopped at an event (in ``proj_failures``), rather than by an error of no event's."""
    seen: set[tuple[int, str, str]] = field(default_factory=set)
    """The failures already reported (seq, error class, message): a retry that fails the same
    way is not reported again."""


class ProjectionRunner:
    def __init__(
        self,
        app: LedgerApplication,
        db: ProjectionDatabase,
        projections: Sequence[Projection],
        *,
        batch_size: int = PAGE,
        poll_interval: float = 0.5,
        retry_first: float = RETRY_FIRST,
        retry_max: float = RETRY_MAX,
    ) -> None:
        self.app = app
        self.db = db
        self.projections = _with_required(projections)
        """By name, each after the read models it requires (the order pages apply them in)."""
        self._rank = {name: rank for rank, name in enumerate(self.projections)}
        self._groups = _groups(self.projections)
        """Each read model's group: itself and those it requires or that require it, in rank
        order (a read model that requires none and is required by none is alone)."""
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self.retry_first = retry_first
        self.retry_max = retry_max
        self._retries: dict[str, _Retry] = {}
        self._failures: tuple[float, dict[str, ReadModelFailure]] | None = None
        """The last reading of ``proj_failures`` (monotonic time, rows), for :meth:`failure`."""
        self._wake = threading.Event()
        self._ends: dict[str, int] = {}
        """Where the last page this runner committed for a projection ended: if the next one
        starts there, what the projection keeps in memory still matches its tables."""
        with db.transaction() as sql:
            db.lock_schema(sql)
            sql.execute(POSITIONS)
            sql.execute(CORRECTIONS)
            sql.execute(FAILURES)
        for group in dict.fromkeys(self._groups.values()):
            self._prepare(group)

    def _prepare(self, group: tuple[str, ...]) -> None:
        """Create a group's tables. When the version tag of one of them changed, one has no
        position yet, or their positions differ (a database of an earlier version, where they
        were not a group): drop them all and start them all again from the first event."""
        members = [self.projections[name] for name in group]
        with self.db.transaction() as sql:
            self.db.lock_schema(sql)
            rows = {
                str(name): (str(version), int(position))
                for name, version, position in sql.execute(
                    "SELECT name, version, position FROM proj_positions "
                    f"WHERE name IN ({marks(len(group))})",
                    group,
                )
            }
            fresh = (
                any(rows.get(p.name, ("", 0))[0] != p.version_tag() for p in members)
                or len({position for _, position in rows.values()}) > 1
            )
            if fresh:
                for projection in members:
                    self._forget(sql, projection)
            for projection in members:
                projection.create(sql)
                if fresh:
                    sql.execute(
                        "INSERT INTO proj_positions (name, version, position, updated_at) "
                        "VALUES (?, ?, 0, ?)",
                        (projection.name, projection.version_tag(), _now()),
                    )

    def _forget(self, sql: Sql, projection: Projection) -> None:
        self._ends.pop(projection.name, None)
        projection.drop(sql)
        sql.execute("DELETE FROM proj_positions WHERE name = ?", (projection.name,))
        sql.execute("DELETE FROM proj_corrections WHERE projection = ?", (projection.name,))
        sql.execute("DELETE FROM proj_failures WHERE name = ?", (projection.name,))
        self._retries.pop(projection.name, None)
        self._failures = None

    def projection(self, name: str) -> Projection:
        try:
            return self.projections[name]
        except KeyError:
            known = ", ".join(sorted(self.projections))
            raise ProjectionError(f"no projection {name!r} (there are: {known})") from None

    def group(self, name: str) -> tuple[str, ...]:
        """The read models that move with ``name``: rebuilding, catching up or stopping one of
        them does it to all (``name`` alone when it is in no group)."""
        self.projection(name)
        return self._groups[name]

    def _with_groups(self, names: Sequence[str] | None) -> list[Projection]:
        """The named read models (all when None) and their groups', in rank order."""
        wanted = {m for n in (names or list(self.projections)) for m in self.group(n)}
        return [p for name, p in self.projections.items() if name in wanted]

    # -- positions -----------------------------------------------------------------------------

    def position(self, name: str) -> int:
        rows = self.db.query("SELECT position FROM proj_positions WHERE name = ?", (name,))
        return int(rows[0][0]) if rows else 0

    def status(self) -> list[ProjectionStatus]:
        head = self.app.head()
        head_time = self._recorded_at(head)
        result = []
        failures = self.failures()
        for name, version, position, error in self.db.query(
            "SELECT name, version, position, error FROM proj_positions ORDER BY name"
        ):
            if name not in self.projections:
                continue
            lag_seconds = 0.0
            if position < head and head_time is not None:
                behind = self._recorded_at(position + 1)
                if behind is not None:
                    lag_seconds = max(0.0, (head_time - behind).total_seconds())
            result.append(
                ProjectionStatus(
                    name,
                    version,
                    int(position),
                    head,
                    head - int(position),
                    lag_seconds,
                    error,
                    failures.get(name),
                )
            )
        return result

    def failures(self, max_age: float = 0.0) -> dict[str, ReadModelFailure]:
        """The read models stopped at an event, by name. ``max_age``: a reading that many
        seconds old will do (a question that asks on every request need not query each time;
        what this runner records or clears is seen at once)."""
        cached = self._failures
        if cached is not None and time.monotonic() - cached[0] <= max_age:
            return cached[1]
        read_at = time.monotonic()
        found = {
            str(row[0]): ReadModelFailure(
                name=str(row[0]),
                seq=int(row[1]),
                event_type=str(row[2]),
                error_class=str(row[3]),
                message=str(row[4]),
                first_failed_at=str(row[5]),
                last_failed_at=str(row[6]),
                attempts=int(row[7]),
            )
            for row in self.db.query(
                "SELECT name, seq, event_type, error_class, message, first_failed_at, "
                "last_failed_at, attempts FROM proj_failures ORDER BY name"
            )
            if row[0] in self.projections
        }
        self._failures = (read_at, found)
        return found

    def failure(self, name: str, max_age: float = 0.0) -> ReadModelFailure | None:
        """Where and why read model ``name`` stopped, or None while it follows the log."""
        return self.failures(max_age).get(name)

    def _recorded_at(self, seq: int) -> datetime | None:
        record = self.app.ledger.get_record(seq) if seq >= 1 else None
        if record is None:
            return None
        return parse_utc(LoggedEvent.from_body(record.seq, record.body).recorded_at)

    # -- catching up ---------------------------------------------------------------------------

    def catch_up(
        self, names: Sequence[str] | None = None, progress: Callable[[int], None] | None = None
    ) -> int:
        """Bring projections to the head of the log; the number of events read (one projection
        reading one event counts one, as ``progress`` is told)."""
        read, failures, _ = self._catch_up(names, progress)
        if failures:
            raise failures[0]  # the others still caught up
        return read

    def catch_up_each(self, names: Sequence[str] | None = None) -> list[PoisonEventError]:
        """Like :meth:`catch_up`, but the projections stopped at an event are returned, not
        raised: the others are at the head of the log either way."""
        return self._catch_up(names, None)[1]

    def _catch_up(
        self,
        names: Sequence[str] | None,
        progress: Callable[[int], None] | None,
        *,
        isolate: bool = False,
    ) -> tuple[int, list[PoisonEventError], dict[str, Exception]]:
        """Projections at the same position go together: the log is read and decoded once for
        them, and each page of it is applied to all of them in one transaction. The lowest
        group reads up to the next one's position, where the two become one.

        ``isolate``: an error of no event's (the database went away) stops only the group it
        struck (returned by name), not the others; otherwise it is raised."""
        pending = self._with_groups(names)
        failures: list[PoisonEventError] = []
        troubles: dict[str, Exception] = {}
        read = 0
        while pending:
            positions = self._positions([p.name for p in pending])
            head = self.app.head()
            behind = [p for p in pending if positions[p.name] < head]
            if not behind:
                break
            start = min(positions[p.name] for p in behind)
            group = [p for p in behind if positions[p.name] == start]
            ahead = [positions[p.name] for p in behind if positions[p.name] > start]
            stop = min(ahead, default=head)
            try:
                with _collector_paused():
                    moved, failed, troubled = self._advance(group, start, stop)
            except Exception as exc:
                troubled = {p.name: exc for p in group}
                moved, failed = 0, []
            if troubled:
                if not isolate:
                    raise next(iter(troubled.values()))
                for name in troubled:
                    self._ends.pop(name, None)
                troubles.update(troubled)
                pending = [p for p in pending if p.name not in troubles]
            read += moved
            if progress is not None and moved:
                progress(moved)
            failures += failed
            stopped = {f.projection for f in failed}
            pending = [p for p in pending if p.name not in stopped]
        return read, failures, troubles

    def _positions(self, names: Sequence[str]) -> dict[str, int]:
        rows = self.db.query(
            f"SELECT name, position FROM proj_positions WHERE name IN ({marks(len(names))})", names
        )
        found = {str(name): int(position) for name, position in rows}
        return {name: found.get(name, 0) for name in names}

    def _advance(
        self, group: Sequence[Projection], start: int, stop: int
    ) -> tuple[int, list[PoisonEventError], dict[str, Exception]]:
        """Apply the next page after ``start`` (up to ``stop``) to ``group``; the events read,
        counted per projection, the projections it stopped at an event, and those an error of
        no event's struck when the group was split (a single projection's is raised)."""
        group = sorted(group, key=lambda p: self._rank[p.name])  # the required ones first
        topics = sorted(set().union(*(p.topics for p in group)) | {CORRECTION})
        notifications = self.app.ledger.select_notifications(
            start=start,
            limit=self.batch_size,
            stop=stop,
            topics=topics,
            inclusive_of_start=False,
        )
        # Fewer than a page: nothing else of interest up to ``stop``.
        end = notifications[-1].id if len(notifications) == self.batch_size else stop
        mentions = self.app.mentions_opened
        events = [LoggedEvent.from_body(n.id, n.state, mentions) for n in notifications]
        try:
            applied = self._apply_page(group, start, end, events)
        except Exception as exc:
            for projection in group:  # what they keep in memory has the failed page in it
                self._ends.pop(projection.name, None)
            groups = list(dict.fromkeys(self._groups[p.name] for p in group))
            if len(groups) > 1:
                # Which group failed? Each alone: the others go on, the failing one stops.
                read, failures, troubles = 0, list[PoisonEventError](), dict[str, Exception]()
                for names in groups:
                    alone = [self.projections[name] for name in names]
                    try:
                        moved, failed, _ = self._advance(alone, start, stop)
                    except Exception as trouble:
                        troubles.update(dict.fromkeys(names, trouble))
                        continue
                    read, failures = read + moved, failures + failed
                return read, failures, troubles
            poison = exc if isinstance(exc, PoisonEventError) else None
            if poison is None:
                try:
                    poison = self._find_poison(group, events)
                except Exception:  # in begin(), or the database went away: exc says enough
                    poison = None
            if poison is None and events:
                # No event of the page fails alone: it stops before the page, at its first
                # event, with the page's error (tried again, it heals if it was passing).
                poison = PoisonEventError(group[0].name, events[0].seq, events[0].type, exc)
            if poison is None:
                raise  # no event to name (the database went away): nothing was written
            # A group stops together; the read model that failed comes first.
            stopped = [
                poison,
                *(poison.stopping(p.name) for p in group if p.name != poison.projection),
            ]
            self._record_error(stopped)
            return 0, stopped, {}
        return (end - start) * len(group) if applied else 0, [], {}

    def _apply_page(
        self, group: Sequence[Projection], start: int, end: int, events: Sequence[LoggedEvent]
    ) -> bool:
        """One transaction: the page's rows of every projection in ``group``, and their positions
        moved to ``end``. False when another runner moved one of them meanwhile (nothing done)."""
        names = sorted(p.name for p in group)
        with self.db.transaction() as sql:
            claimed = self._claim(sql, names)
            if any(position != start for position, _ in claimed):
                return False  # another runner moved it meanwhile: read again
            for projection in group:
                if self._ends.pop(projection.name, None) != start:
                    projection.reset(empty=start == 0)
                wanted = _read_types(projection)
                own = [e for e in events if e.type in wanted]
                projection.begin(sql, own)
                for event in own:
                    self._apply(projection, sql, event)
                projection.flush(sql)
            sql.execute(
                "UPDATE proj_positions SET position = ?, error = NULL, error_seq = NULL, "
                f"updated_at = ? WHERE name IN ({marks(len(names))})",
                (end, _now(), *names),
            )
            if any(error is not None for _, error in claimed):  # past the event it stopped at
                sql.execute(f"DELETE FROM proj_failures WHERE name IN ({marks(len(names))})", names)
                self._failures = None
        self._ends.update(dict.fromkeys(names, end))  # committed
        return True

    def _find_poison(
        self, group: Sequence[Projection], events: Sequence[LoggedEvent]
    ) -> PoisonEventError | None:
        """The event a failed page failed on: the page again, written one event at a time (to
        each read model of the group in turn) in a transaction that is rolled back. None when
        it goes through this time."""
        owns = []
        for projection in group:
            projection.reset(empty=False)
            wanted = _read_types(projection)
            owns.append({e.seq for e in events if e.type in wanted})
        try:
            with self.db.transaction() as sql:
                for projection, own in zip(group, owns, strict=True):
                    projection.begin(sql, [e for e in events if e.seq in own])
                for event in events:
                    for projection, own in zip(group, owns, strict=True):
                        if event.seq not in own:
                            continue
                        self._apply(projection, sql, event)
                        try:
                            projection.flush(sql)
                        except Exception as exc:
                            raise PoisonEventError(
                                projection.name, event.seq, event.type, exc
                            ) from exc
                raise _RollbackError
        except PoisonEventError as exc:
            return exc
        except _RollbackError:
            return None

    def _record_error(self, stopped: Sequence[PoisonEventError]) -> None:
        """The failures (a group's read models, stopped together), in ``proj_positions.error``
        (one line) and ``proj_failures`` (its parts); a failure again on the same event counts
        one more attempt."""
        now = _now()
        with self.db.transaction() as sql:
            for exc in stopped:
                self._record_one(sql, exc, now)
        self._failures = None

    def _record_one(self, sql: Sql, exc: PoisonEventError, now: str) -> None:
        sql.execute(
            "UPDATE proj_positions SET error = ?, error_seq = ?, updated_at = ? WHERE name = ?",
            (str(exc), exc.seq, now, exc.projection),
        )
        sql.execute(
            "INSERT INTO proj_failures (name, seq, event_type, error_class, message, "
            "first_failed_at, last_failed_at, attempts) VALUES (?, ?, ?, ?, ?, ?, ?, 1) "
            "ON CONFLICT (name) DO UPDATE SET "
            "attempts = CASE WHEN proj_failures.seq = excluded.seq "
            "THEN proj_failures.attempts + 1 ELSE 1 END, "
            "first_failed_at = CASE WHEN proj_failures.seq = excluded.seq "
            "THEN proj_failures.first_failed_at ELSE excluded.first_failed_at END, "
            "seq = excluded.seq, event_type = excluded.event_type, "
            "error_class = excluded.error_class, message = excluded.message, "
            "last_failed_at = excluded.last_failed_at",
            (exc.projection, exc.seq, exc.type_name, exc.error_class, exc.message, now, now),
        )

    def _claim(self, sql: Sql, names: Sequence[str]) -> list[tuple[int, str | None]]:
        """The positions and errors, locked until this transaction ends (in name order, so two
        runners never wait for each other): one runner per page, even when several processes
        run the same projections."""
        lock = " FOR UPDATE" if self.db.dialect == "postgres" else ""
        rows = sql.execute(
            f"SELECT position, error FROM proj_positions WHERE name IN ({marks(len(names))}) "
            f"ORDER BY name{lock}",
            names,
        )
        return [(int(r[0]), r[1]) for r in rows]

    def _apply(self, projection: Projection, sql: Sql, event: LoggedEvent) -> None:
        try:
            if event.type != CORRECTION:
                projection.process(sql, event)
                return
            if not isinstance(projection, CorrectableProjection):
                return
            original = self._corrected_original(event)
            if original is None or original.type not in projection.topics:
                return
            # Corrections of one event build on each other: the second corrects the first.
            event_id = event.data["corrects_event_id"]
            previous = original
            for (fields,) in sql.execute(
                "SELECT fields FROM proj_corrections WHERE projection = ? AND event_id = ? "
                "ORDER BY seq",
                (projection.name, event_id),
            ):
                previous = corrected_event(previous, orjson.loads(fields))
            fields = event.data.get("corrected_fields", {})
            projection.correct(sql, previous, corrected_event(previous, fields))
            sql.execute(
                "INSERT INTO proj_corrections (projection, event_id, seq, fields) "
                "VALUES (?, ?, ?, ?)",
                (projection.name, event_id, event.seq, dumps(fields)),
            )
        except Exception as exc:  # a poison event: name it, never skip it
            raise PoisonEventError(projection.name, event.seq, event.type, exc) from exc

    def _corrected_original(self, correction: LoggedEvent) -> LoggedEvent | None:
        """The event ``correction`` corrects, as first logged: read from the log once for
        every read model of the page (two round trips on PostgreSQL)."""
        return correction.derived("runner.corrected_original", self._read_original)

    def _read_original(self, correction: LoggedEvent) -> LoggedEvent | None:
        event_id = correction.data["corrects_event_id"]
        claim = self.app.ledger.select_claims([event_id]).get(event_id)
        record = None if claim is None else self.app.ledger.get_record(claim.seq)
        if record is None:
            return None
        return LoggedEvent.from_body(record.seq, record.body, self.app.mentions_opened)

    def rebuild(
        self, names: Sequence[str] | None = None, progress: Callable[[int], None] | None = None
    ) -> int:
        """Drop and rebuild from the first event; the ledger may go on accepting events."""
        chosen = self._with_groups(names)
        groups = list(dict.fromkeys(self._groups[p.name] for p in chosen))
        for group in groups:
            with self.db.transaction() as sql:
                self.db.lock_schema(sql)
                for name in group:
                    self._forget(sql, self.projections[name])
            self._prepare(group)
        return self.catch_up([p.name for p in chosen], progress)

    # -- following -----------------------------------------------------------------------------

    def wait_for(self, seq: int, timeout: float, names: Sequence[str] | None = None) -> bool:
        """Read your writes: True once every named projection has processed event ``seq``,
        False when ``timeout`` passes first. :class:`ReadModelStoppedError` at once when one of
        them is stopped at an event up to ``seq``: it cannot get there until it is fixed."""
        deadline = time.monotonic() + timeout
        wanted = list(names or self.projections)
        while True:
            positions = self._positions(wanted)
            behind = [name for name in wanted if positions[name] < seq]
            if not behind:
                return True
            failures = self.failures()
            for name in behind:
                failure = failures.get(name)
                if failure is not None and failure.seq <= seq:
                    raise ReadModelStoppedError(failure)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            time.sleep(min(0.05, remaining))

    def follow(self, stop: threading.Event, on_error: Callable[[PoisonEventError], None]) -> None:
        """Catch up, then keep up until ``stop`` is set (a notification wakes it early).

        Each projection follows on its own: one stopped at an event waits, backing off, and
        is tried again (``on_error`` is told of each new failure, not of a retry that fails the
        same way); the others go on. An error of no event's (the database went away) backs off
        the projections it struck the same way; nothing ends the loop but ``stop``."""
        pause = self.retry_first
        with self._wakeups(stop):
            while not stop.is_set():
                try:
                    self._follow_step(on_error)
                    pause = self.retry_first
                except Exception as exc:  # reading positions or the log: the database went away
                    logger.warning(
                        "read models cannot read the log for now, tried again in %.0f s: %s: %s",
                        pause,
                        type(exc).__name__,
                        error_message(exc),
                    )
                    stop.wait(pause)
                    pause = min(pause * 2, self.retry_max)
                self._wake.wait(self.poll_interval)
                self._wake.clear()

    def _follow_step(self, on_error: Callable[[PoisonEventError], None]) -> None:
        """One look at the log for every projection not waiting to be tried again."""
        if any(retry.recorded for retry in self._retries.values()):
            # Rebuilt or moved on by another process meanwhile: no need to wait.
            recorded = self.failures()
            for name, retry in list(self._retries.items()):
                if retry.recorded and name not in recorded:
                    del self._retries[name]
        now = time.monotonic()
        due = [
            name
            for name in self.projections
            if all(
                member not in self._retries or self._retries[member].at <= now
                for member in self._groups[name]
            )
        ]
        if not due:
            return
        _, failures, troubles = self._catch_up(due, None, isolate=True)
        stopped = {exc.projection for exc in failures} | set(troubles)
        for name in due:
            if name not in stopped and self._retries.pop(name, None) is not None:
                logger.info("read model %s follows the log again", name)
        for exc in failures:
            if self._back_off(exc.projection, (exc.seq, exc.error_class, exc.message), True):
                on_error(exc)
        for name, trouble in troubles.items():
            key = (0, type(trouble).__name__, error_message(trouble))
            if self._back_off(name, key, False):
                logger.warning(
                    "read model %s cannot go on for now, tried again shortly: %s: %s",
                    name,
                    key[1],
                    key[2],
                )

    def _back_off(self, name: str, failure: tuple[int, str, str], recorded: bool) -> bool:
        """Schedule the next try of ``name``; True when this failure is new to this runner."""
        retry = self._retries.get(name)
        delay = self.retry_first if retry is None else min(retry.delay * 2, self.retry_max)
        seen = set() if retry is None else retry.seen
        self._retries[name] = _Retry(time.monotonic() + delay, delay, recorded, seen)
        new = failure not in seen
        seen.add(failure)
        return new

    def retrying(self) -> dict[str, float]:
        """The projections this runner's :meth:`follow` waits to try again, and in how many
        seconds it will."""
        now = time.monotonic()
        return {name: max(0.0, retry.at - now) for name, retry in self._retries.items()}

    def wake(self) -> None:
        """Look at the log now (a notification arrived, or ``follow`` should see its stop)."""
        self._wake.set()

    def _wakeups(self, stop: threading.Event) -> _Listener:
        return _Listener(self, stop)


class _RollbackError(Exception):
    """Ends a transaction that must leave nothing behind."""


class _Listener:
    """On PostgreSQL, LISTEN for the ledger's commits; the poll covers a lost notification."""

    def __init__(self, runner: ProjectionRunner, stop: threading.Event) -> None:
        self.runner = runner
        self.stop = stop
        self.thread: threading.Thread | None = None

    def __enter__(self) -> _Listener:
        channel = getattr(self.runner.app.ledger, "channel", None)
        url = getattr(self.runner.db, "url", None)
        if channel and url:
            self.thread = threading.Thread(
                target=self._listen, args=(url, channel), daemon=True, name="projection-listen"
            )
            self.thread.start()
        return self

    def _listen(self, url: str, channel: str) -> None:
        import psycopg
        from psycopg import sql

        while not self.stop.is_set():
            try:
                with psycopg.connect(url, autocommit=True) as conn:
                    conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
                    while not self.stop.is_set():
                        for _ in conn.notifies(timeout=0.5, stop_after=1):
                            self.runner.wake()
            except psycopg.Error:
                self.stop.wait(1.0)  # the poll keeps projections moving meanwhile

    def __exit__(self, *exc: object) -> None:
        if self.thread is not None:
            self.stop.set()
            self.thread.join()


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Python's cycle collector held off for one page, and let run after it when due.

    A page allocates tens of thousands of objects (decoded events, rows, decisions) and frees
    them by reference counting; none is in a cycle. The collector's passes during a page, set
    off by the allocations, find nothing and walk what the read models keep from page to page
    each time: about a tenth of a rebuild's CPU (docs/performance.md, "Read models from zero
    (round two)"). Left alone when something else turned the collector off; another thread's
    garbage waits at most a page."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _read_types(projection: Projection) -> frozenset[str]:
    """The event types ``projection`` is given: its topics and corrections."""
    return projection.topics | {CORRECTION}


def _with_required(projections: Sequence[Projection]) -> dict[str, Projection]:
    """``projections`` by name, each after those it requires (made when not given), and each
    bound to the instances it requires."""
    given = {p.name: p for p in projections}
    ordered: dict[str, Projection] = {}
    visiting: set[str] = set()

    def visit(projection: Projection) -> None:
        if projection.name in ordered:
            return
        if projection.name in visiting:
            raise ProjectionError(f"read model {projection.name} requires itself")
        visiting.add(projection.name)
        for kind in projection.requires:
            required = given.get(kind.name)
            if required is None:
                required = given[kind.name] = kind()
            visit(required)
        ordered[projection.name] = projection

    for projection in projections:
        visit(projection)
    for projection in ordered.values():
        projection.bind({kind.name: ordered[kind.name] for kind in projection.requires})
    return ordered


def _groups(projections: Mapping[str, Projection]) -> dict[str, tuple[str, ...]]:
    """Each read model's group (see :attr:`Projection.requires`), its members in the order of
    ``projections``."""
    root = {name: name for name in projections}

    def find(name: str) -> str:
        while root[name] != name:
            name = root[name]
        return name

    for projection in projections.values():
        for kind in projection.requires:
            root[find(kind.name)] = find(projection.name)
    members: dict[str, list[str]] = {}
    for name in projections:
        members.setdefault(find(name), []).append(name)
    return {name: tuple(members[find(name)]) for name in projections}


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def table_digest(db: ProjectionDatabase, tables: Sequence[str] | None = None) -> str:
    """SHA-256 over every row of the read models' tables, in a stable order."""
    import hashlib

    import orjson

    digest = hashlib.sha256()
    for table in tables or [t for t in db.table_names() if t not in BOOKKEEPING]:
        rows = db.query(f"SELECT * FROM {table}")
        digest.update(table.encode() + b"\n")
        for row in sorted(orjson.dumps(list(row), default=str) for row in rows):
            digest.update(row + b"\n")
    return digest.hexdigest()
