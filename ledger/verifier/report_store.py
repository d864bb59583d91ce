"""The part of a report's context that grows with the log, kept in a temporary SQLite file.

A report needs, for each subject, the consent decisions and notes on each purpose, the
reference it shows for them and their latest age attestation. Held in dictionaries, that is
about 200 bytes a subject (258 MB for a log of 1.2 M events); here it is rows of a temporary
SQLite database, so the report's memory does not grow with the log: SQLite's page cache is
bounded (:data:`CACHE_KIB`), and rows are written in batches of :data:`BATCH`.

The store is written during the report's context pass (:meth:`ConsentStore.decide`,
:meth:`ConsentStore.note`, :meth:`ConsentStore.see_ref`, :meth:`ConsentStore.see_age`, each
buffered; what a read gives does not depend on the order they came in, so a pass in parts
writes a store per part, which :meth:`ConsentStore.merge` joins), sealed once
(:meth:`ConsentStore.seal`: the rest of the buffer written, the indexes built), then only
read, from this process or others (each opens the file with :meth:`ConsentStore.reader`). What
each read gives is what the dictionaries gave: the decisions of a subject and purpose in log
order, the first reference seen (by seq), the latest age by (attested at, seq), subjects and
purposes in sorted order (SQLite compares text as UTF-8 bytes, which sorts as Python sorts
``str``).

Standard library only.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator
from itertools import groupby
from pathlib import Path
from typing import Any

from ledger.verifier.consent_rules import Age, Decision, Note

BATCH = 20_000
"""Rows buffered before they are written."""
CACHE_KIB = 16_384
"""SQLite's page cache, per connection."""

_SCHEMA = """
CREATE TABLE decision (
    subject, purpose, seq, occurred_at, decision, policy_version, expires_at, guardian
);
CREATE TABLE note (subject, purpose, seq, occurred_at, kind, policy_version, details);
CREATE TABLE ref (subject PRIMARY KEY, ref, seq) WITHOUT ROWID;
CREATE TABLE age (subject PRIMARY KEY, age, attested_at, seq) WITHOUT ROWID;
"""
"""Columns without a type, so that SQLite keeps each value as given (no affinity)."""
_INDEXES = """
CREATE INDEX decision_key ON decision (subject, purpose, seq);
CREATE INDEX note_key ON note (subject, purpose, seq);
"""
_DECIDE = "INSERT INTO decision VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
_NOTE = "INSERT INTO note VALUES (?, ?, ?, ?, ?, ?, ?)"
_REF = (
    "INSERT INTO ref VALUES (?, ?, ?) ON CONFLICT (subject) DO UPDATE SET "
    "ref = excluded.ref, seq = excluded.seq WHERE excluded.seq < ref.seq"
)
"""The reference of the first event (by seq) that showed one stands."""
_AGE = (
    "INSERT INTO age VALUES (?, ?, ?, ?) ON CONFLICT (subject) DO UPDATE SET "
    "age = excluded.age, attested_at = excluded.attested_at, seq = excluded.seq "
    "WHERE (excluded.attested_at, excluded.seq) > (age.attested_at, age.seq)"
)
"""The latest age attestation, by (attested at, seq), stands."""
_MERGE = (
    "INSERT INTO decision SELECT * FROM part.decision",
    "INSERT INTO note SELECT * FROM part.note",
    "INSERT INTO ref SELECT * FROM part.ref WHERE true ON CONFLICT (subject) DO UPDATE SET "
    "ref = excluded.ref, seq = excluded.seq WHERE excluded.seq < ref.seq",
    "INSERT INTO age SELECT * FROM part.age WHERE true ON CONFLICT (subject) DO UPDATE SET "
    "age = excluded.age, attested_at = excluded.attested_at, seq = excluded.seq "
    "WHERE (excluded.attested_at, excluded.seq) > (age.attested_at, age.seq)",
)
"""A part's rows into the whole, as :data:`_REF` and :data:`_AGE` would add them (``WHERE
true``: SQLite's upsert after a SELECT needs it)."""
_DECISIONS = (
    "SELECT seq, occurred_at, decision, policy_version, expires_at, guardian FROM decision "
    "WHERE subject = ? AND purpose = ? ORDER BY seq"
)
_DECISION_ROWS = (
    "SELECT subject, purpose, seq, occurred_at, decision, policy_version, expires_at, guardian "
    "FROM decision ORDER BY subject, purpose, seq"
)
_NOTE_ROWS = (
    "SELECT subject, purpose, seq, occurred_at, kind, policy_version, details FROM note "
    "ORDER BY subject, purpose, seq"
)

SubjectConsent = dict[str, tuple[tuple[Decision, ...], tuple[Note, ...]]]
"""Purpose -> the subject's decisions and notes on it, each in log order."""


def _connect(path: Path) -> sqlite3.Connection:
    connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    connection.execute(f"PRAGMA cache_size = -{CACHE_KIB}")
    connection.execute("PRAGMA temp_store = FILE")
    return connection


class ConsentStore:
    """The consent context of one report, in the SQLite file at ``path`` (made here)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db = _connect(path)
        self._db.execute("PRAGMA journal_mode = OFF")
        self._db.execute("PRAGMA synchronous = OFF")
        self._db.executescript(_SCHEMA)
        self._pending: dict[str, list[tuple[Any, ...]]] = {
            _DECIDE: [],
            _NOTE: [],
            _REF: [],
            _AGE: [],
        }
        self._buffered = 0
        self.sealed = False

    # -- writing (the context pass) -----------------------------------------------------------

    def _add(self, statement: str, row: tuple[Any, ...]) -> None:
        self._pending[statement].append(row)
        self._buffered += 1
        if self._buffered >= BATCH:
            self._flush()

    def _flush(self) -> None:
        self._db.execute("BEGIN")
        for statement, rows in self._pending.items():
            if rows:
                self._db.executemany(statement, rows)
                rows.clear()
        self._db.execute("COMMIT")
        self._buffered = 0

    def decide(self, subject: str, purpose: str, decision: Decision) -> None:
        self._add(
            _DECIDE,
            (
                subject,
                purpose,
                decision.seq,
                decision.occurred_at,
                decision.decision,
                decision.policy_version,
                decision.expires_at,
                int(decision.guardian),
            ),
        )

    def note(self, subject: str, purpose: str, note: Note) -> None:
        details = json.dumps([list(pair) for pair in note.details], ensure_ascii=False)
        self._add(
            _NOTE,
            (subject, purpose, note.seq, note.occurred_at, note.kind, note.policy_version, details),
        )

    def see_ref(self, subject: str, ref: str, seq: int) -> None:
        """The reference shown for ``subject`` by event ``seq``: it stands unless an earlier
        event (or an earlier call for the same event) showed one."""
        self._add(_REF, (subject, ref, seq))

    def see_age(self, subject: str, age: Age) -> None:
        """An age attestation: it stands unless a later one (by attested at, then seq) does."""
        self._add(_AGE, (subject, age.age, age.attested_at, age.seq))

    def flush(self) -> None:
        """Write what is buffered (a part's store, before it is merged)."""
        self._flush()

    def merge(self, parts: Iterable[Path]) -> None:
        """Add the rows of the stores at ``parts`` (written and flushed by other processes, and
        closed) to this one, as if this one had been given them."""
        self._flush()
        for path in parts:
            self._db.execute("ATTACH DATABASE ? AS part", (str(path),))
            try:
                self._db.execute("BEGIN")
                for statement in _MERGE:
                    self._db.execute(statement)
                self._db.execute("COMMIT")
            finally:
                self._db.execute("DETACH DATABASE part")

    def seal(self) -> None:
        """Write what is buffered and build the indexes; the store is only read from now on."""
        self._flush()
        self._db.executescript(_INDEXES)
        self.sealed = True

    # -- reading -----------------------------------------------------------------------------

    def reader(self) -> ConsentReader:
        """A reader on this process's connection."""
        assert self.sealed, "the store is read only once sealed"
        return ConsentReader(self._db)

    def close(self) -> None:
        self._db.close()


class ConsentReader:
    """Reads a sealed :class:`ConsentStore` (open one in another process with :meth:`open`)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db
        self._ages = db.execute("SELECT EXISTS (SELECT 1 FROM age)").fetchone()[0] == 1
        """Whether any age was attested (most logs' reports look for none, then ask nothing)."""

    @classmethod
    def open(cls, path: Path) -> ConsentReader:
        db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        db.execute(f"PRAGMA cache_size = -{CACHE_KIB}")
        return cls(db)

    def decisions(self, subject: str, purpose: str) -> tuple[Decision, ...]:
        """The subject's decisions on ``purpose``, in log order."""
        return tuple(
            Decision(seq, at, decision, version, expires, bool(guardian))
            for seq, at, decision, version, expires, guardian in self._db.execute(
                _DECISIONS, (subject, purpose)
            )
        )

    def ref(self, subject: str) -> str | None:
        row = self._db.execute("SELECT ref FROM ref WHERE subject = ?", (subject,)).fetchone()
        return None if row is None else str(row[0])

    def age(self, subject: str) -> Age | None:
        if not self._ages:
            return None
        row = self._db.execute(
            "SELECT age, attested_at, seq FROM age WHERE subject = ?", (subject,)
        ).fetchone()
        return None if row is None else Age(row[0], row[1], row[2])

    def subjects(self, after: str | None = None, until: str | None = None) -> Iterator[str]:
        """Every subject with a consent decision or note, sorted; with ``after`` and ``until``,
        those above ``after`` and up to ``until`` (either may be None: no bound)."""
        where, args = _bounds(after, until)
        yield from (
            row[0]
            for row in self._db.execute(
                f"SELECT subject FROM decision {where} UNION "  # noqa: S608 (where: _bounds's)
                f"SELECT subject FROM note {where} ORDER BY subject",
                args + args,
            )
        )

    def any_subject(self) -> bool:
        """Whether any subject has a consent decision or note."""
        row = self._db.execute(
            "SELECT EXISTS (SELECT 1 FROM decision) OR EXISTS (SELECT 1 FROM note)"
        ).fetchone()
        return bool(row[0])

    def cut(self, parts: int) -> list[str]:
        """At most ``parts - 1`` subjects that cut the sorted subjects into ranges of about as
        many subjects each (by those with decisions, read in order from the index: nothing
        sorted, nothing held)."""
        (total,) = self._db.execute("SELECT count(DISTINCT subject) FROM decision").fetchone()
        step = -(-int(total) // max(1, parts))
        if step == 0:
            return []
        found = []
        cursor = self._db.execute("SELECT DISTINCT subject FROM decision ORDER BY subject")
        for number, (subject,) in enumerate(cursor, start=1):
            if number % step == 0 and number < total:
                found.append(str(subject))
        return found

    def consent_by_subject(
        self, after: str | None = None, until: str | None = None
    ) -> Iterator[tuple[str, SubjectConsent]]:
        """Each subject (sorted, within the bounds as :meth:`subjects` takes them) with its
        decisions and notes by purpose."""
        where, args = _bounds(after, until)
        decisions = groupby(
            _rows(self._db, _DECISION_ROWS.replace(" ORDER BY", f" {where} ORDER BY"), args),
            key=lambda row: row[0],
        )
        notes = groupby(
            _rows(self._db, _NOTE_ROWS.replace(" ORDER BY", f" {where} ORDER BY"), args),
            key=lambda row: row[0],
        )
        decided = next(decisions, None)
        noted = next(notes, None)
        while decided is not None or noted is not None:
            if noted is None or (decided is not None and decided[0] < noted[0]):
                assert decided is not None
                subject, found, none = decided[0], list(decided[1]), []
                decided = next(decisions, None)
            elif decided is None or noted[0] < decided[0]:
                subject, found, none = noted[0], [], list(noted[1])
                noted = next(notes, None)
            else:
                subject, found, none = decided[0], list(decided[1]), list(noted[1])
                decided, noted = next(decisions, None), next(notes, None)
            yield subject, _by_purpose(found, none)

    def close(self) -> None:
        self._db.close()


def _rows(db: sqlite3.Connection, query: str, args: tuple[str, ...]) -> Iterator[Any]:
    cursor = db.execute(query, args)
    while rows := cursor.fetchmany(2048):
        yield from rows


def _bounds(after: str | None, until: str | None) -> tuple[str, tuple[str, ...]]:
    clauses, args = [], []
    if after is not None:
        clauses.append("subject > ?")
        args.append(after)
    if until is not None:
        clauses.append("subject <= ?")
        args.append(until)
    return ("WHERE " + " AND ".join(clauses) if clauses else ""), tuple(args)


def _by_purpose(decisions: list[Any], notes: list[Any]) -> SubjectConsent:
    out: dict[str, tuple[list[Decision], list[Note]]] = {}
    for _, purpose, seq, at, decision, version, expires, guardian in decisions:
        out.setdefault(purpose, ([], []))[0].append(
            Decision(seq, at, decision, version, expires, bool(guardian))
        )
    for _, purpose, seq, at, kind, version, details in notes:
        pairs = tuple((str(name), value) for name, value in json.loads(details))
        out.setdefault(purpose, ([], []))[1].append(Note(seq, at, kind, version, pairs))
    return {purpose: (tuple(d), tuple(n)) for purpose, (d, n) in out.items()}
