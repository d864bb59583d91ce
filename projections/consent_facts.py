"""What a consent question needs, read in one statement: erasure, decisions, age, policies.

A consent book's tables answer "may purpose P be used for subject S at T?" with four reads:
the subject's erasure, their decisions on P, their latest attested age and the policy
versions. :class:`FactReader` reads them with one statement (one round trip on PostgreSQL).
The subject's state (every purpose) reads their notes too, with the same statement: the
consent facts that decide nothing, such as a renewal request awaiting an answer; a decision
on one purpose does not read them.

The policy versions are few and change rarely, so the reader keeps them in memory, with a
*fingerprint* of the policy table: every statement computes the table's fingerprint and returns
the policy rows only when it differs from the one kept. A policy published, corrected or
rebuilt by any process (the read models may run in a process of their own) changes the
fingerprint, so the very next question sees it: the policies never lag the decisions they are
read with, since both come from the same statement.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from ledger.verifier.consent_rules import (
    Age,
    Decision,
    Note,
    Policy,
    Verdict,
    pending_renewal,
    verdict_at,
)
from projections.consent_book import ConsentBook, policy_row
from projections.database import ProjectionDatabase, Row


@dataclass(frozen=True)
class Erasure:
    seq: int
    erased_at: str
    ground: str

    def as_dict(self) -> dict[str, Any]:
        return {"seq": self.seq, "erased_at": self.erased_at, "ground": self.ground}


@dataclass(frozen=True)
class SubjectFacts:
    """One subject's facts, as one statement read them."""

    subject: str
    erasure: Erasure | None
    decisions: Mapping[str, Sequence[Decision]]
    """Purpose -> its decisions (only the purpose asked about, or every purpose)."""
    age: Age | None
    policies: Mapping[str, Policy]
    notes: Mapping[str, Sequence[Note]] = field(default_factory=dict)
    """Purpose -> the consent facts on it that decide nothing (read with every purpose only)."""

    def purposes(self) -> list[str]:
        """The purposes the subject has consent facts on."""
        return sorted({*self.decisions, *self.notes})

    def verdict(self, purpose: str, moment: str, default_minimum_age: int) -> Verdict:
        erasure = self.erasure
        if erasure is not None and erasure.erased_at <= moment:
            # Nothing may be processed for an erased subject from its erasure on.
            return Verdict(False, "erased", erasure.seq, None, erasure.erased_at)
        return verdict_at(
            moment, self.decisions.get(purpose, ()), self.policies, self.age, default_minimum_age
        )

    def pending_renewal(self, purpose: str, moment: str) -> Note | None:
        """The renewal request on ``purpose`` awaiting an answer at ``moment``; none from the
        subject's erasure on (nothing more is asked of an erased subject)."""
        erasure = self.erasure
        if erasure is not None and erasure.erased_at <= moment:
            return None
        return pending_renewal(self.decisions.get(purpose, ()), self.notes.get(purpose, ()), moment)


class FactReader:
    """Reads :class:`SubjectFacts` from one consent book's tables (see the module docstring).

    Thread-safe: the policies and their fingerprint are swapped in as one tuple.
    """

    def __init__(
        self,
        db: ProjectionDatabase,
        book: ConsentBook,
        erasures_table: str,
        notes_table: str | None = None,
    ) -> None:
        self.db = db
        self._policies: tuple[str | None, dict[str, Policy]] | None = None
        if db.dialect == "postgres":
            # A digest keeps the row short however many versions there are.
            fingerprint = (
                "encode(sha256(convert_to(string_agg(length(version) || ':' || version || ';' "
                "|| effective_at || ';' || material || ';' || coalesce(minimum_age::text, '-') "
                "|| ';' || seq || ';' || guardian_consent || ';' || bases, '/' ORDER BY seq), "
                "'UTF8')), 'hex') AS value "
                f"FROM {book.policies_table}"
            )
            differs = "IS DISTINCT FROM"
        else:  # in process: the text itself (no hash function in SQLite)
            fingerprint = (
                "group_concat(length(version) || ':' || version || ';' || effective_at || ';' "
                "|| material || ';' || coalesce(minimum_age, '-') || ';' || seq || ';' "
                "|| guardian_consent || ';' || bases, '/') AS value "
                f"FROM (SELECT * FROM {book.policies_table} ORDER BY seq)"
            )
            differs = "IS NOT"
        # Columns: kind, three numbers, five texts.
        head = (
            f"WITH fingerprint AS (SELECT {fingerprint}) "
            "SELECT 'e' AS kind, seq AS n1, CAST(NULL AS BIGINT) AS n2, "
            "CAST(NULL AS BIGINT) AS n3, erased_at AS t1, ground AS t2, "
            f"NULL AS t3, NULL AS t4, NULL AS t5 FROM {erasures_table} WHERE subject = ? "
            "UNION ALL SELECT 'd', seq, guardian, NULL, occurred_at, decision, policy_version, "
            f"expires_at, purpose FROM {book.decisions_table} WHERE subject = ?"
        )
        tail = (
            " UNION ALL SELECT * FROM (SELECT 'a', seq, age, CAST(NULL AS BIGINT), attested_at, "
            f"NULL, NULL, NULL, NULL FROM {book.ages_table} WHERE subject = ? "
            "ORDER BY attested_at DESC, seq DESC LIMIT 1) AS latest_age "
            "UNION ALL SELECT 'v', NULL, NULL, NULL, value, NULL, NULL, NULL, NULL "
            "FROM fingerprint "
            "UNION ALL SELECT 'p', seq, material, minimum_age, version, effective_at, bases, "
            "CAST(guardian_consent AS TEXT), NULL "
            f"FROM {book.policies_table}, fingerprint WHERE fingerprint.value {differs} ?"
        )
        notes = (
            ""
            if notes_table is None
            else " UNION ALL SELECT 'n', seq, NULL, NULL, occurred_at, kind, policy_version, "
            f"details, purpose FROM {notes_table} WHERE subject = ?"
        )
        self._one_purpose = head + " AND purpose = ?" + tail
        self._every_purpose = head + notes + tail
        self._reads_notes = notes_table is not None

    def read(self, subject: str, purpose: str | None = None) -> SubjectFacts:
        """The subject's facts: decisions on ``purpose`` only, or on every purpose (None)."""
        kept = self._policies
        known = "" if kept is None else kept[0]
        # "" is no fingerprint (an empty table's is NULL): nothing kept yet, send every policy.
        if purpose is None:
            subjects = (subject,) * (4 if self._reads_notes else 3)
            rows = self.db.query(self._every_purpose, (*subjects, known))
        else:
            rows = self.db.query(self._one_purpose, (subject, subject, purpose, subject, known))
        return self._facts(subject, rows, kept)

    def _facts(
        self, subject: str, rows: list[Row], kept: tuple[str | None, dict[str, Policy]] | None
    ) -> SubjectFacts:
        erasure: Erasure | None = None
        decisions: dict[str, list[Decision]] = {}
        notes: dict[str, list[Note]] = {}
        age: Age | None = None
        fingerprint: str | None = None
        fresh: dict[str, Policy] = {}
        for kind, n1, n2, n3, t1, t2, t3, t4, t5 in rows:
            if kind == "d":
                decisions.setdefault(str(t5), []).append(
                    Decision(int(n1), str(t1), str(t2), str(t3), t4, bool(n2))
                )
            elif kind == "n":
                details = tuple((str(k), v) for k, v in orjson.loads(t4))
                notes.setdefault(str(t5), []).append(
                    Note(int(n1), str(t1), str(t2), str(t3), details)
                )
            elif kind == "e":
                erasure = Erasure(int(n1), str(t1), str(t2))
            elif kind == "a":
                age = Age(int(n2), str(t1), int(n1))
            elif kind == "v":
                fingerprint = None if t1 is None else str(t1)
            else:  # "p": the policy table changed since the fingerprint kept
                fresh[str(t1)] = policy_row((t1, t2, n2, n3, n1, int(str(t4)), t3))
        if kept is not None and kept[0] == fingerprint:
            policies = kept[1]
        else:
            policies = fresh
            self._policies = (fingerprint, fresh)
        return SubjectFacts(subject, erasure, decisions, age, policies, notes)
