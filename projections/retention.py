"""Retention: when a subject's personal data has outlived every purpose it was kept for.

Each purpose a policy version declares has a retention period (``retention_days``). A subject
is *due* for erasure at a moment ``T`` (:func:`retention_of`) when it is not erased and

- for every purpose it decided on, consent is not valid at ``T`` (the shared rules of
  :mod:`ledger.verifier.consent_rules`), and ``T`` is at least the moment the current answer
  rests on (the withdrawal or refusal, the expiry, the material policy version, the minor's
  consent: the verdict's ``since``) plus the purpose's period in the policy version that
  decision cites (the version in force when consent ended, so a version that shortened or
  lengthened the period governs from then on);
- ``T`` is at least the subject's last event (a consent decision, an age attestation, a
  disclosure naming it, a step of one of its requests, a new lifecycle) plus the longest period
  among the purposes it decided on or had data disclosed for. A subject that decided on no
  purpose (known from disclosures or requests only) also waits the longest period of the
  latest policy version.

A due subject is *held*, and never erased, while (:func:`holds_of`) a request of the subject is
open, a request of the subject was refused less than ``legal_hold_days`` ago (default 365), or
an incident that is not closed names the subject in an assessment or selects, by an
assessment's ``affected_rule``, a disclosure to the subject.

Stored (a read model of its own, under ``proj_rt_``; it never reads another's tables): the
consent facts (a :class:`~projections.consent_book.ConsentBook`), each policy version's
periods, each subject's events (with the recipient and purpose of disclosures and the request
of request steps), the incidents' steps and named subjects, and erasures. Every row is keyed by
the ``seq`` of the event it comes from, so a correction replaces exactly what the corrected
event contributed. Due dates and holds are computed when asked, never stored.

:func:`run_retention` is the job: the ``consent-ledger retention run`` command and the server's
scheduled thread both call it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar

from ledger.application import LedgerApplication
from ledger.errors import LedgerError, ValidationError
from ledger.verifier.consent_rules import Age, Decision, Policy, verdict_at
from ledger.verifier.incident_rules import (
    ASSESSED,
    CLOSED,
    INCIDENT_TYPES,
    OPENED,
    normalised_rule,
)
from ledger.verifier.request_rules import CLOSING, RECEIVED, REFUSED, REQUEST_TYPES
from ledger.verifier.times import parse_utc, stored
from ledger.vocabulary import ErasureGround
from projections.base import CorrectableProjection, LoggedEvent
from projections.consent_book import BOOK_TYPES, CONSENT_TYPES, ConsentBook
from projections.database import ProjectionDatabase, Row, Sql

if TYPE_CHECKING:
    from projections.read_models import ReadModels

PREFIX = "proj_rt_"
BOOK = ConsentBook(PREFIX)
"""For readers: no cache."""
PERIODS = "proj_rt_periods"
ACTIVITY = "proj_rt_activity"
INCIDENT_STEPS = "proj_rt_incident_steps"
INCIDENT_SUBJECTS = "proj_rt_incident_subjects"
ERASURES = "proj_rt_erasures"

POLICY = "policy.version_published"
DISCLOSURE = "disclosure.recorded"
AGE = "subject.age_attested"
LIFECYCLE = "subject.lifecycle_started"
ERASED = "subject.erased"
SUBJECT_EVENTS = CONSENT_TYPES | {AGE, LIFECYCLE}
"""Events of one subject, named by ``data.subject``."""
NONE = (None, None)
DEFAULT_LEGAL_HOLD_DAYS = 365
CHUNK = 500
"""Subjects evaluated together (one set of queries each)."""


class Retention(CorrectableProjection):
    name = "retention"
    version = 2
    topics = BOOK_TYPES | REQUEST_TYPES | INCIDENT_TYPES | {DISCLOSURE, LIFECYCLE, ERASED}
    tables: ClassVar[Mapping[str, str]] = {
        **BOOK.tables,
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
        f"CREATE INDEX IF NOT EXISTS proj_rt_activity_seq ON {ACTIVITY} (seq)",
        f"CREATE INDEX IF NOT EXISTS proj_rt_periods_seq ON {PERIODS} (seq)",
        f"CREATE INDEX IF NOT EXISTS proj_rt_incident_subjects_incident ON {INCIDENT_SUBJECTS} "
        "(incident_id)",
    )

    def __init__(self) -> None:
        self.book = ConsentBook(PREFIX)
        self._rows: dict[tuple[str, tuple[str, ...]], list[Row]] = {}
        """Per page: the rows it adds, by table and columns, written at its end."""

    def reset(self, empty: bool) -> None:
        self.book.reset(empty)

    def begin(self, sql: Sql, events: Sequence[LoggedEvent] = ()) -> None:
        self.book.begin(sql)
        self._rows = {}

    def process(self, sql: Sql, event: LoggedEvent) -> None:
        self._record(sql, event)

    def correct(self, sql: Sql, original: LoggedEvent, corrected: LoggedEvent) -> None:
        """Every row comes from one event and carries its seq: replace them all."""
        self.flush(sql)
        if original.type in BOOK_TYPES:
            self.book.retract(sql, original)
        for table in (PERIODS, ACTIVITY, INCIDENT_STEPS, INCIDENT_SUBJECTS):
            sql.execute(f"DELETE FROM {table} WHERE seq = ?", (original.seq,))
        self._record(sql, corrected)

    def flush(self, sql: Sql) -> None:
        self.book.flush(sql)
        rows, self._rows = self._rows, {}
        for (table, columns), values in rows.items():
            sql.insert(table, columns, values)

    def _add(self, table: str, columns: tuple[str, ...], rows: Iterable[Row]) -> None:
        self._rows.setdefault((table, columns), []).extend(rows)

    def _record(self, sql: Sql, event: LoggedEvent) -> None:
        data = event.data
        if event.type in BOOK_TYPES:
            self.book.record(sql, event)
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


# -- the rule ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class PurposeRetention:
    """One purpose the subject decided on, at the moment asked about."""

    purpose: str
    valid: bool
    """Consent is valid at the moment: nothing of the subject's is due."""
    status: str | None
    """The consent verdict's status (``withdrawn``, ``refused``, ``expired``, ...)."""
    since: str | None
    """When the current answer began (the period runs from here)."""
    retention_days: int | None
    period_end: str | None
    """``since`` plus the period; None while consent is valid or no period is known."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "purpose": self.purpose,
            "valid": self.valid,
            "status": self.status,
            "since": self.since,
            "retention_days": self.retention_days,
            "period_end": self.period_end,
        }


@dataclass(frozen=True)
class Hold:
    """Why a subject must be kept although its periods have passed (a legal hold)."""

    kind: str
    """``open_request``, ``refused_request`` or ``incident``"""
    ref: str
    """The request or incident id."""
    since: str
    until: str | None
    """None: until the request is answered, or the incident closed."""

    def describe(self) -> str:
        what = {
            "open_request": f"request {self.ref} is open",
            "refused_request": f"request {self.ref} was refused",
            "incident": f"incident {self.ref} is not closed",
        }[self.kind]
        return what + ("" if self.until is None else f" (held until {self.until})")

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "ref": self.ref, "since": self.since, "until": self.until}


@dataclass(frozen=True)
class SubjectRetention:
    """Where one subject stands at ``moment``: when it is due, why, and what holds it."""

    subject: str
    """The pseudonym."""
    moment: str
    purposes: tuple[PurposeRetention, ...]
    last_event_at: str
    activity_days: int | None
    """The longest period of the purposes the subject's data served (see the module)."""
    activity_period_end: str | None
    due_at: str | None
    """None: not while consent is valid for a purpose, or while no period is known."""
    holds: tuple[Hold, ...] = ()

    @property
    def due(self) -> bool:
        return self.due_at is not None and self.due_at <= self.moment

    @property
    def held(self) -> bool:
        return self.due and bool(self.holds)

    @property
    def erasable(self) -> bool:
        return self.due and not self.holds

    def reason(self) -> str:
        """Why it is due (or not), in a line: purposes, periods and times, no personal data."""
        return "; ".join(self.reasons())

    def reasons(self) -> list[str]:
        """Each purpose's period, then the last event's."""
        parts = []
        for p in self.purposes:
            if p.valid:
                parts.append(f"{p.purpose}: consent valid")
            elif p.period_end is None:
                parts.append(f"{p.purpose}: {p.status or 'no decision yet'}, no period known")
            else:
                parts.append(
                    f"{p.purpose}: {p.status} {p.since}, {p.retention_days} days ended "
                    f"{p.period_end}"
                )
        if self.activity_period_end is None:
            parts.append(f"last event {self.last_event_at}, no period known")
        else:
            parts.append(
                f"last event {self.last_event_at} + {self.activity_days} days = "
                f"{self.activity_period_end}"
            )
        return parts

    def details(self) -> dict[str, Any]:
        """What the erasure event records: times and purposes only."""
        return {
            "due_at": self.due_at,
            "purposes": {p.purpose: p.period_end for p in self.purposes},
            "last_event_period_end": self.activity_period_end,
        }

    def as_dict(self) -> dict[str, Any]:
        return {
            "subject": self.subject,
            "due": self.due,
            "due_at": self.due_at,
            "held": self.held,
            "holds": [h.as_dict() for h in self.holds],
            "reason": self.reason(),
            "purposes": [p.as_dict() for p in self.purposes],
            "last_event_at": self.last_event_at,
            "last_event_period_end": self.activity_period_end,
        }


def retention_of(
    subject: str,
    moment: str,
    *,
    decisions: Mapping[str, Sequence[Decision]],
    policies: Mapping[str, Policy],
    periods: Mapping[tuple[str, str], int],
    age: Age | None,
    default_minimum_age: int,
    last_event_at: str,
    disclosed: Iterable[tuple[str, str]] = (),
    holds: Sequence[Hold] = (),
) -> SubjectRetention:
    """When ``subject`` is due for erasure, judged at ``moment`` (stored form).

    ``decisions``: per purpose, the subject's consent decisions; ``periods``: the retention
    days of ``(policy version, purpose)``; ``disclosed``: the ``(policy version, purpose)`` of
    each disclosure naming the subject. Pure: no storage, no clock.
    """
    purposes = []
    for purpose in sorted(decisions):
        own = decisions[purpose]
        verdict = verdict_at(moment, own, policies, age, default_minimum_age)
        days = periods.get((verdict.policy_version or "", purpose))
        if days is None:  # no decision yet at the moment, or a version without the purpose
            days = _longest(periods, purpose, {d.policy_version for d in own})
        end = None
        if not verdict.valid and verdict.since is not None and days is not None:
            end = _plus_days(verdict.since, days)
        purposes.append(
            PurposeRetention(purpose, verdict.valid, verdict.status, verdict.since, days, end)
        )
    served = [periods.get(pair) for pair in disclosed]
    served += [p.retention_days for p in purposes]
    if not decisions:
        served.append(_longest_of_latest(policies, periods, moment))
    known = [days for days in served if days is not None]
    activity_days = max(known) if known else None
    activity_end = None if activity_days is None else _plus_days(last_event_at, activity_days)
    ends = [p.period_end for p in purposes]
    due_at = None
    if activity_end is not None and all(end is not None for end in ends):
        due_at = max([activity_end, *(end for end in ends if end is not None)])
    return SubjectRetention(
        subject=subject,
        moment=moment,
        purposes=tuple(purposes),
        last_event_at=last_event_at,
        activity_days=activity_days,
        activity_period_end=activity_end,
        due_at=due_at,
        holds=tuple(holds),
    )


def _longest(
    periods: Mapping[tuple[str, str], int], purpose: str, versions: Iterable[str]
) -> int | None:
    """The longest period the cited versions declare for ``purpose`` (or, if none declares
    it, any version)."""
    cited = [periods[(v, purpose)] for v in versions if (v, purpose) in periods]
    if not cited:
        cited = [days for (_, p), days in periods.items() if p == purpose]
    return max(cited) if cited else None


def _longest_of_latest(
    policies: Mapping[str, Policy], periods: Mapping[tuple[str, str], int], moment: str
) -> int | None:
    """The longest period of the latest version in effect at ``moment`` (or published)."""
    ordered = sorted(policies.values(), key=lambda p: (p.effective_at, p.seq))
    in_effect = [p for p in ordered if p.effective_at <= moment] or ordered
    if not in_effect:
        return None
    latest = in_effect[-1].version
    days = [d for (version, _), d in periods.items() if version == latest]
    return max(days) if days else None


def _plus_days(moment: str, days: int) -> str:
    try:
        return stored(parse_utc(moment) + timedelta(days=days))
    except OverflowError:
        return "9999-12-31T23:59:59.999999Z"


@dataclass(frozen=True)
class RequestFacts:
    request_id: str
    received_at: str | None
    closing: str | None
    """``request.fulfilled`` or ``request.refused``"""
    closed_at: str | None


@dataclass(frozen=True)
class IncidentFacts:
    incident_id: str
    opened_at: str
    closed_at: str | None
    named: frozenset[str]
    """Pseudonyms its assessments name."""
    rules: tuple[tuple[str, str, str], ...]
    """(recipient, from, to) of its assessments' ``affected_rule``, any assessment."""


def holds_of(
    subject: str,
    moment: str,
    *,
    requests: Iterable[RequestFacts],
    incidents: Iterable[IncidentFacts],
    disclosures: Iterable[tuple[str, str]],
    legal_hold_days: int,
) -> list[Hold]:
    """The legal holds on ``subject`` at ``moment``. ``disclosures``: (recipient, occurred_at)
    of each disclosure naming it. Pure."""
    holds = []
    for r in requests:
        if r.received_at is None or r.received_at > moment:
            continue
        if r.closed_at is None or r.closed_at > moment:
            holds.append(Hold("open_request", r.request_id, r.received_at, None))
        elif r.closing == REFUSED:
            until = _plus_days(r.closed_at, legal_hold_days)
            if moment < until:
                holds.append(Hold("refused_request", r.request_id, r.closed_at, until))
    sent = list(disclosures)
    for i in incidents:
        if i.opened_at > moment or (i.closed_at is not None and i.closed_at <= moment):
            continue
        selected = any(
            recipient == rule_recipient and start <= at < end
            for recipient, at in sent
            for rule_recipient, start, end in i.rules
        )
        if subject in i.named or selected:
            holds.append(Hold("incident", i.incident_id, i.opened_at, None))
    return holds


# -- the query side ----------------------------------------------------------------------------


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
            cutoff = _plus_days(moment, -int(shortest))
            candidates = sql.execute(
                f"SELECT subject, MAX(occurred_at) FROM {ACTIVITY} a WHERE NOT EXISTS "
                f"(SELECT 1 FROM {ERASURES} e WHERE e.subject = a.subject) "
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
                f"SELECT MAX(occurred_at) FROM {ACTIVITY} WHERE subject = ?", (pseudonym,)
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


def _decision(row: Row) -> Decision:
    return Decision(int(row[2]), row[3], row[4], row[5], row[6], bool(row[7]))


def _moment(now: datetime) -> str:
    if now.tzinfo is None:
        raise ValueError("now must be an aware datetime (with its offset)")
    return stored(now)


# -- the job -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Erased:
    subject: str
    seq: int
    """The ``subject.erased`` event."""
    due_at: str | None


@dataclass
class RetentionOutcome:
    """What a retention run found and did."""

    moment: str
    dry_run: bool
    due: list[SubjectRetention] = field(default_factory=list)
    """Due and not held: erased by a real run (see ``erased``), listed by a dry run."""
    held: list[SubjectRetention] = field(default_factory=list)
    erased: list[Erased] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    """(pseudonym, why): erased meanwhile, or no longer due when looked at again."""
    failed: list[tuple[str, str]] = field(default_factory=list)
    """(pseudonym, error): the erasure was refused for another reason."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "at": self.moment,
            "dry_run": self.dry_run,
            "due": [s.as_dict() for s in self.due],
            "held": [s.as_dict() for s in self.held],
            "erased": [
                {"subject": e.subject, "seq": e.seq, "due_at": e.due_at} for e in self.erased
            ],
            "skipped": [{"subject": s, "why": why} for s, why in self.skipped],
            "failed": [{"subject": s, "error": error} for s, error in self.failed],
        }


def run_retention(
    app: LedgerApplication, models: ReadModels, now: datetime, dry_run: bool
) -> RetentionOutcome:
    """Find the subjects due at ``now`` and, unless ``dry_run``, erase the ones not held.

    The retention read model is caught up first (when it is stopped at a poison event, that
    raises: retention never decides on a stale view). Each subject is looked at again, caught
    up, just before its erasure, so a fact recorded meanwhile (a new consent, a request) still
    keeps it; that last look is at the ledger's present, so a real run never erases ahead of
    its time, and a ``now`` later than the ledger's clock is refused unless ``dry_run``.
    """
    if not dry_run and now > app.clock():
        raise LedgerError("a retention run that erases uses the present, not a later moment")
    runner = models.runner
    view = models.retention
    runner.catch_up([Retention.name])
    review = view.review(now)
    outcome = RetentionOutcome(review.moment, dry_run, list(review.due), list(review.held))
    if dry_run:
        return outcome
    for candidate in review.due:
        # Looked at again, caught up, at the ledger's present: the last word before the erasure.
        runner.catch_up([Retention.name])
        current = view.subject(candidate.subject, app.clock())
        if current is None or not current.erasable:
            why = "erased meanwhile" if current is None else "no longer due"
            if current is not None and current.held:
                why = "held meanwhile: " + "; ".join(h.describe() for h in current.holds)
            outcome.skipped.append((candidate.subject, why))
            continue
        try:
            receipt = app.erase(
                pseudonym=current.subject,
                ground=ErasureGround.RETENTION_ENDED,
                details=current.details(),
            )
        except ValidationError as exc:
            if any(p.rule == "subject_erased" for p in exc.problems):
                outcome.skipped.append((current.subject, "erased already (by another run)"))
                continue
            outcome.failed.append((current.subject, str(exc)))
            continue
        except Exception as exc:  # one subject's failure must not stop the others' erasure
            outcome.failed.append((current.subject, f"{type(exc).__name__}: {exc}"))
            continue
        outcome.erased.append(Erased(current.subject, receipt.seq, current.due_at))
    return outcome


RETENTION_FIRST_RUN = 600.0
"""Seconds after a process starts before its first scheduled retention run."""

logger = logging.getLogger("consent_ledger.retention")


def retention_loop(
    app: LedgerApplication, models: ReadModels, stop: threading.Event, every: float
) -> None:
    """Erase what retention makes due: first a while after start (so a restart loop does not
    run it each time), then every ``every`` seconds, until ``stop`` is set."""
    wait = min(every, RETENTION_FIRST_RUN)
    while not stop.wait(wait):
        wait = every
        try:
            outcome = run_retention(app, models, datetime.now(UTC), dry_run=False)
        except Exception:
            logger.exception("retention run failed")
            continue
        logger.info(
            "retention run: %d erased, %d held, %d skipped, %d failed",
            len(outcome.erased),
            len(outcome.held),
            len(outcome.skipped),
            len(outcome.failed),
        )
        for subject, error in outcome.failed:
            logger.error("retention: erasing %s failed: %s", subject, error)
