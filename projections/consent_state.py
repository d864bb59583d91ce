"""Consent state: per subject and purpose, now and at any moment (GDPR 7(1), 7(3)).

Stored: the validity intervals derived from the decisions, erasures, and the consent facts that
decide nothing (notes: a renewal request); the decisions, policy versions and age attestations
are the group's consent facts (:class:`~projections.consent_book.ConsentFacts`), read, not kept
again. Computed when asked (never stored by hand): expiry, renewal after a material policy
change, a minor's consent (without a guardian, or with one under a policy version that accepts
no guardian's consent), and the renewal request that awaits an answer, so a question about a
past moment gets the answer that was true then. What each consent fact records is
:mod:`ledger.verifier.consent_rules`' fold, which the offline report uses too.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar

from ledger.verifier.consent_rules import NOTE_TYPES, Note, consent_purposes, note_of
from projections.base import LoggedEvent, dumps
from projections.consent_book import (
    BOOK,
    CONSENT_TYPES,
    KEPT_SUBJECTS,
    ConsentFactsReader,
    retired_books,
    subjects_and_purposes,
)
from projections.consent_facts import FactReader, SubjectFacts
from projections.consent_rules import Interval, Verdict, intervals, moment_text
from projections.database import ProjectionDatabase, Row, Sql, chunks, marks, replacing

INTERVALS = "proj_consent_intervals"
ERASURES = "proj_consent_erasures"
NOTES = "proj_consent_notes"
NOTE_COLUMNS = ("subject", "purpose", "seq", "occurred_at", "kind", "policy_version", "details")


class ConsentState(ConsentFactsReader):
    name = "consent_state"
    version = 5
    topics = CONSENT_TYPES | frozenset(NOTE_TYPES) | {"subject.erased"}
    retired_tables = retired_books("proj_consent_")
    tables: ClassVar[Mapping[str, str]] = {
        INTERVALS: (
            "subject TEXT NOT NULL, purpose TEXT NOT NULL, valid_from TEXT NOT NULL, "
            "valid_until TEXT, end_reason TEXT, given_seq BIGINT NOT NULL, ended_seq BIGINT, "
            "policy_version TEXT NOT NULL, guardian INTEGER NOT NULL, "
            "PRIMARY KEY (subject, purpose, given_seq)"
        ),
        ERASURES: (
            "subject TEXT PRIMARY KEY, seq BIGINT NOT NULL, erased_at TEXT NOT NULL, "
            "ground TEXT NOT NULL"
        ),
        NOTES: (
            "subject TEXT NOT NULL, purpose TEXT NOT NULL, seq BIGINT NOT NULL, "
            "occurred_at TEXT NOT NULL, kind TEXT NOT NULL, policy_version TEXT NOT NULL, "
            "details TEXT NOT NULL, PRIMARY KEY (subject, purpose, seq)"
        ),
    }

    def __init__(self) -> None:
        self._complete = False
        """``_stored`` holds every interval of the tables (kept since position 0)."""
        self._touched: dict[tuple[str, str], None] = {}
        """(subject, purpose) whose intervals the page changed: derived again at its end."""
        self._erasures: list[Row] = []
        self._notes: list[Row] = []
        """Notes recorded, waiting for :meth:`flush`."""
        self._stored: dict[str, dict[tuple[str, int], Row]] = {}
        """Kept from page to page, like the book's facts: the stored intervals of the subjects
        it read or wrote, by (purpose, given_seq)."""

    def reset(self, empty: bool) -> None:
        self._stored = {}
        self._complete = empty

    def begin(self, sql: Sql, events: Sequence[LoggedEvent] = ()) -> None:
        self._touched = {}
        self._erasures = []
        self._notes = []
        if len(self._stored) > KEPT_SUBJECTS:
            self.reset(empty=False)

    def process(self, sql: Sql, event: LoggedEvent) -> None:
        if event.type == "subject.erased":
            self._erasures.append(
                (event.data["subject"], event.seq, event.occurred_at, event.data["ground"])
            )
            return
        if event.type in NOTE_TYPES:
            self._record_note(event)
            return
        # A decision: the book has it; its purposes' intervals are derived at the page's end.
        self._touched.update(dict.fromkeys(subjects_and_purposes(event)))

    def _record_note(self, event: LoggedEvent) -> None:
        """A consent fact that decides nothing: its note on each purpose (intervals stay)."""
        note = note_of(event.type, event.seq, event.occurred_at, event.data)
        details = dumps([list(pair) for pair in note.details])
        self._notes += [
            (
                event.data["subject"],
                purpose,
                note.seq,
                note.occurred_at,
                note.kind,
                note.policy_version,
                details,
            )
            for purpose in consent_purposes(event.data)
        ]

    def correct(self, sql: Sql, original: LoggedEvent, corrected: LoggedEvent) -> None:
        self.flush(sql)  # what came before the correction, in the tables it retracts from
        if original.type in NOTE_TYPES:
            sql.execute(f"DELETE FROM {NOTES} WHERE seq = ?", (original.seq,))
            self._record_note(corrected)
            return
        if original.type in CONSENT_TYPES:  # the book has the corrected decision already
            pairs = subjects_and_purposes(original) + subjects_and_purposes(corrected)
            self._touched.update(dict.fromkeys(pairs))

    def flush(self, sql: Sql) -> None:
        if self._erasures:
            sql.insert(ERASURES, ("subject", "seq", "erased_at", "ground"), self._erasures)
            self._erasures = []
        if self._notes:
            sql.insert(NOTES, NOTE_COLUMNS, self._notes)
            self._notes = []
        if self._touched:
            self._derive(sql, list(self._touched))
            self._touched = {}

    def _derive(self, sql: Sql, pairs: list[tuple[str, str]]) -> None:
        """The intervals of ``pairs``, derived from all their decisions (a pure function of
        them), written where they differ from the stored ones."""
        subjects = list(dict.fromkeys(subject for subject, _ in pairs))
        decisions = self.book.decisions_of(sql, subjects)
        stored = self._stored_intervals(sql, subjects)
        gone: list[Row] = []
        added: list[Row] = []
        changed: list[Row] = []
        for subject, purpose in pairs:
            before = stored[subject]
            after: dict[tuple[str, int], Row] = {}
            for span in intervals(decisions[subject].get(purpose, [])):
                row = (
                    subject,
                    purpose,
                    span.valid_from,
                    span.valid_until,
                    span.end_reason,
                    span.given_seq,
                    span.ended_seq,
                    span.policy_version,
                    int(span.guardian),
                )
                key = (purpose, span.given_seq)
                after[key] = row
                was = before.get(key)
                if was is None:
                    added.append(row)
                elif was != row:
                    changed.append(row)
            for ended in [k for k in before if k[0] == purpose and k not in after]:
                gone.append((subject, *ended))
                del before[ended]
            before.update(after)
        if gone:
            sql.executemany(
                f"DELETE FROM {INTERVALS} WHERE subject = ? AND purpose = ? AND given_seq = ?",
                gone,
            )
        columns = INTERVAL_COLUMNS.split(", ")
        if added:
            # ``stored`` holds every row the table has for these subjects, so these keys are
            # new: a plain insert (COPY on PostgreSQL), not an upsert, which costs the server
            # a conflict check a row (most intervals are new ones during a catch-up).
            sql.insert(INTERVALS, columns, added)
        if changed:
            primary = ("subject", "purpose", "given_seq")
            sql.insert(INTERVALS, columns, changed, replacing(primary, columns))

    def _stored_intervals(
        self, sql: Sql, subjects: list[str]
    ) -> dict[str, dict[tuple[str, int], Row]]:
        """The stored intervals of ``subjects`` (kept ones from memory, the others read)."""
        missing = [s for s in subjects if s not in self._stored]
        for subject in missing:
            self._stored[subject] = {}
        if not self._complete:
            for chunk in chunks(missing):
                for row in sql.execute(
                    f"SELECT {INTERVAL_COLUMNS} FROM {INTERVALS} "
                    f"WHERE subject IN ({marks(len(chunk))})",
                    chunk,
                ):
                    self._stored[row[0]][(row[1], int(row[5]))] = _interval_row(row)
        return {s: self._stored[s] for s in subjects}


INTERVAL_COLUMNS = (
    "subject, purpose, valid_from, valid_until, end_reason, given_seq, ended_seq, "
    "policy_version, guardian"
)


def _interval_row(row: Row) -> Row:
    """A stored interval as :meth:`ConsentState._derive` builds one (ints as ints)."""
    return (
        row[0],
        row[1],
        row[2],
        row[3],
        row[4],
        int(row[5]),
        None if row[6] is None else int(row[6]),
        row[7],
        int(row[8]),
    )


@dataclass(frozen=True)
class PurposeState:
    purpose: str
    verdict: Verdict
    pending_renewal: Note | None = None
    """The renewal request awaiting an answer (it changes no verdict)."""

    def as_dict(self) -> dict[str, Any]:
        v = self.verdict
        pending = self.pending_renewal
        return {
            "purpose": self.purpose,
            "status": v.status,
            "dpv_status": v.dpv,
            "valid": v.valid,
            "policy_version": v.policy_version,
            "since": v.since,
            "decided_by_seq": v.seq,
            "pending_renewal": None if pending is None else pending.as_dict(),
        }


class ConsentStateView:
    """Questions about consent, answered from the consent-state projection.

    Each question is one statement (:class:`~projections.consent_facts.FactReader`), with the
    policy versions kept in memory and checked against the table by that same statement.
    """

    def __init__(self, db: ProjectionDatabase, default_minimum_age: int = 18) -> None:
        self.db = db
        self.default_minimum_age = default_minimum_age
        self.reader = FactReader(db, BOOK, ERASURES, NOTES)

    def facts(self, subject: str, purpose: str | None = None) -> SubjectFacts:
        """The subject's erasure, age, the policies, and their decisions on ``purpose`` (on
        every purpose, with the notes, when None): what :meth:`decide` and :meth:`state`
        answer from."""
        return self.reader.read(subject, purpose)

    def state(self, subject: str, now: datetime) -> list[PurposeState]:
        """Every purpose the subject ever decided on, as it stands at ``now``."""
        return self.state_of(self.facts(subject), now)

    def state_of(self, facts: SubjectFacts, now: datetime) -> list[PurposeState]:
        moment = moment_text(now)
        return [
            PurposeState(
                purpose,
                facts.verdict(purpose, moment, self.default_minimum_age),
                facts.pending_renewal(purpose, moment),
            )
            for purpose in facts.purposes()
        ]

    def decide(self, subject: str, purpose: str, at: datetime) -> Verdict:
        """May ``purpose`` be used for ``subject`` at ``at``? With the reason and its event."""
        return self.verdict_of(self.facts(subject, purpose), purpose, at)

    def verdict_of(self, facts: SubjectFacts, purpose: str, at: datetime) -> Verdict:
        return facts.verdict(purpose, moment_text(at), self.default_minimum_age)

    def erasure(self, subject: str) -> dict[str, Any] | None:
        """When and why the subject was erased, or None."""
        with self.db.reading() as sql:
            return _erasure(sql, subject)

    def intervals(self, subject: str, purpose: str) -> list[Interval]:
        rows = self.db.query(
            f"SELECT valid_from, valid_until, end_reason, given_seq, ended_seq, policy_version, "
            f"guardian FROM {INTERVALS} WHERE subject = ? AND purpose = ? ORDER BY valid_from",
            (subject, purpose),
        )
        return [Interval(r[0], r[1], r[2], int(r[3]), r[4], r[5], bool(r[6])) for r in rows]


def _erasure(sql: Sql, subject: str) -> dict[str, Any] | None:
    rows = sql.execute(
        f"SELECT seq, erased_at, ground FROM {ERASURES} WHERE subject = ?", (subject,)
    )
    for seq, erased_at, ground in rows:
        return {"seq": int(seq), "erased_at": str(erased_at), "ground": str(ground)}
    return None
