"""The human report of an export bundle: ``report.html`` and CSV files, rendered from its events.

The verifier re-renders the report from the bundle's verified events and compares the bytes
with the report the bundle carries, so the report must say exactly what the events say: an
edited report (a violation hidden, a deadline moved) no longer matches. Hence:

- the verdicts come from the rules the read models use (:mod:`ledger.verifier.consent_rules`,
  :mod:`ledger.verifier.verdicts`, :mod:`ledger.verifier.incident_rules`,
  :mod:`ledger.verifier.request_rules`), corrections applied as the read models apply them
  (:mod:`ledger.verifier.corrections`); requests and incidents are folded by the folds the
  request and incident registers store (:mod:`ledger.verifier.requests_fold`,
  :mod:`ledger.verifier.incidents_fold`);
- the output is a function of its inputs only: no clock (what is "overdue" is judged as of the
  last ``recorded_at`` among the events), no randomness, dictionaries iterated in sorted order;
- standard library only, so that a regulator can run it.

The events are read in three passes (through :class:`ReportEvents`, which may decode only the
events of the types a pass reads): the corrections, the context the verdicts need (policies,
recipients, consent decisions and age attestations per subject, incidents, requests), and the
disclosure rows, for ``disclosures.csv``, the verdict counts and the HTML table (kept in a
temporary file until its place in ``report.html``). Memory holds the context but for what grows
with the subjects, which is in a temporary SQLite file (:mod:`ledger.verifier.report_store`),
never the disclosure rows. With ``jobs`` above 1 the disclosure rows and the consent section
are rendered in parts by worker processes, with the same bytes.
"""

from __future__ import annotations

import abc
import contextlib
import csv
import html
import json
import multiprocessing
import pickle
import re
import shutil
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import IO, Any

from ledger.verifier import incident_rules, incidents_fold, request_rules, requests_fold
from ledger.verifier.consent_rules import (
    CONSENT_TYPES,
    DECISION_TYPES,
    Age,
    Decision,
    Details,
    Note,
    Policy,
    Verdict,
    consent_purposes,
    decision_of,
    declared_basis,
    note_of,
    policy_of,
    timeline,
    verdict_at,
)
from ledger.verifier.corrections import CORRECTION, apply_corrections
from ledger.verifier.fold import FoldError
from ledger.verifier.incidents_fold import Incident
from ledger.verifier.mentions import WITHHELD
from ledger.verifier.report_store import ConsentReader, ConsentStore, SubjectConsent
from ledger.verifier.requests_fold import Request
from ledger.verifier.spreadsheet import FORMULA_STARTS
from ledger.verifier.times import parse_utc, stored, utc
from ledger.verifier.verdicts import (
    NOTICE_DUE,
    NOTIFIED,
    RECIPIENT_TYPES,
    VERDICTS,
    VIOLATIONS,
    Recipient,
    StopNotice,
    disclosure_verdict,
    recipient_after,
    stop_notice_of,
)

SCOPE_KINDS = ("subject", "recipient", "period", "incident", "all")
POLICY = "policy.version_published"
AGE = "subject.age_attested"
DISCLOSURE = "disclosure.recorded"
_DISCLOSURES = frozenset({DISCLOSURE})
_CORRECTIONS = frozenset({CORRECTION})
ACCESSED = "personal_data.accessed"

CONSENT_COLUMNS = (
    "subject",
    "subject_ref",
    "purpose",
    "at",
    "change",
    "seq",
    "policy_version",
    "expires_at",
    "guardian",
    "status",
    "dpv_status",
    "valid",
    "details",
)
CONSENT_STATUS_COLUMNS = (
    "subject",
    "subject_ref",
    "purpose",
    "as_of",
    "status",
    "dpv_status",
    "valid",
    "since",
    "policy_version",
    "decided_by_seq",
)
DISCLOSURE_COLUMNS = (
    "seq",
    "disclosure_id",
    "occurred_at",
    "recorded_at",
    "backdated",
    "subject",
    "subject_ref",
    "recipient_id",
    "recipient_name",
    "recipient_role",
    "recipient_country",
    "kind",
    "purpose",
    "legal_basis",
    "data_categories",
    "de_identified",
    "destination_country",
    "policy_version",
    "verdict",
    "violation",
    "consent_seq",
)
INCIDENT_COLUMNS = (
    "incident_id",
    "status",
    "detected_at",
    "recipient_id",
    "risk",
    "data_categories",
    "approximate_subject_count",
    "affected_subject_count",
    "assessed_at",
    "contained_at",
    "authority_deadline",
    "authority_notified_at",
    "authority",
    "authority_deadline_status",
    "subjects_notified_at",
    "subjects_notification_due",
    "closed_at",
    "article_33_3_missing",
    "opened_seq",
    "last_seq",
)
READ_COLUMNS = (
    "seq",
    "recorded_at",
    "client",
    "action",
    "scope",
    "purpose",
    "count",
    "subjects",
    "details",
)
"""``reads.csv``: the reads of personal data among the bundle's events."""
NOTICE_COLUMNS = (
    "notice_id",
    "recipient_id",
    "subject",
    "reason",
    "purposes",
    "cause_seqs",
    "due_seq",
    "due_at",
    "notified_seq",
    "notified_at",
    "transport",
    "attempts",
    "acknowledged_seq",
    "acknowledged_at",
    "acknowledged_via",
    "acknowledged_by",
)
"""``notices.csv``: the notices to recipients among the bundle's events (GDPR 19), one row
each, as its ``recipient.notice_due``, ``recipient.notified`` and ``recipient.acknowledged``
leave it (``acknowledged_via``: the acknowledgement's ``via``, ``api`` or ``webhook_reply``,
empty for one recorded before ``via`` was; ``acknowledged_by``: the API client that
acknowledged, where the event names one)."""
ACKNOWLEDGED = "recipient.acknowledged"
REQUEST_COLUMNS = (
    "request_id",
    "subject",
    "subject_ref",
    "kind",
    "channel",
    "jurisdiction",
    "received_at",
    "identity_verified_at",
    "extensions",
    "extension_days",
    "due_at",
    "status",
    "closed_at",
    "refusal_ground",
    "overdue",
    "answered_late",
    "days_left",
    "received_seq",
    "last_seq",
)

COVERS = {
    "subject": "the subject's consent, every disclosure of the subject's data (the subject's "
    "row of it), the subject's requests, and every incident an assessment of which names the "
    "subject or whose assessment's rule selects one of those disclosures, with all its steps; "
    "other subjects are not named",
    "recipient": "every disclosure to the recipient (each subject's row), and every incident "
    "opened against the recipient or whose assessment's rule names the recipient, with all "
    "its steps",
    "period": "every disclosure that occurred in the period (each subject's row), by the time "
    "it occurred, corrections applied",
    "incident": "the incident, with all its steps, and the disclosures its assessment's rule "
    "selects (to the rule's recipient, in its window: each subject's row)",
    "all": "every subject's consent, every disclosure, incident and request",
}
"""What each scope's report covers, as its head says."""
INCIDENTS_LISTED = {
    "subject": "those an assessment of which names the subject or whose rule selects one of "
    "the subject's disclosures",
    "recipient": "those opened against the recipient or whose assessment's rule names it",
    "incident": "the incident of the scope",
    "all": "every incident",
}
"""Which incidents each scope lists, as its summary says."""

DEADLINE_STATUS_TEXT = {
    "met": "met",
    "missed": "missed: notified late",
    "overdue": "missed: not notified",
    "pending": "pending",
    "not_required": "not required (risk unlikely)",
}

STYLE = """\
body{font-family:system-ui,sans-serif;margin:2em;color:#1a1a1a;line-height:1.4}
table{border-collapse:collapse;margin:.5em 0 1.5em;font-size:.9em}
th,td{border:1px solid #bbb;padding:.25em .5em;text-align:left;vertical-align:top}
th{background:#eee}
tr.violation td,td.violation{background:#fde2e2}
.violation{color:#8b0000;font-weight:bold}
code{font-size:.95em}
dl{display:grid;grid-template-columns:max-content auto;gap:.2em 1em}
dt{font-weight:bold}
dd{margin:0}
"""


class ReportError(ValueError):
    """The scope, the checkpoint or the events cannot make a report."""


@dataclass(frozen=True)
class ReportEvent:
    """One event of the bundle, as the report reads it."""

    seq: int
    type: str
    """The catalogue type, such as ``consent.given``."""
    occurred_at: str
    """RFC 3339, UTC, microseconds, ``Z``: as stored."""
    recorded_at: str
    event_id: str | None
    backdated: bool
    data: Mapping[str, Any]
    """The fact's data exactly as signed: subjects as pseudonyms (``subject``, or lists of
    ``{"subject", "ref"}``), personal data as ``sealed:v1:...`` strings. Verdicts use this."""
    shown: Mapping[str, Any]
    """The same data for people to read: personal data opened, or ``[erased]``, ``[another
    subject]`` or ``[sealed]`` where it cannot be shown. Only displayed, never decided on."""


class ReportEvents(abc.ABC):
    """The events a report is rendered from: calling it iterates them all, in sequence order,
    as often as asked. A source that can read less than every event in full says so by
    overriding :meth:`of_types` and :meth:`lean` (:mod:`ledger.verifier.bundle` skips, without
    decoding them, the lines that cannot be of a type asked for); one that can be read in
    parts, each in another process, by overriding :meth:`split`."""

    @abc.abstractmethod
    def __call__(self) -> Iterable[ReportEvent]:
        """Every event, in sequence order (each source says how it reads them)."""

    def of_types(self, types: frozenset[str]) -> Iterable[ReportEvent]:
        """The events of those types only, in order."""
        return (event for event in self() if event.type in types)

    def lean(self, unresolved: frozenset[str]) -> Iterable[ReportEvent]:
        """Every event; those of the ``unresolved`` types may carry their data as signed (their
        mentions still sealed) and their shown data unread: only their type, seq, times and
        event id are read from them."""
        return self()

    def split(self, parts: int) -> list[ReportEvents] | None:
        """The events in at most ``parts`` consecutive parts, each a source that pickles (to be
        read in another process); None when this source cannot be split."""
        return None


class _Plain(ReportEvents):
    def __init__(self, events: Callable[[], Iterable[ReportEvent]]) -> None:
        self._events = events

    def __call__(self) -> Iterable[ReportEvent]:
        return self._events()


# -- the context: what the verdicts need ------------------------------------------------------


@dataclass
class _Incident:
    state: Incident
    """As :func:`ledger.verifier.incidents_fold.fold` leaves it."""
    timeline: list[tuple[int, str, str, str]] = field(default_factory=list)
    """(seq, occurred_at, type, what it says), corrections included."""


class _Refs:
    """Pseudonym -> the reference as shown (opened, ``[erased]`` ...): the first seen (by seq),
    kept in the report's :class:`ConsentStore`."""

    def __init__(self, context: _Context) -> None:
        self._context = context

    def setdefault(self, subject: str, ref: str, seq: int) -> None:
        self._context.writer.see_ref(subject, ref, seq)

    def get(self, subject: str, default: str | None = None) -> str | None:
        found = self._context.reader.ref(subject)
        return default if found is None else found


@dataclass
class _Context:
    store: ConsentStore | None
    """Each subject's consent decisions and notes, reference and age: what grows with the log,
    on disk (:mod:`ledger.verifier.report_store`)."""
    as_of: str | None = None
    """The last ``recorded_at`` among the events: the moment "overdue" is judged at."""
    corrections: dict[str, list[Mapping[str, Any]]] = field(default_factory=dict)
    policies: dict[str, Policy] = field(default_factory=dict)
    recipients: dict[str, Recipient] = field(default_factory=dict)
    _reader: ConsentReader | None = None

    def __post_init__(self) -> None:
        self.refs = _Refs(self)

    @property
    def reader(self) -> ConsentReader:
        """The store, read once the context pass has sealed it."""
        if self._reader is None:
            self._reader = self.writer.reader()
        return self._reader

    @property
    def writer(self) -> ConsentStore:
        """The store, written in the context pass (not in a worker process)."""
        assert self.store is not None, "a worker's context is read only"
        return self.store

    def decide(self, subject: str, purpose: str, decision: Decision) -> None:
        self.writer.decide(subject, purpose, decision)

    def note(self, subject: str, purpose: str, note: Note) -> None:
        self.writer.note(subject, purpose, note)

    incidents: dict[str, _Incident] = field(default_factory=dict)
    incident_of_event: dict[str, str] = field(default_factory=dict)
    reads: list[dict[str, Any]] = field(default_factory=list)
    """The ``personal_data.accessed`` events, as rows of ``reads.csv``."""
    requests: dict[str, Request] = field(default_factory=dict)
    """As :func:`ledger.verifier.requests_fold.fold` leaves them."""
    stop_notices: dict[str, StopNotice] = field(default_factory=dict)
    """Notice id -> the withdrawal it tells a recipient of (docs/notices.md)."""
    told: dict[tuple[str, str, str], str] = field(default_factory=dict)
    """(subject, recipient, purpose) -> when the recipient was first told of the withdrawal."""
    notices: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Notice id -> its row of ``notices.csv``, in the order the notices were owed."""

    def consent(self, subject: str, purpose: str, moment: str, minimum_age: int) -> Verdict:
        return verdict_at(
            moment,
            self.reader.decisions(subject, purpose),
            self.policies,
            self.reader.age(subject),
            minimum_age,
        )


@dataclass(frozen=True)
class _Fact:
    """An event with every correction of it applied."""

    event: ReportEvent
    occurred_at: str
    data: Mapping[str, Any]
    shown: Mapping[str, Any]

    @property
    def seq(self) -> int:
        return self.event.seq

    @property
    def type(self) -> str:
        return self.event.type


def _facts(
    events: Iterable[ReportEvent], corrections: Mapping[str, Sequence[Mapping[str, Any]]]
) -> Iterator[_Fact]:
    last = 0
    for event in events:
        if event.seq <= last:
            raise ReportError(f"events out of order: {event.seq} after {last}")
        last = event.seq
        fixes = corrections.get(event.event_id or "", ()) if event.event_id else ()
        if not fixes:  # the fact as recorded (read only: no copy needed)
            yield _Fact(event, event.occurred_at, event.data, event.shown)
            continue
        occurred_at, data = apply_corrections(event.occurred_at, event.data, fixes)
        _, shown = apply_corrections(event.occurred_at, event.shown, fixes)
        yield _Fact(event, occurred_at, data, shown)


def _read_corrections(events: Iterable[ReportEvent], context: _Context) -> None:
    """Pass 1: every correction's fields, by the event they correct, as recorded (like the
    read models, a correction of a correction changes nothing)."""
    for event in events:
        if event.type == CORRECTION:
            fields = event.data.get("corrected_fields", {})
            context.corrections.setdefault(event.data["corrects_event_id"], []).append(fields)


def _read_context(
    facts: Iterable[_Fact], context: _Context, only: frozenset[str] | None = None
) -> None:
    """Pass 2: what the verdicts need, from every event but the disclosures (with ``only``,
    from the events of those types); and the last ``recorded_at``."""
    for fact in facts:
        recorded_at = fact.event.recorded_at
        if context.as_of is None or recorded_at > context.as_of:
            context.as_of = recorded_at
        data, kind = fact.data, fact.type
        if kind == DISCLOSURE or (only is not None and kind not in only):
            continue
        if kind == POLICY:
            context.policies[data["version"]] = policy_of(data, fact.seq)
        elif kind in RECIPIENT_TYPES:
            recipient_id = data["recipient_id"]
            after = recipient_after(
                context.recipients.get(recipient_id), kind, fact.seq, fact.occurred_at, data
            )
            if after is None:
                context.recipients.pop(recipient_id, None)
            else:
                context.recipients[recipient_id] = after
        elif kind in CONSENT_TYPES:
            subject = data["subject"]
            context.refs.setdefault(
                subject, str(fact.shown.get("subject_ref", "[sealed]")), fact.seq
            )
            if kind in DECISION_TYPES:
                decision = decision_of(kind, fact.seq, fact.occurred_at, data)
                for purpose in consent_purposes(data):
                    context.decide(subject, purpose, decision)
            else:
                note = note_of(kind, fact.seq, fact.occurred_at, data)
                for purpose in consent_purposes(data):
                    context.note(subject, purpose, note)
        elif kind == AGE:
            subject = data["subject"]
            context.refs.setdefault(
                subject, str(fact.shown.get("subject_ref", "[sealed]")), fact.seq
            )
            context.writer.see_age(subject, Age(int(data["age"]), fact.occurred_at, fact.seq))
        elif kind in incident_rules.INCIDENT_TYPES:
            _read_incident(fact, context)
        elif kind in request_rules.REQUEST_TYPES:
            _read_request(fact, context)
        elif kind == ACCESSED:
            context.reads.append(_read_row(fact))
        elif kind in (NOTICE_DUE, NOTIFIED, ACKNOWLEDGED):
            _read_notice(fact, context)
        if kind == NOTICE_DUE:
            found = stop_notice_of(data)
            if found is not None:
                context.stop_notices[found[0]] = found[1]
        elif kind == NOTIFIED:
            notice = context.stop_notices.get(str(data.get("notice_id")))
            if notice is not None:
                for purpose in notice.purposes:
                    key = (notice.subject, notice.recipient_id, purpose)
                    if key not in context.told or fact.occurred_at < context.told[key]:
                        context.told[key] = fact.occurred_at
        elif kind == CORRECTION:
            incident_id = context.incident_of_event.get(fact.event.data["corrects_event_id"])
            if incident_id is not None:
                context.incidents[incident_id].timeline.append(
                    (fact.seq, fact.occurred_at, kind, _describe(kind, fact.shown))
                )


def _read_notice(fact: _Fact, context: _Context) -> None:
    """A notice's step, into its row of ``notices.csv``: the subject as this bundle may name
    them (a pseudonym, or ``[another subject]``)."""
    data = fact.data
    notice_id = str(data.get("notice_id"))
    row = context.notices.get(notice_id)
    if row is None:
        told = data.get("told_subjects")
        subject = told[0] if isinstance(told, list) and told else None
        row = context.notices[notice_id] = dict.fromkeys(NOTICE_COLUMNS, "")
        row.update(notice_id=notice_id, recipient_id=data.get("recipient_id"), subject=subject)
    if fact.type == NOTICE_DUE:
        row.update(
            reason=data.get("reason"),
            purposes=list(data.get("purposes", [])),
            cause_seqs=list(data.get("cause_seqs", [])),
            due_seq=fact.seq,
            due_at=fact.occurred_at,
        )
    elif fact.type == NOTIFIED:
        row.update(
            notified_seq=fact.seq,
            notified_at=fact.occurred_at,
            transport=data.get("transport"),
            attempts=data.get("attempts"),
        )
    else:
        row.update(
            acknowledged_seq=fact.seq,
            acknowledged_at=fact.occurred_at,
            acknowledged_via=data.get("via"),
            acknowledged_by=data.get("client"),
        )


def _read_row(fact: _Fact) -> dict[str, Any]:
    """A read of personal data, as ``reads.csv`` lists it: the subjects this bundle may name
    (in a subject's bundle, only that subject; the others count in ``count``)."""
    data = fact.data
    opened = data.get("opened_subjects", [])
    named = [s for s in opened if isinstance(s, str) and s != WITHHELD]
    details = data.get("details", {})
    return {
        "seq": fact.seq,
        "recorded_at": fact.event.recorded_at,
        "client": data.get("client"),
        "action": data.get("action"),
        "scope": data.get("scope"),
        "purpose": data.get("purpose"),
        "count": data.get("count"),
        "subjects": named,
        "details": json.dumps(details, sort_keys=True, ensure_ascii=False) if details else "",
    }


def _read_incident(fact: _Fact, context: _Context) -> None:
    incident_id = fact.data["incident_id"]
    found = context.incidents.get(incident_id)
    try:
        state = incidents_fold.fold(None if found is None else found.state, fact)
    except FoldError:
        return  # a step of an incident whose opening is not among the events (or a
        # second opening, which the ledger refuses: the first stays)
    if found is None:
        incident = context.incidents[incident_id] = _Incident(state)
    else:
        incident = found
        incident.state = state
        for item in fact.shown.get("affected_subjects", []):
            if isinstance(item, Mapping) and "subject" in item:
                context.refs.setdefault(
                    item["subject"], _text(item.get("ref", "[sealed]")), fact.seq
                )
    if fact.event.event_id is not None:
        context.incident_of_event[fact.event.event_id] = incident_id
    incident.timeline.append(
        (fact.seq, fact.occurred_at, fact.type, _describe(fact.type, fact.shown))
    )


def _read_request(fact: _Fact, context: _Context) -> None:
    data = fact.data
    if fact.type == request_rules.RECEIVED:
        context.refs.setdefault(
            data["subject"], str(fact.shown.get("subject_ref", "[sealed]")), fact.seq
        )
    request_id = data["request_id"]
    try:
        context.requests[request_id] = requests_fold.fold(context.requests.get(request_id), fact)
    except FoldError:
        return  # a step of a request whose receipt is not among the events (or a second
        # receipt, which the ledger refuses: the first stays)


def _describe(kind: str, shown: Mapping[str, Any]) -> str:
    """What an incident step or a correction says, in a line."""
    keys = {
        incident_rules.OPENED: ("detected_at", "summary", "recipient_id"),
        incident_rules.ASSESSED: ("risk", "data_categories", "likely_consequences"),
        incident_rules.CONTAINED: ("measures",),
        incident_rules.AUTHORITY_NOTIFIED: ("authority", "reference", "delay_reason"),
        incident_rules.SUBJECTS_NOTIFIED: ("channel", "subject_count"),
        incident_rules.CLOSED: ("resolution",),
        CORRECTION: ("corrects_event_id", "reason", "corrected_fields"),
    }[kind]
    return "; ".join(f"{k}: {_text(shown[k])}" for k in keys if shown.get(k) is not None)


# -- selection by scope -----------------------------------------------------------------------


@dataclass(frozen=True)
class _Scope:
    kind: str
    subject: str | None = None
    recipient_id: str | None = None
    start: str | None = None
    end: str | None = None
    incident_id: str | None = None

    @classmethod
    def parse(cls, scope: Mapping[str, Any]) -> _Scope:
        kind = scope.get("kind")
        try:
            if kind == "subject":
                return cls(kind, subject=str(scope["subject"]))
            if kind == "recipient":
                return cls(kind, recipient_id=str(scope["recipient_id"]))
            if kind == "period":
                return cls(kind, start=utc(str(scope["from"])), end=utc(str(scope["to"])))
            if kind == "incident":
                return cls(kind, incident_id=str(scope["incident_id"]))
        except (KeyError, ValueError) as exc:
            raise ReportError(f"scope {dict(scope)!r} is incomplete: {exc}") from None
        if kind == "all":
            return cls(kind)
        raise ReportError(f"scope kind {kind!r} is not one of {', '.join(SCOPE_KINDS)}")

    @property
    def shows_consent(self) -> bool:
        return self.kind in ("subject", "all")

    @property
    def shows_incidents(self) -> bool:
        return self.kind in ("subject", "recipient", "incident", "all")

    @property
    def shows_requests(self) -> bool:
        return self.kind in ("subject", "all")

    def consent_subjects(self, context: _Context) -> Iterator[tuple[str, SubjectConsent]]:
        """The subjects whose consent the report shows, sorted, each with its decisions and
        notes by purpose (read from the store as they are written, not held)."""
        if not self.shows_consent:
            return iter(())
        found = context.reader.consent_by_subject()
        if self.subject is None:
            return found
        return ((s, held) for s, held in found if s == self.subject)

    def incidents(self, context: _Context, selected: set[str]) -> list[_Incident]:
        """The incidents reported; ``selected``: those whose assessment's rule selects a
        reported disclosure row."""
        if not self.shows_incidents:
            return []
        chosen = []
        for incident in context.incidents.values():
            f = incident.state
            if (
                self.kind == "all"
                or (self.kind == "incident" and f.incident_id == self.incident_id)
                or (
                    self.kind == "subject"
                    and (self.subject in f.affected or f.incident_id in selected)
                )
                or (
                    self.kind == "recipient"
                    and incident_rules.at_recipient(
                        {"recipient_id": f.recipient_id, "affected_rule": f.affected_rule},
                        str(self.recipient_id),
                    )
                )
            ):
                chosen.append(incident)
        return sorted(chosen, key=lambda i: (i.state.detected_at, i.state.incident_id))

    def notices(self, context: _Context) -> list[dict[str, Any]]:
        """The notices the report lists: a recipient's bundle, those it was owed; a subject's,
        those about the subject (their bundles may hold others' for the closure's sake);
        any other scope, every notice among the events."""
        found = context.notices.values()
        if self.recipient_id is not None:
            return [n for n in found if n["recipient_id"] == self.recipient_id]
        if self.subject is not None:
            return [n for n in found if n["subject"] == self.subject]
        return list(found)

    def requests(self, context: _Context) -> list[Request]:
        if not self.shows_requests:
            return []
        chosen = [r for r in context.requests.values() if self.subject in (None, r.subject)]
        return sorted(chosen, key=lambda r: (r.received_at, r.request_id))

    def reports_row(
        self, subject: str, occurred_at: str, recipient_id: str, context: _Context
    ) -> bool:
        """Whether one subject's row of a disclosure is within the scope."""
        if self.kind == "all":
            return True
        if self.kind == "subject":
            return subject == self.subject
        if self.kind == "recipient":
            return recipient_id == self.recipient_id
        if self.kind == "period":
            assert self.start is not None and self.end is not None
            return self.start <= occurred_at < self.end
        incident = context.incidents.get(self.incident_id or "")
        rule = None if incident is None else incident.state.affected_rule
        return rule is not None and incident_rules.rule_selects(rule, recipient_id, occurred_at)

    def title(self, context: _Context) -> str:
        if self.kind == "subject":
            assert self.subject is not None
            ref = context.refs.get(self.subject)
            return f"subject {self.subject}" + (f" ({ref})" if ref else "")
        if self.kind == "recipient":
            assert self.recipient_id is not None
            recipient = context.recipients.get(self.recipient_id)
            name = f" ({recipient.name})" if recipient is not None else ""
            return f"recipient {self.recipient_id}{name}"
        if self.kind == "period":
            return f"disclosures from {self.start} to {self.end} (end excluded)"
        if self.kind == "incident":
            return f"incident {self.incident_id}"
        return "the whole log"

    def covers(self) -> str:
        return COVERS[self.kind]

    def incidents_are(self) -> str:
        """Which incidents the report lists, for the summary."""
        return INCIDENTS_LISTED.get(self.kind, "")


# -- rows -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Settings:
    minimum_age: int
    authority_deadline_hours: int
    request_due_days: int
    request_due_days_by_jurisdiction: Mapping[str, int]


def _disclosure_rows(
    facts: Iterable[_Fact], context: _Context, scope: _Scope, settings: _Settings
) -> Iterator[dict[str, Any]]:
    """One row per subject per disclosure within the scope, in log order, then by subject."""
    for fact in facts:
        if fact.type != DISCLOSURE:
            continue
        data = fact.data
        refs = {
            item["subject"]: item.get("ref")
            for item in fact.shown.get("subjects", [])
            if isinstance(item, Mapping)
        }
        recipient = context.recipients.get(data["recipient_id"])
        for subject in sorted(dict.fromkeys(item["subject"] for item in data["subjects"])):
            if not scope.reports_row(subject, fact.occurred_at, data["recipient_id"], context):
                continue
            verdict, consent_seq = disclosure_verdict(
                fact.occurred_at,
                data["legal_basis"],
                recipient,
                partial(
                    context.consent,
                    subject,
                    data["purpose"],
                    fact.occurred_at,
                    settings.minimum_age,
                ),
                declared_basis=declared_basis(
                    context.policies, data["policy_version"], data["purpose"]
                ),
                kind=data["kind"],
                de_identified=bool(data["de_identified"]),
                told_at=context.told.get((subject, data["recipient_id"], data["purpose"])),
            )
            yield {
                "seq": fact.seq,
                "disclosure_id": data["disclosure_id"],
                "occurred_at": fact.occurred_at,
                "recorded_at": fact.event.recorded_at,
                "backdated": fact.event.backdated,
                "subject": subject,
                "subject_ref": refs.get(subject, "[sealed]"),
                "recipient_id": data["recipient_id"],
                "recipient_name": None if recipient is None else recipient.name,
                "recipient_role": None if recipient is None else recipient.role,
                "recipient_country": None if recipient is None else recipient.country,
                "kind": data["kind"],
                "purpose": data["purpose"],
                "legal_basis": data["legal_basis"],
                "data_categories": list(data["data_categories"]),
                "de_identified": bool(data["de_identified"]),
                "destination_country": data["destination_country"],
                "policy_version": data["policy_version"],
                "verdict": verdict,
                "violation": verdict in VIOLATIONS,
                "consent_seq": consent_seq,
            }


@dataclass(frozen=True)
class _Subject:
    """One subject's consent, as the consent section reads it."""

    subject: str
    ref: str
    age: Age | None
    purposes: SubjectConsent

    def consent(self, context: _Context, purpose: str, moment: str, minimum_age: int) -> Verdict:
        decisions = self.purposes[purpose][0]
        return verdict_at(moment, decisions, context.policies, self.age, minimum_age)


def _consent_rows(
    held: _Subject, context: _Context, settings: _Settings
) -> Iterator[dict[str, Any]]:
    """The subject's consent timeline, purpose by purpose (:func:`timeline`: each decision and
    note, each expiry, each material policy change that required renewal), with the status
    from that moment on."""
    for purpose in sorted(held.purposes):
        decisions, notes = held.purposes[purpose]
        for item in timeline(decisions, notes, context.policies):
            verdict = held.consent(context, purpose, item.at, settings.minimum_age)
            yield {
                "subject": held.subject,
                "subject_ref": held.ref,
                "purpose": purpose,
                "at": item.at,
                "change": item.change,
                "seq": item.seq,
                "policy_version": item.policy_version,
                "expires_at": item.expires_at,
                "guardian": item.guardian,
                "status": verdict.status,
                "dpv_status": verdict.dpv,
                "valid": verdict.valid,
                "details": _details(item.details),
            }


def _details(details: Details) -> str:
    """A note's own fields in a line, as an incident step's are (:func:`_describe`)."""
    return "; ".join(f"{name}: {value}" for name, value in details if value is not None)


def _consent_status_rows(
    held: _Subject, context: _Context, settings: _Settings
) -> Iterator[dict[str, Any]]:
    """Each purpose the subject decided on, as it stands at the last recorded event."""
    as_of = context.as_of or ""
    for purpose in sorted(held.purposes):
        verdict = held.consent(context, purpose, as_of, settings.minimum_age)
        yield {
            "subject": held.subject,
            "subject_ref": held.ref,
            "purpose": purpose,
            "as_of": as_of,
            "status": verdict.status,
            "dpv_status": verdict.dpv,
            "valid": verdict.valid,
            "since": verdict.since,
            "policy_version": verdict.policy_version,
            "decided_by_seq": verdict.seq,
        }


def _affected_count(
    named: Sequence[str], rule: Mapping[str, Any] | None, by_rule: set[str] | None, scope: _Scope
) -> tuple[int, int | None]:
    """The subjects an incident affects, named or selected by its rule, each once: the count
    GDPR 33(3) is judged on, and the count the report shows, which is None where the bundle
    cannot count them all: a subject's bundle withholds the others named and holds only their
    own disclosures; a recipient's bundle holds no disclosure to another recipient that the
    rule names. The incident's own bundle (and the whole log's) always can."""
    union = set(named) | (by_rule or set())
    complete = scope.kind in ("incident", "all") or (
        scope.kind == "recipient" and (rule is None or rule["recipient_id"] == scope.recipient_id)
    )
    return len(union), (len(union) if complete else None)


def _incident_row(
    incident: _Incident,
    context: _Context,
    settings: _Settings,
    by_rule: set[str] | None,
    scope: _Scope,
) -> dict[str, Any]:
    f = incident.state
    deadline = incident_rules.authority_deadline(
        parse_utc(f.detected_at), settings.authority_deadline_hours
    )
    notified = f.authority_notified_at
    notified_at = None if notified is None else parse_utc(notified)
    late = incident_rules.authority_notified_late(notified_at, deadline)
    if notified_at is not None:
        status = "missed" if late else "met"
    elif f.risk == "unlikely":
        status = "not_required"
    elif context.as_of is not None and incident_rules.authority_overdue(
        None, f.risk, deadline, parse_utc(context.as_of)
    ):
        status = "overdue"
    else:
        status = "pending"
    judged, shown = _affected_count(f.affected, f.affected_rule, by_rule, scope)
    article = incident_rules.article_33_3(f.fields(), judged, late)
    return {
        "incident_id": f.incident_id,
        "status": f.status,
        "detected_at": f.detected_at,
        "recipient_id": f.recipient_id,
        "risk": f.risk,
        "data_categories": list(f.data_categories or []),
        "approximate_subject_count": f.approximate_subject_count,
        "affected_subject_count": shown,
        "assessed_at": f.assessed_at,
        "contained_at": f.contained_at,
        "authority_deadline": stored(deadline),
        "authority_notified_at": notified,
        "authority": f.authority,
        "authority_deadline_status": status,
        "subjects_notified_at": f.subjects_notified_at,
        "subjects_notification_due": incident_rules.subjects_notification_due(
            f.risk, f.subjects_notified_at
        ),
        "closed_at": f.closed_at,
        "article_33_3_missing": list(article["missing"]),
        "opened_seq": f.opened_seq,
        "last_seq": f.last_seq,
    }


def _request_row(request: Request, context: _Context, settings: _Settings) -> dict[str, Any]:
    days = request_rules.due_days_for(
        request.jurisdiction,
        settings.request_due_days,
        settings.request_due_days_by_jurisdiction,
    )
    due = request_rules.due_at(parse_utc(request.received_at), days, request.extension_days)
    closed = request.closed_at
    status = request.status
    now = None if context.as_of is None else parse_utc(context.as_of)
    return {
        "request_id": request.request_id,
        "subject": request.subject,
        "subject_ref": context.refs.get(request.subject, "[sealed]"),
        "kind": request.kind,
        "channel": request.channel,
        "jurisdiction": request.jurisdiction,
        "received_at": request.received_at,
        "identity_verified_at": request.identity_verified_at,
        "extensions": request.extensions,
        "extension_days": request.extension_days,
        "due_at": stored(due),
        "status": status,
        "closed_at": closed,
        "refusal_ground": request.refusal_ground,
        "overdue": now is not None and request_rules.overdue(status, due, now),
        "answered_late": request_rules.answered_late(
            None if closed is None else parse_utc(closed), due
        ),
        "days_left": None if now is None else request_rules.days_left(status, due, now),
        "received_seq": request.received_seq,
        "last_seq": request.last_seq,
    }


# -- writing ----------------------------------------------------------------------------------


def _text(value: Any) -> str:
    """A value as the report and the CSV files write it."""
    if type(value) is str:
        return value
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return ";".join(_text(v) for v in value)
    if isinstance(value, Mapping):
        return ", ".join(f"{k}={_text(value[k])}" for k in sorted(value))
    return str(value)


def _e(value: Any) -> str:
    text = value if type(value) is str else _text(value)
    return html.escape(text, quote=True) if _special(text) else text


_special = re.compile("[&<>\"']").search
"""What :func:`html.escape` replaces: text without any of it is its own escape."""
_FORMULA_FIRST = frozenset(FORMULA_STARTS)
"""The characters :func:`ledger.verifier.spreadsheet.csv_text` neutralises a cell starting
with (each one character)."""
assert all(len(start) == 1 for start in FORMULA_STARTS)


def _csv(value: Any) -> str:
    """A value as the CSV files write it: as the report does, formulas neutralised (what
    :func:`ledger.verifier.spreadsheet.csv_text` does, inline: it runs for every cell)."""
    text = value if type(value) is str else _text(value)
    return "'" + text if text[:1] in _FORMULA_FIRST else text


def _write_csv(
    directory: Path, name: str, columns: Sequence[str], rows: Iterable[Mapping[str, Any]]
) -> None:
    with (directory / name).open("w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(columns)
        for row in rows:
            writer.writerow([_csv(row[c]) for c in columns])


def _table_head(out: IO[str], headings: Sequence[str]) -> None:
    out.write("<table>\n<thead><tr>")
    out.write("".join(f"<th>{_e(h)}</th>" for h in headings))
    out.write("</tr></thead>\n<tbody>\n")


def _table_row(out: IO[str], cells: Sequence[Any], violation: bool = False) -> None:
    start = '<tr class="violation">' if violation else "<tr>"
    if not cells:
        out.write(start + "</tr>\n")
        return
    out.write(start + "<td>" + "</td><td>".join(map(_e, cells)) + "</td></tr>\n")


def _table_end(out: IO[str]) -> None:
    out.write("</tbody>\n</table>\n")


@dataclass(frozen=True)
class _Checkpoint:
    origin: str
    size: str
    root_hash: str

    @classmethod
    def parse(cls, text: str) -> _Checkpoint:
        lines = text.split("\n")
        if len(lines) < 3 or not lines[1].isdigit():
            raise ReportError("the checkpoint text does not start with origin, size and hash")
        return cls(lines[0], lines[1], lines[2])


def write_report(
    scope: Mapping[str, Any],
    checkpoint_text: str,
    events: Callable[[], Iterable[ReportEvent]],
    directory: Path,
    *,
    default_minimum_age: int,
    authority_deadline_hours: int = incident_rules.DEFAULT_AUTHORITY_DEADLINE_HOURS,
    request_due_days: int = request_rules.DEFAULT_DUE_DAYS,
    request_due_days_by_jurisdiction: Mapping[str, int] | None = None,
    jobs: int = 1,
) -> list[str]:
    """Write ``report.html`` and the CSV files into ``directory``; return their names, sorted.

    With ``jobs`` above 1, the disclosure rows and the consent section are rendered in that
    many worker processes, in parts (when ``events`` is a :class:`ReportEvents` that splits);
    the bytes written are the same whatever ``jobs``.

    ``events()`` iterates the bundle's events in sequence order; it is called three times.
    ``scope`` is ``{"kind": "subject", "subject": <pseudonym>}``, ``{"kind": "recipient",
    "recipient_id": ...}``, ``{"kind": "period", "from": <RFC 3339>, "to": <RFC 3339>}`` (end
    excluded), ``{"kind": "incident", "incident_id": ...}`` or ``{"kind": "all"}``. The
    settings are those the read models use; the verifier must pass the values the bundle
    was made with.
    """
    with contextlib.ExitStack() as parts:  # the temporary files, closed whatever happens
        return _write_report(
            parts,
            scope,
            checkpoint_text,
            events,
            directory,
            default_minimum_age=default_minimum_age,
            authority_deadline_hours=authority_deadline_hours,
            request_due_days=request_due_days,
            request_due_days_by_jurisdiction=request_due_days_by_jurisdiction,
            jobs=jobs,
        )


def _spool(parts: contextlib.ExitStack) -> IO[str]:
    """A temporary text file that ``parts`` closes (and so deletes)."""
    spool = tempfile.TemporaryFile("w+", encoding="utf-8", newline="\n")  # noqa: SIM115
    return parts.enter_context(spool)


def _write_report(
    parts: contextlib.ExitStack,
    scope: Mapping[str, Any],
    checkpoint_text: str,
    events: Callable[[], Iterable[ReportEvent]],
    directory: Path,
    *,
    default_minimum_age: int,
    authority_deadline_hours: int,
    request_due_days: int,
    request_due_days_by_jurisdiction: Mapping[str, int] | None,
    jobs: int,
) -> list[str]:
    target = _Scope.parse(scope)
    checkpoint = _Checkpoint.parse(checkpoint_text)
    settings = _Settings(
        default_minimum_age,
        authority_deadline_hours,
        request_due_days,
        dict(request_due_days_by_jurisdiction or {}),
    )
    scratch = Path(parts.enter_context(tempfile.TemporaryDirectory(prefix="report-")))
    store = ConsentStore(scratch / "context.sqlite3")
    parts.callback(store.close)
    context = _Context(store)
    source = events if isinstance(events, ReportEvents) else _Plain(events)
    _read_corrections(source.of_types(_CORRECTIONS), context)
    # Worker processes only for events that split into parts (a small bundle does not).
    split = source.split(_PARTS_PER_JOB * jobs) if jobs > 1 else None
    pool = _pool(parts, jobs) if split else None
    if pool is None or split is None:
        _read_context(_facts(source.lean(_DISCLOSURES), context.corrections), context)
    else:
        _read_context_in_parts(pool, split, source, context, scratch)
    store.seal()

    written = ["disclosures.csv", "report.html"]
    rules = {
        incident_id: incident.state.affected_rule
        for incident_id, incident in sorted(context.incidents.items())
        if incident.state.affected_rule is not None
    }
    shared = _Shared(
        store.path,
        scratch,
        target,
        settings,
        rules,
        context.as_of,
        context.corrections,
        context.policies,
        context.recipients,
        context.incidents,
        context.told,
    )
    shared_file = scratch / "shared.pickle"
    if pool is not None:
        shared_file.write_bytes(pickle.dumps(shared, pickle.HIGHEST_PROTOCOL))
    # Pass 3: the disclosure rows, written at once to disclosures.csv and to the HTML table,
    # which waits in a temporary file for its place in report.html (after the summary, which
    # needs the counts). Then each subject's consent rows, worked out once, for consent.csv,
    # consent_status.csv and the HTML section (kept in a temporary file too). With a pool,
    # both in parts: the disclosure rows by parts of the events, the subjects by ranges; each
    # part written to files of its own, which are joined here in order.
    table = _spool(parts)
    consent_html = _spool(parts)
    with (directory / "disclosures.csv").open("w", encoding="utf-8", newline="") as csv_file:
        writer = csv.writer(csv_file, lineterminator="\n")
        writer.writerow(DISCLOSURE_COLUMNS)
        _disclosures_head(table)
        if pool is None or split is None:
            tally = _render_rows(source, context, shared, writer, table)
        else:
            tally = _Tally.empty(rules)
            futures = [
                pool.submit(_rows_part, shared_file, i, part) for i, part in enumerate(split)
            ]
            for i, future in enumerate(futures):
                tally.add(future.result())
                _append(scratch / f"rows-{i}.csv", csv_file)
                _append(scratch / f"rows-{i}.html", table)
        _table_end(table)
    if target.shows_consent:
        with (
            (directory / "consent.csv").open("w", encoding="utf-8", newline="") as timeline,
            (directory / "consent_status.csv").open("w", encoding="utf-8", newline="") as status,
        ):
            timeline_csv = csv.writer(timeline, lineterminator="\n")
            status_csv = csv.writer(status, lineterminator="\n")
            timeline_csv.writerow(CONSENT_COLUMNS)
            status_csv.writerow(CONSENT_STATUS_COLUMNS)
            ranges = None
            if pool is not None and target.subject is None:
                ranges = _subject_ranges(context.reader, _PARTS_PER_JOB * jobs)
            if pool is None or ranges is None:
                subjects = target.consent_subjects(context)
                _write_consent(consent_html, subjects, context, settings, timeline_csv, status_csv)
            else:
                consent_html.write(_CONSENT_HEAD)
                done = [
                    pool.submit(_consent_part, shared_file, i, after, until)
                    for i, (after, until) in enumerate(ranges)
                ]
                for i, part in enumerate(done):
                    part.result()
                    _append(scratch / f"consent-{i}.csv", timeline)
                    _append(scratch / f"status-{i}.csv", status)
                    _append(scratch / f"consent-{i}.html", consent_html)
                if not ranges:
                    consent_html.write(_NO_CONSENT)
        written += ["consent.csv", "consent_status.csv"]
    counts, selected, by_rule = tally.counts, tally.selected, tally.by_rule
    incidents = [
        (i, _incident_row(i, context, settings, by_rule.get(i.state.incident_id), target))
        for i in target.incidents(context, selected)
    ]
    if target.shows_incidents:
        _write_csv(directory, "incidents.csv", INCIDENT_COLUMNS, (row for _, row in incidents))
        written.append("incidents.csv")
    requests = [_request_row(r, context, settings) for r in target.requests(context)]
    if target.shows_requests:
        _write_csv(directory, "requests.csv", REQUEST_COLUMNS, requests)
        written.append("requests.csv")
    _write_csv(directory, "reads.csv", READ_COLUMNS, context.reads)
    written.append("reads.csv")
    notices = target.notices(context)
    _write_csv(directory, "notices.csv", NOTICE_COLUMNS, notices)
    written.append("notices.csv")

    with (directory / "report.html").open("w", encoding="utf-8", newline="\n") as out:
        _write_head(out, target, checkpoint, context)
        _write_summary(out, counts, incidents, requests, target)
        consent_html.seek(0)
        shutil.copyfileobj(consent_html, out)
        table.seek(0)
        shutil.copyfileobj(table, out)
        if target.shows_incidents:
            _write_incidents(out, incidents, context.refs, target.kind in ("incident", "all"))
        if target.shows_requests:
            _write_requests(out, requests)
        _write_reads(out, context.reads)
        _write_notices(out, notices, target)
        out.write("</body>\n</html>\n")
    return sorted(written)


def _write_head(out: IO[str], scope: _Scope, checkpoint: _Checkpoint, context: _Context) -> None:
    title = f"Consent Ledger report: {scope.title(context)}"
    out.write('<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n')
    out.write(f"<title>{_e(title)}</title>\n<style>\n{STYLE}</style>\n</head>\n<body>\n")
    out.write(f"<h1>{_e(title)}</h1>\n")
    out.write(f"<p>This report covers {_e(scope.covers())}.</p>\n<dl>\n")
    for term, value in (
        ("Scope", scope.title(context)),
        ("Log (checkpoint origin)", checkpoint.origin),
        ("Checkpoint tree size", checkpoint.size),
        ("Checkpoint root hash", checkpoint.root_hash),
        ("As of (last event recorded)", context.as_of or "no events"),
    ):
        out.write(f"<dt>{_e(term)}</dt><dd><code>{_e(value)}</code></dd>\n")
    out.write("</dl>\n")
    out.write(
        "<p>Every fact below comes from signed events proven included in this checkpoint; "
        "verdicts and deadlines are computed from those events, corrections applied. "
        "Times are UTC as the log stores them.</p>\n"
    )


def _write_summary(
    out: IO[str],
    counts: Mapping[str, int],
    incidents: Sequence[tuple[_Incident, dict[str, Any]]],
    requests: Sequence[Mapping[str, Any]],
    scope: _Scope,
) -> None:
    out.write("<h2>Summary</h2>\n")
    violations = sum(counts.get(v, 0) for v in VIOLATIONS)
    out.write(
        f'<p class="{"violation" if violations else "ok"}">'
        f"Disclosure rows with a violation: {violations} of {sum(counts.values())}.</p>\n"
    )
    _table_head(out, ("verdict", "violation", "rows"))
    for verdict in VERDICTS:
        n = counts.get(verdict, 0)
        _table_row(out, (verdict, verdict in VIOLATIONS, n), verdict in VIOLATIONS and n > 0)
    _table_end(out)
    if scope.shows_incidents:
        missed = sum(
            1 for _, row in incidents if row["authority_deadline_status"] in ("missed", "overdue")
        )
        out.write(
            f"<p>Incidents ({_e(scope.incidents_are())}): {len(incidents)}; "
            f"authority deadline missed: {missed}.</p>\n"
        )
    if scope.shows_requests:
        overdue = sum(1 for r in requests if r["overdue"])
        late = sum(1 for r in requests if r["answered_late"])
        out.write(f"<p>Requests: {len(requests)}; overdue: {overdue}; answered late: {late}.</p>\n")


def _write_consent(
    out: IO[str],
    subjects: Iterable[tuple[str, SubjectConsent]],
    context: _Context,
    settings: _Settings,
    timeline_csv: Any,
    status_csv: Any,
) -> None:
    """The HTML consent section; each row also goes to consent.csv (``timeline_csv``) or
    consent_status.csv (``status_csv``), csv writers."""
    out.write(_CONSENT_HEAD)
    shown = False
    for subject, purposes in subjects:
        shown = True
        _write_subject(out, subject, purposes, context, settings, timeline_csv, status_csv)
    if not shown:
        out.write(_NO_CONSENT)


_CONSENT_HEAD = "<h2>Consent</h2>\n"
_NO_CONSENT = "<p>No consent decisions.</p>\n"


def _write_subject(
    out: IO[str],
    subject: str,
    purposes: SubjectConsent,
    context: _Context,
    settings: _Settings,
    timeline_csv: Any,
    status_csv: Any,
) -> None:
    """One subject's part of the consent section, and its rows of consent.csv and
    consent_status.csv (``timeline_csv``, ``status_csv``: csv writers)."""
    ref = context.reader.ref(subject)
    held = _Subject(
        subject, "[sealed]" if ref is None else ref, context.reader.age(subject), purposes
    )
    out.write(f"<h3>Subject <code>{_e(subject)}</code> ({_e(held.ref)})</h3>\n")
    out.write(f"<p>As of {_e(context.as_of)}:</p>\n")
    _table_head(
        out, ("purpose", "status", "DPV status", "since", "policy version", "decided by event")
    )
    for row in _consent_status_rows(held, context, settings):
        status_csv.writerow([_csv(row[c]) for c in CONSENT_STATUS_COLUMNS])
        _table_row(
            out,
            (
                row["purpose"],
                row["status"],
                row["dpv_status"],
                row["since"],
                row["policy_version"],
                row["decided_by_seq"],
            ),
        )
    _table_end(out)
    out.write("<p>Timeline:</p>\n")
    _table_head(
        out,
        (
            "purpose",
            "at",
            "change",
            "event",
            "policy version",
            "expires",
            "guardian",
            "status from then",
            "DPV status",
            "details",
        ),
    )
    for row in _consent_rows(held, context, settings):
        timeline_csv.writerow([_csv(row[c]) for c in CONSENT_COLUMNS])
        _table_row(
            out,
            (
                row["purpose"],
                row["at"],
                row["change"],
                row["seq"],
                row["policy_version"],
                row["expires_at"],
                row["guardian"],
                row["status"],
                row["dpv_status"],
                row["details"],
            ),
        )
    _table_end(out)


def _disclosures_head(out: IO[str]) -> None:
    out.write("<h2>Disclosures</h2>\n")
    out.write(
        "<p>One row per subject per disclosure, in log order. Violations are highlighted.</p>\n"
    )
    _table_head(
        out,
        (
            "event",
            "occurred at",
            "disclosure",
            "subject",
            "recipient",
            "role",
            "country",
            "kind",
            "purpose",
            "legal basis",
            "data categories",
            "de-identified",
            "destination",
            "verdict",
            "consent event",
        ),
    )


def _write_disclosure_rows(out: IO[str], rows: Iterable[Mapping[str, Any]]) -> None:
    for row in rows:
        subject = f"{row['subject']} ({_text(row['subject_ref'])})"
        recipient = row["recipient_id"]
        if row["recipient_name"] is not None:
            recipient = f"{row['recipient_name']} ({recipient})"
        _table_row(
            out,
            (
                row["seq"],
                row["occurred_at"],
                row["disclosure_id"],
                subject,
                recipient,
                row["recipient_role"],
                row["recipient_country"],
                row["kind"],
                row["purpose"],
                row["legal_basis"],
                row["data_categories"],
                row["de_identified"],
                row["destination_country"],
                row["verdict"],
                row["consent_seq"],
            ),
            bool(row["violation"]),
        )


def _write_incidents(
    out: IO[str],
    incidents: Sequence[tuple[_Incident, Mapping[str, Any]]],
    refs: _Refs,
    list_subjects: bool,
) -> None:
    """Incidents with their clocks; ``list_subjects``: name the subjects the assessments name
    (not in a subject's own report, which must not list other people)."""
    out.write("<h2>Incidents</h2>\n")
    if not incidents:
        out.write("<p>No incidents.</p>\n")
    for incident, row in incidents:
        out.write(f"<h3>Incident <code>{_e(row['incident_id'])}</code></h3>\n<dl>\n")
        status = row["authority_deadline_status"]
        for term, value in (
            ("Status", row["status"]),
            ("Summary", incident.state.summary),
            ("Detected", row["detected_at"]),
            ("Risk", row["risk"]),
            ("Authority deadline (GDPR 33(1))", row["authority_deadline"]),
            ("Authority notified", row["authority_notified_at"]),
            ("Deadline", DEADLINE_STATUS_TEXT[status]),
            ("Subjects notified", row["subjects_notified_at"]),
            ("Subjects still to notify (GDPR 34)", row["subjects_notification_due"]),
            (
                "Affected subjects (named, or selected by the rule)",
                "not counted in this scope (the incident's own bundle counts them)"
                if row["affected_subject_count"] is None
                else row["affected_subject_count"],
            ),
            ("GDPR 33(3) contents missing", row["article_33_3_missing"] or "none"),
            *(
                [
                    (
                        "Subjects named",
                        [f"{s} ({refs.get(s, '[sealed]')})" for s in incident.state.affected],
                    )
                ]
                if list_subjects
                else []
            ),
        ):
            violation = (term == "Deadline" and status in ("missed", "overdue")) or (
                term.startswith("Subjects still") and value is True
            )
            css = ' class="violation"' if violation else ""
            out.write(f"<dt>{_e(term)}</dt><dd{css}>{_e(value)}</dd>\n")
        out.write("</dl>\n")
        _table_head(out, ("event", "occurred at", "step", "what it says"))
        for seq, occurred_at, kind, said in incident.timeline:
            _table_row(out, (seq, occurred_at, kind, said))
        _table_end(out)


def _write_notices(out: IO[str], notices: Sequence[Mapping[str, Any]], scope: _Scope) -> None:
    """Which recipients were told of a withdrawal, erasure or rectification, when, how, and
    whether and how they acknowledged (GDPR 19): a section per recipient, by its id, each with
    its counts and its notices in the order they were owed."""
    out.write("<h2>Recipients told</h2>\n")
    out.write(
        "<p>When a subject withdrew consent, was erased or had data rectified, the ledger "
        "recorded a notice owed to each recipient of their data, its delivery and the "
        "recipient's acknowledgement (GDPR 19). Listed: those among this bundle's events, a "
        "section per recipient (by its id); a notice not acknowledged is highlighted.</p>\n"
    )
    if scope.kind == "subject":
        out.write(
            "<p>This is the subject's bundle: the recipients below are those told about this "
            "person, and when (GDPR 19, second sentence: the controller informs the data "
            "subject about those recipients).</p>\n"
        )
    elif scope.kind == "recipient":
        out.write("<p>This is the recipient's bundle: the notices it was owed.</p>\n")
    if not notices:
        out.write("<p>No notices recorded.</p>\n")
        return
    by_recipient: dict[str, list[Mapping[str, Any]]] = {}
    for n in notices:
        by_recipient.setdefault(_text(n["recipient_id"]), []).append(n)
    count, recipients = len(notices), len(by_recipient)
    out.write(
        f"<p>{count} notice{'' if count == 1 else 's'} to {recipients} "
        f"recipient{'' if recipients == 1 else 's'}.</p>\n"
    )
    for recipient_id in sorted(by_recipient):
        rows = by_recipient[recipient_id]
        told = sum(1 for n in rows if n["notified_at"])
        acknowledged = sum(1 for n in rows if n["acknowledged_at"])
        unacknowledged = sum(1 for n in rows if n["notified_at"] and not n["acknowledged_at"])
        out.write(f"<h3>Recipient {_e(recipient_id)}</h3>\n")
        out.write(
            f"<p>Owed: {len(rows)}; told: {told}; acknowledged: {acknowledged}; not yet told: "
            f"{len(rows) - told}; told but not acknowledged: {unacknowledged}.</p>\n"
        )
        _table_head(
            out,
            (
                "subject",
                "reason",
                "purposes",
                "owed",
                "told",
                "how told",
                "acknowledged",
                "how acknowledged",
            ),
        )
        for n in rows:
            _table_row(
                out,
                (
                    n["subject"],
                    n["reason"],
                    n["purposes"],
                    n["due_at"],
                    n["notified_at"] or "not yet",
                    _how_told(n),
                    n["acknowledged_at"] or "not yet",
                    _how_acknowledged(n),
                ),
                not n["acknowledged_at"],
            )
        _table_end(out)


def _how_told(notice: Mapping[str, Any]) -> str:
    """The transport and the attempts it took (``webhook, 1 attempt``), or nothing."""
    if not notice["notified_at"]:
        return ""
    attempts = _text(notice["attempts"])
    if not attempts:
        return _text(notice["transport"])
    return f"{_text(notice['transport'])}, {attempts} attempt{'' if attempts == '1' else 's'}"


def _how_acknowledged(notice: Mapping[str, Any]) -> str:
    """``api`` by its client, ``webhook_reply`` (the recipient's signed answer), or, for an
    acknowledgement recorded before ``via`` was, ``not recorded``."""
    if not notice["acknowledged_at"]:
        return ""
    via = _text(notice["acknowledged_via"])
    if not via:
        return "not recorded"
    by = _text(notice["acknowledged_by"])
    if via == "webhook_reply":
        return "webhook_reply (signed answer to the webhook)"
    return f"{via} by {by}" if by else via


def _write_reads(out: IO[str], reads: Sequence[Mapping[str, Any]]) -> None:
    """Who opened whose personal data, and why (``personal_data.accessed``)."""
    out.write("<h2>Reads of personal data</h2>\n")
    out.write(
        "<p>Each time the ledger opened a person's data for someone (a list of the people an "
        "incident affects, a history, a bundle, a consent receipt), it recorded who, what and "
        "why before it answered. Listed: those among this bundle's events.</p>\n"
    )
    if not reads:
        out.write("<p>No reads recorded.</p>\n")
        return
    _table_head(out, ("event", "recorded", "client", "read", "scope", "purpose", "people"))
    for r in reads:
        people = ", ".join(r["subjects"])
        if r["count"] is None:
            people = "not counted (a bundle of the whole log)"
        elif (others := int(r["count"]) - len(r["subjects"])) > 0:
            people = f"{people} and {others} other(s)" if people else f"{others} people"
        _table_row(
            out,
            (
                r["seq"],
                r["recorded_at"],
                r["client"],
                r["action"],
                r["scope"],
                r["purpose"],
                people,
            ),
        )
    _table_end(out)


def _write_requests(out: IO[str], requests: Sequence[Mapping[str, Any]]) -> None:
    out.write("<h2>Requests</h2>\n")
    _table_head(
        out,
        (
            "request",
            "subject",
            "kind",
            "received",
            "identity verified",
            "extensions (days)",
            "due",
            "status",
            "closed",
            "refusal ground",
            "overdue",
            "answered late",
        ),
    )
    for r in requests:
        _table_row(
            out,
            (
                r["request_id"],
                f"{r['subject']} ({_text(r['subject_ref'])})",
                r["kind"],
                r["received_at"],
                r["identity_verified_at"],
                f"{r['extensions']} ({r['extension_days']})",
                r["due_at"],
                r["status"],
                r["closed_at"],
                r["refusal_ground"],
                r["overdue"],
                r["answered_late"],
            ),
            bool(r["overdue"] or r["answered_late"]),
        )
    _table_end(out)


# -- rendering in parts, in worker processes ----------------------------------------------------

_PARTS_PER_JOB = 4
"""Parts per worker process: enough that one slow part does not leave the others idle."""


@dataclass(frozen=True)
class _Shared:
    """What rendering the rows needs of the context (every worker process gets it once)."""

    store: Path
    scratch: Path
    """Where each part writes its files."""
    target: _Scope
    settings: _Settings
    rules: Mapping[str, Mapping[str, Any]]
    as_of: str | None
    corrections: Mapping[str, list[Mapping[str, Any]]]
    policies: dict[str, Policy]
    recipients: dict[str, Recipient]
    incidents: dict[str, _Incident]
    told: dict[tuple[str, str, str], str]

    def context(self) -> _Context:
        """A read-only context on the sealed store, in a worker process."""
        return _Context(
            None,
            as_of=self.as_of,
            corrections=dict(self.corrections),
            policies=self.policies,
            recipients=self.recipients,
            incidents=self.incidents,
            told=self.told,
            _reader=ConsentReader.open(self.store),
        )


@dataclass
class _Tally:
    """What the summary and the incidents need of the disclosure rows."""

    counts: Counter[str]
    """Rows by verdict."""
    selected: set[str]
    """The incidents whose assessment's rule selects a reported row."""
    by_rule: dict[str, set[str]]
    """Incident -> the subjects of the reported disclosure rows its rule selects."""

    @classmethod
    def empty(cls, rules: Mapping[str, Any]) -> _Tally:
        return cls(Counter(), set(), {incident_id: set() for incident_id in rules})

    def count(self, row: Mapping[str, Any], rules: Mapping[str, Mapping[str, Any]]) -> None:
        self.counts[row["verdict"]] += 1
        for incident_id, rule in rules.items():
            if incident_rules.rule_selects(rule, row["recipient_id"], row["occurred_at"]):
                self.selected.add(incident_id)
                self.by_rule[incident_id].add(row["subject"])

    def add(self, other: _Tally) -> None:
        self.counts.update(other.counts)
        self.selected |= other.selected
        for incident_id, subjects in other.by_rule.items():
            self.by_rule[incident_id] |= subjects


def _render_rows(
    events: ReportEvents, context: _Context, shared: _Shared, writer: Any, table: IO[str]
) -> _Tally:
    """The disclosure rows of ``events``: to ``writer`` (csv) and ``table`` (HTML rows)."""
    tally = _Tally.empty(shared.rules)

    def written(rows: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for row in rows:
            tally.count(row, shared.rules)
            writer.writerow([_csv(row[c]) for c in DISCLOSURE_COLUMNS])
            yield row

    facts = _facts(events.of_types(_DISCLOSURES), context.corrections)
    rows = _disclosure_rows(facts, context, shared.target, shared.settings)
    _write_disclosure_rows(table, written(rows))
    return tally


def _pool(parts: contextlib.ExitStack, jobs: int) -> ProcessPoolExecutor:
    """Worker processes started afresh (spawned, not forked: the caller may be a server with
    threads and open connections, which a fork would copy half-way)."""
    pool = ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn"))
    parts.callback(pool.shutdown, wait=True, cancel_futures=True)
    return pool


def _subject_ranges(reader: ConsentReader, parts: int) -> list[tuple[str | None, str | None]]:
    """The subjects cut into at most ``parts`` ranges (after, up to and including; None: no
    bound) of about as many subjects each; none when there is no subject."""
    if not reader.any_subject():
        return []
    ends: list[str | None] = [*reader.cut(parts), None]
    return list(zip([None, *ends[:-1]], ends, strict=True))


def _append(part: Path, out: IO[str]) -> None:
    """A part's file, written to ``out`` and removed."""
    with part.open(encoding="utf-8", newline="") as file:
        shutil.copyfileobj(file, out)
    part.unlink()


_CONTEXT_IN_PARTS = CONSENT_TYPES | {AGE}
"""The events the context pass in parts reads in the worker processes: those whose context
grows with the log (kept in the store). The others this process reads, in order."""
_CONTEXT_HERE = (
    {POLICY, ACCESSED, NOTICE_DUE, NOTIFIED, ACKNOWLEDGED, CORRECTION}
    | RECIPIENT_TYPES
    | incident_rules.INCIDENT_TYPES
    | request_rules.REQUEST_TYPES
) - _CONTEXT_IN_PARTS


def _read_context_in_parts(
    pool: ProcessPoolExecutor,
    split: Sequence[ReportEvents],
    source: ReportEvents,
    context: _Context,
    scratch: Path,
) -> None:
    """Pass 2 in parts: each worker reads a part of the events into a store of its own (the
    consent decisions, notes, references and ages) and the last ``recorded_at`` of its part;
    meanwhile this process reads the events of the other types, in order; then the parts'
    stores are merged into the context's."""
    corrections = context.corrections
    futures = [
        pool.submit(_context_part, scratch / f"context-{i}.sqlite3", part, corrections)
        for i, part in enumerate(split)
    ]
    _read_context(_facts(source.of_types(frozenset(_CONTEXT_HERE)), corrections), context)
    stores = []
    for i, future in enumerate(futures):
        as_of = future.result()
        if as_of is not None and (context.as_of is None or as_of > context.as_of):
            context.as_of = as_of
        stores.append(scratch / f"context-{i}.sqlite3")
    context.writer.merge(stores)
    for path in stores:
        path.unlink()


def _context_part(
    path: Path, events: ReportEvents, corrections: Mapping[str, list[Mapping[str, Any]]]
) -> str | None:
    """Worker: pass 2 over a part of the events, for the types of :data:`_CONTEXT_IN_PARTS`,
    into a store at ``path``; the part's last ``recorded_at``."""
    store = ConsentStore(path)
    try:
        context = _Context(store, corrections=dict(corrections))
        facts = _facts(events.lean(_DISCLOSURES), context.corrections)
        _read_context(facts, context, _CONTEXT_IN_PARTS)
        store.flush()
    finally:
        store.close()
    return context.as_of


_worker: tuple[Path, _Shared, _Context] | None = None


def _shared(path: Path) -> tuple[_Shared, _Context]:
    """What the rows need of the context, read once a worker process from the file the
    report's process wrote (pass 3 starts once pass 2 is done: the pool is older)."""
    global _worker
    if _worker is None or _worker[0] != path:
        shared = pickle.loads(path.read_bytes())  # noqa: S301 (this report's own file)
        _worker = (path, shared, shared.context())
    return _worker[1], _worker[2]


def _rows_part(shared_file: Path, index: int, events: ReportEvents) -> _Tally:
    """Worker: the disclosure rows of a part of the events, to ``rows-<index>.csv`` and
    ``.html``."""
    shared, context = _shared(shared_file)
    scratch = shared.scratch
    with (
        (scratch / f"rows-{index}.csv").open("w", encoding="utf-8", newline="") as csv_file,
        (scratch / f"rows-{index}.html").open("w", encoding="utf-8", newline="\n") as table,
    ):
        writer = csv.writer(csv_file, lineterminator="\n")
        return _render_rows(events, context, shared, writer, table)


def _consent_part(shared_file: Path, index: int, after: str | None, until: str | None) -> None:
    """Worker: the consent section of the subjects in a range, to ``consent-<index>.csv``,
    ``status-<index>.csv`` and ``consent-<index>.html``."""
    shared, context = _shared(shared_file)
    scratch = shared.scratch
    with (
        (scratch / f"consent-{index}.csv").open("w", encoding="utf-8", newline="") as timeline,
        (scratch / f"status-{index}.csv").open("w", encoding="utf-8", newline="") as status,
        (scratch / f"consent-{index}.html").open("w", encoding="utf-8", newline="\n") as html_,
    ):
        timeline_csv = csv.writer(timeline, lineterminator="\n")
        status_csv = csv.writer(status, lineterminator="\n")
        for subject, purposes in context.reader.consent_by_subject(after, until):
            _write_subject(
                html_, subject, purposes, context, shared.settings, timeline_csv, status_csv
            )
