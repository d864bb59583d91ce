"""The retention read model: what the retention rules need, kept apart, and the view asking them.

Stored (a read model under ``proj_rt_``, of the consent facts' group: it reads the decisions,
ages and policy versions of :class:`~projections.consent_book.ConsentFacts`): each policy
version's periods, each subject's other events (lifecycle starts, disclosures with their
recipient and purpose, request steps with their request: its decisions and ages are the book's),
the incidents' steps and named subjects, and erasures. Every row is keyed by the ``seq`` of the
event it comes from, so a correction replaces exactly what the corrected event contributed. Due
dates and holds are computed when asked, never stored: :class:`RetentionView` gathers each
subject's facts and judges them with :mod:`projections.retention_rules` (pure). The job that
erases what is due is :mod:`projections.retention_job`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar

from ledger.verifier.consent_rules import Age, Decision, Policy
from ledger.verifier.incident_rules import (
    ASSESSED,
    CLOSED,
    INCIDENT_TYPES,
    OPENED,
    normalised_rule,
)
from ledger.verifier.request_rules import CLOSING, RECEIVED, REQUEST_TYPES
from ledger.verifier.times import stored
from projections.base import LoggedEvent
from projections.consent_book import (
    BOOK,
    ConsentFactsReader,
    retired_books,
)
from projections.database import ProjectionDatabase, Row, Sql
from projections.retention_rules import (
    DEFAULT_LEGAL_HOLD_DAYS,
    IncidentFacts,
    RequestFacts,
    SubjectRetention,
    holds_of,
    plus_days,
    retention_of,
)

PERIODS = "proj_rt_periods"
ACTIVITY = "proj_rt_activity"
INCIDENT_STEPS = "proj_rt_incident_steps"
INCIDENT_SUBJECTS = "proj_rt_incident_subjects"
ERASURES = "proj_rt_erasures"

POLICY = "policy.version_published"
DISCLOSURE = "disclosure.recorded"
LIFECYCLE = "subject.lifecycle_started"
ERASED = "subject.erased"
SUBJECT_EVENTS = frozenset({LIFECYCLE})
"""Events of one subject, named by ``data.subject``, that the activity table holds; the
subject's decisions and age attestations are in the group's consent book, which
:func:`_events_of_subjects` reads with it (they were kept here too until version 5)."""
NONE = (None, None)
CHUNK = 500
"""Subjects evaluated together (one set of queries each)."""


class Retention(ConsentFactsReader):
    name = "retention"
    version = 5
    topics = REQUEST_TYPES | INCIDENT_TYPES | {POLICY, DISCLOSURE, LIFECYCLE, ERASED}
    retired_tables = retired_books("proj_rt_")
    tables: ClassVar[Mapping[str, str]] = {
        PERIODS: (
            "version TEXT NOT NULL, purpose TEXT NOT NULL, retention_days INTEGER NOT NULL, "
            "seq BIGINT NOT NULL, PRIMARY KEY (version, purpose)"
        ),
        ACTIVITY: (
            "subject TEXT NOT NULL, seq BIGINT NOT NULL, occurred_at TEXT NOT NULL, "
            "type TEXT NOT NULL, ref TEXT, purpose TEXT, policy_version TEXT, "
            "PRIMARY KEY (subject, seq)"
        ),
        INCIDENT_STEPS: (
            "seq BIGINT PRIMARY KEY, incident_id TEXT NOT NULL, type TEXT NOT NULL, "
            "occurred_at TEXT NOT NULL, recipient_id TEXT, disclosed_from TEXT, disclosed_to TEXT"
        ),
        INCIDENT_SUBJECTS: (
            "seq BIGINT NOT NULL, subject TEXT NOT NULL, incident_id TEXT NOT NULL, "
            "PRIMARY KEY (seq, subject)"
        ),
        ERASURES: (
            "subject TEXT PRIMARY KEY, seq BIGINT NOT NULL, erased_at TEXT NOT NULL, "
            "ground TEXT NOT NULL"
        ),
    }
    indexes = (
        f"CREATE INDEX IF NOT EXISTS proj_rt_periods_seq ON {PERIODS} (seq)",
        f"CREATE INDEX IF NOT EXISTS proj_rt_incident_subjects_incident ON {INCIDENT_SUBJECTS} "
        "(incident_id)",
    )

    def __init__(self) -> None:
        self._rows: dict[tuple[str, tuple[str, ...]], list[Row]] = {}
        """Per page: the rows it adds, by table and columns, written at its end."""

    def begin(self, sql: Sql, events: Sequence[LoggedEvent] = ()) -> None:
        self._rows = {}

    def process(self, sql: Sql, event: LoggedEvent) -> None:
        self._record(sql, event)

    def correct(self, sql: Sql, original: LoggedEvent, corrected: LoggedEvent) -> None:
        """Every row comes from one event and carries its seq: replace them all."""
        self.flush(sql)
        for table in (PERIODS, INCIDENT_STEPS, INCIDENT_SUBJECTS):
            sql.execute(f"DELETE FROM {table} WHERE seq = ?", (original.seq,))
        # The subjects' events by their primary key (subject, seq): ``original`` is the event
        # as last recorded, so these are its rows. No index on seq alone to keep up for this.
        keys = [(row[0], row[1]) for row in _activity(original)]
        if keys:
            sql.executemany(f"DELETE FROM {ACTIVITY} WHERE subject = ? AND seq = ?", keys)
        self._record(sql, corrected)

    def flush(self, sql: Sql) -> None:
        rows, self._rows = self._rows, {}
        for (table, columns), values in rows.items():
            sql.insert(table, columns, values)

    def _add(self, table: str, columns: tuple[str, ...], rows: Iterable[Row]) -> None:
        self._rows.setdefault((table, columns), []).extend(rows)

    def _record(self, sql: Sql, event: LoggedEvent) -> None:
        data = event.data  # a consent fact is the book's: here only its activity row
        if event.type == POLICY:
            self._add(
                PERIODS,
                ("version", "purpose", "retention_days", "seq"),
                [
                    (data["version"], p["id"], int(p["retention_days"]), event.seq)
                    for p in data["purposes"]
                ],
            )
        elif event.type == ERASED:
            self._add(
                ERASURES,
                ("subject", "seq", "erased_at", "ground"),
                [(data["subject"], event.seq, event.occurred_at, data["ground"])],
            )
        elif event.type in INCIDENT_TYPES:
            self._record_incident(event)
        rows = _activity(event)
        if rows:
            self._add(
                ACTIVITY,
                ("subject", "seq", "occurred_at", "type", "ref", "purpose", "policy_version"),
                rows,
            )

    def _record_incident(self, event: LoggedEvent) -> None:
        data = event.data
        rule = data.get("affected_rule") if event.type == ASSESSED else None
        window = None if rule is None else normalised_rule(rule)
        self._add(
            INCIDENT_STEPS,
            (
                "seq",
                "incident_id",
                "type",
                "occurred_at",
                "recipient_id",
                "disclosed_from",
                "disclosed_to",
            ),
            [
                (
                    event.seq,
                    data["incident_id"],
                    event.type,
                    event.occurred_at,
                    None if window is None else window["recipient_id"],
                    None if window is None else window["disclosed_from"],
                    None if window is None else window["disclosed_to"],
                )
            ],
        )
        if event.type == ASSESSED:
            self._add(
                INCIDENT_SUBJECTS,
                ("seq", "subject", "incident_id"),
                [
                    (event.seq, subject, data["incident_id"])
                    for subject in dict.fromkeys(
                        item["subject"] for item in data.get("affected_subjects", [])
                    )
                ],
            )


def _activity(event: LoggedEvent) -> list[tuple[Any, ...]]:
    """The subjects' events an event is: (subject, seq, occurred_at, type, ref, purpose,
    policy_version) rows."""
    data = event.data
    if event.type in SUBJECT_EVENTS:
        return [(data["subject"], event.seq, event.occurred_at, event.type, None, None, None)]
    if event.type in REQUEST_TYPES:
        return [
            (data["subject"], event.seq, event.occurred_at, event.type, data["request_id"], *NONE)
        ]
    if event.type == DISCLOSURE:
        return [
            (
                subject,
                event.seq,
                event.occurred_at,
                event.type,
                data["recipient_id"],
                data["purpose"],
                data["policy_version"],
            )
            for subject in dict.fromkeys(item["subject"] for item in data["subjects"])
        ]
    return []


# -- the view ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class RetentionReview:
    """Every subject due at ``moment``: the erasable ones and the held ones."""

    moment: str
    due: tuple[SubjectRetention, ...]
    held: tuple[SubjectRetention, ...]


class RetentionView:
    """Which subjects are due for erasure, and which of those are held."""

    def __init__(
        self,
        db: ProjectionDatabase,
        default_minimum_age: int = 18,
        legal_hold_days: int = DEFAULT_LEGAL_HOLD_DAYS,
    ) -> None:
        self.db = db
        self.default_minimum_age = default_minimum_age
        self.legal_hold_days = legal_hold_days

    def review(self, now: datetime) -> RetentionReview:
        """Subjects (not erased) whose periods have all passed at ``now``, in pseudonym order."""
        moment = _moment(now)
        due: list[SubjectRetention] = []
        held: list[SubjectRetention] = []
        with self.db.reading() as sql:
            shortest = sql.execute(f"SELECT MIN(retention_days) FROM {PERIODS}")[0][0]
            if shortest is None:
                return RetentionReview(moment, (), ())  # no policy: no period is known
            # Nobody is due before the shortest period since their last event has passed.
            cutoff = plus_days(moment, -int(shortest))
            candidates = sql.execute(
                f"SELECT subject, MAX(occurred_at) FROM ({_events_of_subjects()}) a "
                f"WHERE NOT EXISTS (SELECT 1 FROM {ERASURES} e WHERE e.subject = a.subject) "
                "GROUP BY subject HAVING MAX(occurred_at) <= ? ORDER BY subject",
                (cutoff,),
            )
            context = _Context.load(sql, moment)
            for start in range(0, len(candidates), CHUNK):
                chunk = {str(s): str(at) for s, at in candidates[start : start + CHUNK]}
                for result in self._evaluate(sql, context, chunk):
                    if result.due:
                        (held if result.holds else due).append(result)
        return RetentionReview(moment, tuple(due), tuple(held))

    def subject(self, pseudonym: str, now: datetime) -> SubjectRetention | None:
        """Where one subject stands at ``now``; None when erased or never seen."""
        moment = _moment(now)
        with self.db.reading() as sql:
            if sql.execute(f"SELECT 1 FROM {ERASURES} WHERE subject = ?", (pseudonym,)):
                return None
            rows = sql.execute(
                f"SELECT MAX(occurred_at) FROM ({_events_of_subjects('WHERE subject = ?')}) a",
                (pseudonym,) * 3,
            )
            if not rows or rows[0][0] is None:
                return None
            context = _Context.load(sql, moment)
            [result] = self._evaluate(sql, context, {pseudonym: str(rows[0][0])})
        return result

    def _evaluate(
        self, sql: Sql, context: _Context, last_events: Mapping[str, str]
    ) -> list[SubjectRetention]:
        subjects = list(last_events)
        marks = ", ".join("?" for _ in subjects)
        decisions: dict[str, dict[str, list[Decision]]] = {s: {} for s in subjects}
        for row in sql.execute(
            f"SELECT subject, purpose, seq, occurred_at, decision, policy_version, expires_at, "
            f"guardian FROM {BOOK.decisions_table} WHERE subject IN ({marks})",
            subjects,
        ):
            decisions[row[0]].setdefault(row[1], []).append(_decision(row))
        ages: dict[str, Age] = {}
        for subject, age, attested_at, seq in sql.execute(
            f"SELECT subject, age, attested_at, seq FROM {BOOK.ages_table} "
            f"WHERE subject IN ({marks}) ORDER BY attested_at, seq",
            subjects,
        ):
            ages[subject] = Age(int(age), attested_at, int(seq))  # the latest wins
        disclosed: dict[str, list[tuple[str, str]]] = {s: [] for s in subjects}
        sent: dict[str, list[tuple[str, str]]] = {s: [] for s in subjects}
        requests: dict[str, dict[str, dict[str, Any]]] = {s: {} for s in subjects}
        for subject, occurred_at, type_name, ref, purpose, version in sql.execute(
            f"SELECT subject, occurred_at, type, ref, purpose, policy_version FROM {ACTIVITY} "
            f"WHERE subject IN ({marks}) AND (type = ? OR type IN (?, ?, ?)) ORDER BY seq",
            [*subjects, DISCLOSURE, RECEIVED, *sorted(CLOSING)],
        ):
            if type_name == DISCLOSURE:
                disclosed[subject].append((version, purpose))
                sent[subject].append((ref, occurred_at))
                continue
            facts = requests[subject].setdefault(ref, {})
            if type_name == RECEIVED:
                facts["received_at"] = occurred_at
            elif "closing" not in facts:
                facts.update(closing=type_name, closed_at=occurred_at)
        results = []
        for subject in subjects:
            holds = holds_of(
                subject,
                context.moment,
                requests=[
                    RequestFacts(ref, f.get("received_at"), f.get("closing"), f.get("closed_at"))
                    for ref, f in sorted(requests[subject].items())
                ],
                incidents=context.incidents,
                disclosures=sent[subject],
                legal_hold_days=self.legal_hold_days,
            )
            results.append(
                retention_of(
                    subject,
                    context.moment,
                    decisions=decisions[subject],
                    policies=context.policies,
                    periods=context.periods,
                    age=ages.get(subject),
                    default_minimum_age=self.default_minimum_age,
                    last_event_at=last_events[subject],
                    disclosed=disclosed[subject],
                    holds=holds,
                )
            )
        return results


@dataclass(frozen=True)
class _Context:
    """What every subject's evaluation shares: policies, periods and the open incidents."""

    moment: str
    policies: Mapping[str, Policy]
    periods: Mapping[tuple[str, str], int]
    incidents: tuple[IncidentFacts, ...]

    @classmethod
    def load(cls, sql: Sql, moment: str) -> _Context:
        periods = {
            (str(v), str(p)): int(d)
            for v, p, d in sql.execute(f"SELECT version, purpose, retention_days FROM {PERIODS}")
        }
        steps: dict[str, dict[str, Any]] = {}
        for incident_id, type_name, occurred_at, recipient, start, end in sql.execute(
            f"SELECT incident_id, type, occurred_at, recipient_id, disclosed_from, disclosed_to "
            f"FROM {INCIDENT_STEPS} ORDER BY seq"
        ):
            facts = steps.setdefault(incident_id, {"rules": []})
            if type_name == OPENED:
                facts["opened_at"] = occurred_at
            elif type_name == CLOSED:
                facts.setdefault("closed_at", occurred_at)
            elif recipient is not None:
                facts["rules"].append((recipient, start, end))
        named: dict[str, set[str]] = {}
        for incident_id, subject in sql.execute(
            f"SELECT incident_id, subject FROM {INCIDENT_SUBJECTS}"
        ):
            named.setdefault(incident_id, set()).add(subject)
        incidents = tuple(
            IncidentFacts(
                incident_id,
                facts["opened_at"],
                facts.get("closed_at"),
                frozenset(named.get(incident_id, ())),
                tuple(facts["rules"]),
            )
            for incident_id, facts in sorted(steps.items())
            if "opened_at" in facts
        )
        return cls(moment, BOOK.policies(sql), periods, incidents)


def _events_of_subjects(where: str = "") -> str:
    """``(subject, occurred_at)`` of the subjects' events (``where``: of the three tables, the
    same condition): the activity table's, and the decisions and age attestations of the
    group's consent book (each decision a row per purpose: the latest moment is the same)."""
    return (
        f"SELECT subject, occurred_at FROM {ACTIVITY} {where} UNION ALL "
        f"SELECT subject, occurred_at FROM {BOOK.decisions_table} {where} UNION ALL "
        f"SELECT subject, attested_at FROM {BOOK.ages_table} {where}"
    )


def _decision(row: Row) -> Decision:
    return Decision(int(row[2]), row[3], row[4], row[5], row[6], bool(row[7]))


def _moment(now: datetime) -> str:
    if now.tzinfo is None:
        raise ValueError("now must be an aware datetime (with its offset)")
    return stored(now)
