"""The facts consent validity depends on: one book, kept by the ``consent_facts`` read model.

Consent state, the disclosure history and retention all need them. They are kept once, in
the ``proj_consent_facts_*`` tables, by :class:`ConsentFacts`, and the three read it
(:class:`ConsentFactsReader`): the four form a group that the runner applies each page to in
one transaction (the book first), rebuilds together and stops together, so the book is always
exactly as far as its readers (docs/projections.md, "Groups"). Until round three each of the
three kept a book of its own under its own prefix; their old tables are dropped on upgrade.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import orjson

from ledger.verifier.consent_rules import (
    DECISION_TYPES,
    Age,
    Decision,
    Policy,
    Verdict,
    consent_purposes,
    decision_of,
    policy_of,
    verdict_at,
)
from projections.base import CorrectableProjection, LoggedEvent, Projection, ProjectionError, dumps
from projections.database import Row, Sql, chunks, marks

CONSENT_TYPES = frozenset(DECISION_TYPES)
"""The consent decisions (:mod:`ledger.verifier.consent_rules` folds them): what validity
depends on. Consent facts that decide nothing are not in the book."""
BOOK_TYPES = CONSENT_TYPES | {"policy.version_published", "subject.age_attested"}
KEPT_SUBJECTS = 50_000
"""Subjects whose facts a projection's book keeps from page to page, at most (then it starts
again, reading what it needs)."""
POLICY_COLUMNS = "version, effective_at, material, minimum_age, seq, guardian_consent, bases"
DECISION_COLUMNS = (
    "subject",
    "purpose",
    "seq",
    "occurred_at",
    "decision",
    "policy_version",
    "expires_at",
    "guardian",
)


class ConsentBook:
    """The tables under one prefix. A projection's own book may cache the policy versions for
    a batch (:meth:`begin`); a reader's book reads them every time."""

    def __init__(self, prefix: str) -> None:
        self._policies: dict[str, Policy] | None = None
        self._decision_rows: list[Row] = []
        self._age_rows: list[Row] = []
        """Recorded, waiting for :meth:`flush` (a projection's own book only)."""
        self._decisions: dict[str, dict[str, list[Decision]]] = {}
        self._ages: dict[str, Age | None] = {}
        """A projection's own book: the facts of the subjects it read or recorded, as its
        tables hold them (with what waits for :meth:`flush`), kept from page to page."""
        self._complete = False
        """Every subject is in ``_decisions`` and ``_ages``: a subject not there has no facts."""
        self.decisions_table = f"{prefix}decisions"
        self.policies_table = f"{prefix}policies"
        self.ages_table = f"{prefix}ages"
        self.tables = {
            self.decisions_table: (
                "subject TEXT NOT NULL, purpose TEXT NOT NULL, seq BIGINT NOT NULL, "
                "occurred_at TEXT NOT NULL, decision TEXT NOT NULL, policy_version TEXT NOT NULL, "
                "expires_at TEXT, guardian INTEGER NOT NULL, PRIMARY KEY (subject, purpose, seq)"
            ),
            self.policies_table: (
                "version TEXT PRIMARY KEY, effective_at TEXT NOT NULL, material INTEGER NOT NULL, "
                "minimum_age INTEGER, seq BIGINT NOT NULL, guardian_consent INTEGER NOT NULL, "
                "bases TEXT NOT NULL"
            ),
            self.ages_table: (
                "subject TEXT NOT NULL, seq BIGINT NOT NULL, age INTEGER NOT NULL, "
                "attested_at TEXT NOT NULL, PRIMARY KEY (subject, seq)"
            ),
        }

    @property
    def complete(self) -> bool:
        """Nothing is kept that the tables do not hold, and the tables held nothing else when
        the keeping began (position 0): a subject not kept has no rows of this projection."""
        return self._complete

    def reset(self, empty: bool) -> None:
        """Forget the facts kept from page to page (the tables may have changed meanwhile);
        ``empty``: the tables are empty, so knowing nothing is knowing everything."""
        self._policies = None
        self._decisions = {}
        self._ages = {}
        self._complete = empty

    def begin(self, sql: Sql) -> None:
        """A page starts: the policy versions are kept in memory (read again after a
        :meth:`reset`), and the decisions and ages it records wait for :meth:`flush`."""
        if self._policies is None:
            self._policies = self.policies(sql)
        self._decision_rows = []
        self._age_rows = []
        if len(self._decisions) > KEPT_SUBJECTS or len(self._ages) > KEPT_SUBJECTS:
            self.reset(empty=False)

    def flush(self, sql: Sql) -> None:
        """Write the decisions and ages recorded since :meth:`begin` or the last flush."""
        rows, self._decision_rows = self._decision_rows, []
        sql.insert(self.decisions_table, DECISION_COLUMNS, rows)
        rows, self._age_rows = self._age_rows, []
        sql.insert(self.ages_table, ("subject", "seq", "age", "attested_at"), rows)

    # -- writing -------------------------------------------------------------------------------

    def record(self, sql: Sql, event: LoggedEvent) -> None:
        """Record what ``event`` says: a policy version at once, decisions and ages at the next
        :meth:`flush` (a reader of them flushes first)."""
        data = event.data
        if event.type in CONSENT_TYPES:
            recorded = decision_record(event)
            subject = recorded.subject
            self._decision_rows += recorded.rows
            known = self._decisions.get(subject)
            if known is None and self._complete:
                known = self._decisions[subject] = {}
            if known is not None:
                for purpose in recorded.purposes:
                    known.setdefault(purpose, []).append(recorded.decision)
        elif event.type == "policy.version_published":
            policy = policy_of(data, event.seq)
            sql.execute(
                f"INSERT INTO {self.policies_table} ({POLICY_COLUMNS}) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    policy.version,
                    policy.effective_at,
                    int(policy.material),
                    policy.minimum_age,
                    policy.seq,
                    int(policy.guardian_consent_allowed),
                    dumps(policy.bases),
                ),
            )
            if self._policies is not None:
                self._policies[policy.version] = policy
        elif event.type == "subject.age_attested":
            subject = data["subject"]
            self._age_rows.append((subject, event.seq, data["age"], event.occurred_at))
            if subject in self._ages or self._complete:
                age = Age(int(data["age"]), event.occurred_at, event.seq)
                self._ages[subject] = _latest(self._ages.get(subject), age)

    def retract(self, sql: Sql, event: LoggedEvent) -> None:
        """Remove what ``event`` recorded (before recording its corrected form)."""
        self.flush(sql)
        subject = str(event.data.get("subject"))
        kept = subject in self._decisions or subject in self._ages or self._complete
        # Decisions and ages by their subject too: the primary key's first column, so the
        # delete is a look-up, not a scan of every subject's rows.
        if event.type in CONSENT_TYPES:
            sql.execute(
                f"DELETE FROM {self.decisions_table} WHERE subject = ? AND seq = ?",
                (subject, event.seq),
            )
        elif event.type == "policy.version_published":
            sql.execute(f"DELETE FROM {self.policies_table} WHERE seq = ?", (event.seq,))
            if self._policies is not None:
                self._policies.pop(event.data["version"], None)
        elif event.type == "subject.age_attested":
            sql.execute(
                f"DELETE FROM {self.ages_table} WHERE subject = ? AND seq = ?",
                (subject, event.seq),
            )
        if kept and event.type != "policy.version_published":
            # What is kept of the subject: read again from the tables, as they now stand.
            self._decisions.pop(subject, None)
            self._ages.pop(subject, None)
            complete, self._complete = self._complete, False
            self.decisions_of(sql, [subject])
            self.ages_of(sql, [subject])
            self._complete = complete

    # -- loading for a page (the write side) ---------------------------------------------------

    def decisions_of(
        self, sql: Sql, subjects: Iterable[str]
    ) -> dict[str, dict[str, list[Decision]]]:
        """Every decision of ``subjects``, by subject and purpose (not to be changed): kept
        ones from memory, the others read in a few statements (and kept)."""
        wanted = list(dict.fromkeys(subjects))
        missing = [s for s in wanted if s not in self._decisions]
        if missing and not self._complete:
            self.flush(sql)  # what was recorded for them, in the tables they are read from
            for chunk in chunks(missing):
                for subject in chunk:
                    self._decisions[subject] = {}
                for subject, purpose, *r in sql.execute(
                    f"SELECT subject, purpose, seq, occurred_at, decision, policy_version, "
                    f"expires_at, guardian FROM {self.decisions_table} "
                    f"WHERE subject IN ({marks(len(chunk))})",
                    chunk,
                ):
                    self._decisions[subject].setdefault(purpose, []).append(
                        Decision(int(r[0]), r[1], r[2], r[3], r[4], bool(r[5]))
                    )
        return {s: self._decisions.get(s, {}) for s in wanted}

    def ages_of(self, sql: Sql, subjects: Iterable[str]) -> dict[str, Age]:
        """The latest attestation of each of ``subjects`` that has one (as :meth:`age` picks)."""
        wanted = list(dict.fromkeys(subjects))
        missing = [s for s in wanted if s not in self._ages]
        if missing and not self._complete:
            self.flush(sql)
            for chunk in chunks(missing):
                found: dict[str, Age | None] = dict.fromkeys(chunk)
                for subject, age, attested_at, seq in sql.execute(
                    f"SELECT subject, age, attested_at, seq FROM {self.ages_table} "
                    f"WHERE subject IN ({marks(len(chunk))})",
                    chunk,
                ):
                    found[subject] = _latest(found[subject], Age(int(age), attested_at, int(seq)))
                self._ages.update(found)
        ages = {s: self._ages.get(s) for s in wanted}
        return {s: age for s, age in ages.items() if age is not None}

    # -- reading -------------------------------------------------------------------------------

    def decisions(self, sql: Sql, subject: str, purpose: str) -> list[Decision]:
        rows = sql.execute(
            f"SELECT seq, occurred_at, decision, policy_version, expires_at, guardian "
            f"FROM {self.decisions_table} WHERE subject = ? AND purpose = ?",
            (subject, purpose),
        )
        return [Decision(int(r[0]), r[1], r[2], r[3], r[4], bool(r[5])) for r in rows]

    def purposes_of(self, sql: Sql, subject: str) -> list[str]:
        rows = sql.execute(
            f"SELECT DISTINCT purpose FROM {self.decisions_table} WHERE subject = ? "
            "ORDER BY purpose",
            (subject,),
        )
        return [str(r[0]) for r in rows]

    def policies(self, sql: Sql) -> dict[str, Policy]:
        if self._policies is not None:
            return self._policies
        rows = sql.execute(f"SELECT {POLICY_COLUMNS} FROM {self.policies_table}")
        return {str(r[0]): policy_row(r) for r in rows}

    def age(self, sql: Sql, subject: str) -> Age | None:
        rows = sql.execute(
            f"SELECT age, attested_at, seq FROM {self.ages_table} WHERE subject = ? "
            "ORDER BY attested_at DESC, seq DESC LIMIT 1",
            (subject,),
        )
        return Age(int(rows[0][0]), rows[0][1], int(rows[0][2])) if rows else None

    def verdict(
        self, sql: Sql, subject: str, purpose: str, moment: str, default_minimum_age: int
    ) -> Verdict:
        return verdict_at(
            moment,
            self.decisions(sql, subject, purpose),
            self.policies(sql),
            self.age(sql, subject),
            default_minimum_age,
        )


def policy_row(r: Row) -> Policy:
    """A policy version as its row (:data:`POLICY_COLUMNS`) holds it."""
    return Policy(
        str(r[0]),
        str(r[1]),
        bool(r[2]),
        None if r[3] is None else int(r[3]),
        int(r[4]),
        bool(r[5]),
        orjson.loads(r[6]),
    )


@dataclass(frozen=True, slots=True)
class DecisionRecord:
    """What one consent decision records: its subject, the decision, the purposes it is on
    and its rows (:data:`DECISION_COLUMNS`), one a purpose."""

    subject: str
    decision: Decision
    purposes: tuple[str, ...]
    rows: tuple[Row, ...]


def decision_record(event: LoggedEvent) -> DecisionRecord:
    """The record of a decision (an event of :data:`CONSENT_TYPES`), derived once for every
    book that holds it (:meth:`LoggedEvent.derived`)."""
    return event.derived("consent_book.decision", _decision_record)


def _decision_record(event: LoggedEvent) -> DecisionRecord:
    data = event.data
    decision = decision_of(event.type, event.seq, event.occurred_at, data)
    subject = data["subject"]
    purposes = tuple(consent_purposes(data))
    return DecisionRecord(
        subject,
        decision,
        purposes,
        tuple(
            (
                subject,
                purpose,
                decision.seq,
                decision.occurred_at,
                decision.decision,
                decision.policy_version,
                decision.expires_at,
                int(decision.guardian),
            )
            for purpose in purposes
        ),
    )


def subjects_and_purposes(event: LoggedEvent) -> list[tuple[str, str]]:
    if event.type in CONSENT_TYPES:
        recorded = decision_record(event)
        return [(recorded.subject, p) for p in recorded.purposes]
    data: dict[str, Any] = event.data
    return [(data["subject"], p) for p in consent_purposes(data)]


def _latest(known: Age | None, candidate: Age) -> Age:
    """The attestation that counts: the latest by time, then by sequence number."""
    if known is None or (candidate.attested_at, candidate.seq) > (known.attested_at, known.seq):
        return candidate
    return known


PREFIX = "proj_consent_facts_"
BOOK = ConsentBook(PREFIX)
"""For readers: no cache."""
RETIRED_PREFIXES = ("proj_consent_", "proj_dc_", "proj_rt_")
"""Where consent state, disclosures and retention each kept a book of their own (until their
versions 5, 5 and 4)."""


def retired_books(prefix: str) -> tuple[str, ...]:
    """The tables of the book a read model kept under ``prefix`` before the shared one."""
    return tuple(f"{prefix}{kind}" for kind in ("decisions", "policies", "ages"))


class ConsentFacts(CorrectableProjection):
    """The consent facts (decisions, policy versions, age attestations), kept once for the
    read models that read them; its book keeps in memory, from page to page, the facts of the
    subjects it has seen, which its readers use in the same page."""

    name = "consent_facts"
    version = 1
    topics = BOOK_TYPES
    tables: ClassVar[Mapping[str, str]] = BOOK.tables

    def __init__(self) -> None:
        self.book = ConsentBook(PREFIX)

    def reset(self, empty: bool) -> None:
        self.book.reset(empty)

    def begin(self, sql: Sql, events: Sequence[LoggedEvent] = ()) -> None:
        self.book.begin(sql)

    def process(self, sql: Sql, event: LoggedEvent) -> None:
        self.book.record(sql, event)

    def correct(self, sql: Sql, original: LoggedEvent, corrected: LoggedEvent) -> None:
        self.book.retract(sql, original)
        self.book.record(sql, corrected)

    def flush(self, sql: Sql) -> None:
        self.book.flush(sql)


class ConsentFactsReader(CorrectableProjection):
    """A read model that reads the consent facts: of :class:`ConsentFacts`' group. Within a
    page the runner applies the page to the book first, so what :attr:`book` holds is the
    facts up to the page's end, whichever of the page's events this one is at (its rows are a
    function of those facts, recomputed where a later fact changes them)."""

    requires: ClassVar[tuple[type[Projection], ...]] = (ConsentFacts,)
    _book: ConsentBook | None = None

    def bind(self, required: Mapping[str, Projection]) -> None:
        facts = required[ConsentFacts.name]
        if not isinstance(facts, ConsentFacts):
            raise ProjectionError(f"{self.name}: {ConsentFacts.name} is not the consent facts")
        self._book = facts.book

    @property
    def book(self) -> ConsentBook:
        """The group's consent book (the runner's :class:`ConsentFacts`)."""
        if self._book is None:
            raise ProjectionError(f"{self.name} reads the consent facts: run it in a runner")
        return self._book
