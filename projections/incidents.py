"""The incident register: every security incident, its 72-hour clock and its GDPR 33(3) contents.

Stored: one row per incident in ``proj_incidents``, and the subjects an assessment names, by
pseudonym, in ``proj_incident_subjects`` (the subjects an ``affected_rule`` selects are found
in the disclosure history, never copied here). Computed when asked, never stored: the authority
deadline (detection + 72 hours by default), whether it is overdue or was missed, whether the
subjects still have to be told (GDPR 34), and which GDPR 33(3) contents are still missing.

When an incident has several events of one kind, the latest assessment and the latest
containment are the ones shown (a re-assessment replaces the earlier one; the subjects named by
any assessment stay affected), while the *first* notification of the authority and of the
subjects is the one shown: it is the one that met, or missed, the deadline. Each of those
columns comes with the ``seq`` of the event it shows, so a reader can fetch and verify it. A row
holds the incident as :mod:`ledger.verifier.incidents_fold` folds it, the fold the report
renders from.
"""

from __future__ import annotations

import builtins
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, fields, replace
from datetime import UTC, datetime
from typing import Any, ClassVar

import orjson

from ledger.verifier import incident_rules as rules
from ledger.verifier.fold import FoldError
from ledger.verifier.incident_rules import INCIDENT_TYPES
from ledger.verifier.incidents_fold import FIELDS, Incident, correct, fold
from ledger.verifier.times import utc
from projections.base import (
    CorrectableProjection,
    LoggedEvent,
    ProjectionError,
    dumps,
    parse_utc,
)
from projections.database import KeyedRows, ProjectionDatabase, Row, Sql
from projections.disclosures import DisclosureHistoryView

INCIDENTS = "proj_incidents"
SUBJECTS = "proj_incident_subjects"

COLUMNS = FIELDS
"""The fields of :class:`ledger.verifier.incidents_fold.Incident`, one column each."""


class IncidentRegister(CorrectableProjection):
    name = "incidents"
    version = 1
    topics = INCIDENT_TYPES
    tables: ClassVar[Mapping[str, str]] = {
        INCIDENTS: (
            "incident_id TEXT PRIMARY KEY, opened_seq BIGINT NOT NULL, detected_at TEXT NOT NULL, "
            "summary TEXT NOT NULL, recipient_id TEXT, status TEXT NOT NULL, risk TEXT, "
            "data_categories TEXT NOT NULL, likely_consequences TEXT, affected_rule TEXT, "
            "approximate_subject_count INTEGER, assessed_at TEXT, assessed_seq BIGINT, "
            "contained_at TEXT, contained_seq BIGINT, measures TEXT, "
            "authority_notified_at TEXT, authority_notified_seq BIGINT, authority TEXT, "
            "authority_reference TEXT, dpo_contact TEXT, delay_reason TEXT, "
            "subjects_notified_at TEXT, subjects_notified_seq BIGINT, "
            "subjects_notified_channel TEXT, subjects_notified_count INTEGER, "
            "closed_at TEXT, closed_seq BIGINT, resolution TEXT, last_seq BIGINT NOT NULL"
        ),
        SUBJECTS: (
            "incident_id TEXT NOT NULL, subject TEXT NOT NULL, seq BIGINT NOT NULL, "
            "PRIMARY KEY (incident_id, subject)"
        ),
    }
    indexes = (
        f"CREATE INDEX IF NOT EXISTS proj_incidents_detected ON {INCIDENTS} (detected_at)",
        f"CREATE INDEX IF NOT EXISTS proj_incident_subjects_subject ON {SUBJECTS} (subject)",
    )

    def __init__(self) -> None:
        self._incidents = KeyedRows(INCIDENTS, "incident_id", COLUMNS)
        """Per page: the rows of the incidents it names."""
        self._subjects: list[Row] = []

    def begin(self, sql: Sql, events: Sequence[LoggedEvent] = ()) -> None:
        self._incidents.reset()
        self._incidents.load(sql, (e.data["incident_id"] for e in events if e.type in self.topics))
        self._subjects = []

    def flush(self, sql: Sql) -> None:
        self._incidents.flush(sql)
        if self._subjects:
            sql.insert(
                SUBJECTS,
                ("incident_id", "subject", "seq"),
                self._subjects,
                "ON CONFLICT (incident_id, subject) DO NOTHING",
            )
            self._subjects = []

    def process(self, sql: Sql, event: LoggedEvent) -> None:
        """The row becomes the incident as :func:`ledger.verifier.incidents_fold.fold` leaves
        it (the fold the report renders from); the subjects it newly names go to their own
        table, with the seq of the assessment that named them first."""
        incident_id = event.data["incident_id"]
        row = self._incidents.get(sql, incident_id)
        # The affected subjects stay in their table: folded from none, the state names only
        # those this event names.
        state = None if row is None else _loaded(row)
        try:
            after = fold(state, event)
        except FoldError as exc:
            raise ProjectionError(f"the incident register: {exc}") from exc
        if state is None:
            self._incidents.add(incident_id, _stored(after.fields()))
        else:
            self._incidents.change(incident_id, _stored(_changed(state, after)))
        self._subjects.extend((incident_id, subject, event.seq) for subject in after.affected)

    def correct(self, sql: Sql, original: LoggedEvent, corrected: LoggedEvent) -> None:
        """Apply the corrected fields to the columns they fill, when the row still shows them,
        by :func:`ledger.verifier.incidents_fold.correct` (a value the catalogue would refuse
        is ignored there too; the affected subjects are never corrected this way)."""
        incident_id = original.data["incident_id"]
        row = self._incidents.get(sql, incident_id)
        if row is None:
            raise ProjectionError(f"incident {incident_id!r} was never opened in the register")
        state = _loaded(row)
        try:
            after = correct(state, original, corrected)
        except FoldError as exc:
            raise ProjectionError(f"the incident register: {exc}") from exc
        changed = _changed(state, after)
        if changed:
            self._incidents.change(incident_id, _stored(changed))


def _loaded(row: Mapping[str, Any]) -> Incident:
    """A row as the fold's state (lists and the rule decoded; no affected subjects)."""
    values = dict(row)
    values["data_categories"] = orjson.loads(values["data_categories"])
    if values["affected_rule"] is not None:
        values["affected_rule"] = orjson.loads(values["affected_rule"])
    return Incident.from_fields(values)


def _changed(before: Incident, after: Incident) -> dict[str, Any]:
    """The fields ``after`` changed (``last_seq`` included)."""
    return {name: value for name, value in after.fields().items() if getattr(before, name) != value}


def _stored(fields: Mapping[str, Any]) -> dict[str, Any]:
    """Fields as the register's columns hold them (lists and objects as JSON)."""
    stored = dict(fields)
    for name in ("data_categories", "affected_rule"):
        if stored.get(name) is not None:
            stored[name] = dumps(stored[name])
    return stored


# -- the query side ----------------------------------------------------------------------------


@dataclass(frozen=True)
class IncidentRecord:
    """One incident as the register holds it, and what follows from it at ``now``."""

    incident_id: str
    opened_seq: int
    detected_at: datetime
    summary: str
    recipient_id: str | None
    status: str
    risk: str | None
    data_categories: tuple[str, ...]
    likely_consequences: str | None
    affected_rule: Mapping[str, str] | None
    approximate_subject_count: int | None
    assessed_at: datetime | None
    assessed_seq: int | None
    contained_at: datetime | None
    contained_seq: int | None
    measures: str | None
    authority_notified_at: datetime | None
    authority_notified_seq: int | None
    authority: str | None
    authority_reference: str | None
    dpo_contact: str | None
    delay_reason: str | None
    subjects_notified_at: datetime | None
    subjects_notified_seq: int | None
    subjects_notified_channel: str | None
    subjects_notified_count: int | None
    closed_at: datetime | None
    closed_seq: int | None
    resolution: str | None
    last_seq: int
    affected_subjects: tuple[str, ...]
    """Pseudonyms of the subjects the assessments name."""
    # computed at the moment asked about
    authority_deadline: datetime
    authority_overdue: bool
    """Not notified, the risk is not ``unlikely`` (or not assessed yet), the deadline passed."""
    authority_notified_late: bool
    subjects_notification_due: bool
    """High risk, and the subjects were not told yet (GDPR 34)."""
    article_33_3: Mapping[str, Any]
    """The GDPR 33(3) contents known so far, and ``missing``: those not recorded yet."""

    def as_dict(self) -> dict[str, Any]:
        return {f.name: _plain(getattr(self, f.name)) for f in fields(self)}

    def affected_count(self, by_rule: Sequence[str] = ()) -> int:
        """The subjects affected: named by an assessment or selected by its rule, each once."""
        return len(set(self.affected_subjects) | set(by_rule))

    def with_rule_selected(self, by_rule: Sequence[str]) -> IncidentRecord:
        """The record with its GDPR 33(3) contents counting the subjects its assessment's rule
        selects (``by_rule``) beside those it names, as the report of a bundle does."""
        stored = {f.name: getattr(self, f.name) for f in fields(self)}
        return replace(
            self,
            article_33_3=rules.article_33_3(
                stored, self.affected_count(by_rule), self.authority_notified_late
            ),
        )


class IncidentRegisterView:
    """Questions about incidents, answered from the incident register."""

    def __init__(self, db: ProjectionDatabase, authority_deadline_hours: int = 72) -> None:
        self.db = db
        self.authority_deadline_hours = authority_deadline_hours

    def list(self, now: datetime) -> list[IncidentRecord]:
        """Every incident, in the order they were detected."""
        _check_aware(now)
        with self.db.reading() as sql:
            rows = sql.execute(
                f"SELECT {', '.join(COLUMNS)} FROM {INCIDENTS} ORDER BY detected_at, incident_id"
            )
            affected: dict[str, list[str]] = {}
            for incident_id, subject in sql.execute(
                f"SELECT incident_id, subject FROM {SUBJECTS} ORDER BY incident_id, seq, subject"
            ):
                affected.setdefault(incident_id, []).append(subject)
        return [self._record(row, affected.get(row[0], []), now) for row in rows]

    def get(self, incident_id: str, now: datetime) -> IncidentRecord | None:
        _check_aware(now)
        with self.db.reading() as sql:
            rows = sql.execute(
                f"SELECT {', '.join(COLUMNS)} FROM {INCIDENTS} WHERE incident_id = ?",
                (incident_id,),
            )
            if not rows:
                return None
            subjects = sql.execute(
                f"SELECT subject FROM {SUBJECTS} WHERE incident_id = ? ORDER BY seq, subject",
                (incident_id,),
            )
        return self._record(rows[0], [s[0] for s in subjects], now)

    def naming_events(self, incident_id: str) -> dict[str, int]:
        """Pseudonym -> the first assessment of the incident that names the subject."""
        with self.db.reading() as sql:
            rows = sql.execute(
                f"SELECT subject, seq FROM {SUBJECTS} WHERE incident_id = ?", (incident_id,)
            )
        return {str(subject): int(seq) for subject, seq in rows}

    def at_recipient(self, recipient_id: str, now: datetime) -> builtins.list[IncidentRecord]:
        """The incidents concerning a recipient: opened against it, or whose (latest)
        assessment's rule names it (:func:`ledger.verifier.incident_rules.at_recipient`, as a
        recipient's bundle lists them), in the order they were detected."""
        return [
            record
            for record in self.list(now)
            if rules.at_recipient(
                {"recipient_id": record.recipient_id, "affected_rule": record.affected_rule},
                recipient_id,
            )
        ]

    def concerning_subject(
        self, subject: str, disclosures: Iterable[tuple[str, str]], now: datetime
    ) -> builtins.list[IncidentRecord]:
        """The incidents concerning a subject, as the subject's bundle lists them: those an
        assessment of which names the subject, and those whose (latest) assessment's rule
        selects one of the subject's disclosure rows, given as ``(recipient_id, occurred_at)``
        (stored times); in the order they were detected."""
        rows = set(disclosures)
        return [
            record
            for record in self.list(now)
            if subject in record.affected_subjects
            or (
                record.affected_rule is not None
                and any(rules.rule_selects(record.affected_rule, *row) for row in rows)
            )
        ]

    def subjects_by_rule(
        self, rule: Mapping[str, Any], disclosures: DisclosureHistoryView
    ) -> builtins.list[str]:
        """The subjects an assessment's rule selects in the disclosure history (the query
        narrows to the rule's recipient and window; :func:`subjects_by_rule` decides)."""
        rows = disclosures.find_all(
            recipient_id=str(rule["recipient_id"]),
            start=parse_utc(utc(rule["disclosed_from"])),
            end=parse_utc(utc(rule["disclosed_to"])),
        )
        return subjects_by_rule(rule, ((r.subject, r.recipient_id, r.occurred_at) for r in rows))

    def _record(self, row: Row, affected: Sequence[str], now: datetime) -> IncidentRecord:
        stored = dict(zip(COLUMNS, row, strict=True))
        for name in COLUMNS:
            if name.endswith("_at") and stored[name] is not None:
                stored[name] = parse_utc(stored[name])
        stored["data_categories"] = tuple(orjson.loads(stored["data_categories"]))
        if stored["affected_rule"] is not None:
            stored["affected_rule"] = orjson.loads(stored["affected_rule"])
        deadline = rules.authority_deadline(stored["detected_at"], self.authority_deadline_hours)
        notified = stored["authority_notified_at"]
        late = rules.authority_notified_late(notified, deadline)
        return IncidentRecord(
            **stored,
            affected_subjects=tuple(affected),
            authority_deadline=deadline,
            authority_overdue=rules.authority_overdue(notified, stored["risk"], deadline, now),
            authority_notified_late=late,
            subjects_notification_due=rules.subjects_notification_due(
                stored["risk"], stored["subjects_notified_at"]
            ),
            article_33_3=rules.article_33_3(stored, len(affected), late),
        )


def subjects_by_rule(
    rule: Mapping[str, Any], disclosures: Iterable[tuple[str, str, str]]
) -> list[str]:
    """The subjects an assessment's rule selects among disclosure rows, given as ``(subject,
    recipient_id, occurred_at)`` (stored times), sorted: the register's ``subjects_by_rule``,
    by :func:`ledger.verifier.incident_rules.rule_selects`, the test the bundles use."""
    return sorted(
        {
            subject
            for subject, recipient_id, occurred_at in disclosures
            if rules.rule_selects(rule, recipient_id, occurred_at)
        }
    )


def _check_aware(now: datetime) -> None:
    if now.tzinfo is None:
        raise ValueError("now must be an aware datetime (with its offset)")


def _plain(value: Any) -> Any:
    """A value as JSON holds it: times in the stored form, tuples as lists."""
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    return value
