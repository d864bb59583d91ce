"""The questions entrypoints ask, answered in one place: HTTP routes and CLI commands call these
methods instead of reaching into the recorder, the subject keys or the projection runner.

Two classes: :class:`LogQueries` needs only the ledger (events, records, proofs, checkpoints,
a reference's pseudonym); :class:`Queries` adds the read models (consent, disclosures,
requests, incidents, a subject's history, read-your-writes waits). Each method takes plain
values and returns the values and records the entrypoints already render; none of them knows
HTTP or the command line (the errors below are mapped by the caller).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta
from typing import Any

from ledger.application import LedgerApplication
from ledger.consent_receipts import (
    ConsentReceipt,
    NoCheckpointError,
    NotAConsentFactError,
    consent_receipt,
)
from ledger.domain import stream_id
from ledger.merkle_log import SignedCheckpoint
from ledger.receipts import DecodedEvent
from ledger.recorder import LogRecord
from ledger.verifier.consent_rules import Policy, Verdict, declared_at, moment_text, on_basis
from projections.affected_people import AffectedPage, AffectedPeople, AffectedPerson
from projections.base import ReadModelFailure, ReadModelStoppedError, error_message
from projections.consent_facts import Erasure, SubjectFacts
from projections.consent_state import PurposeState
from projections.disclosures import DisclosureRow
from projections.incidents import IncidentRecord
from projections.notices import NoticeCount, NoticeRow
from projections.read_models import ReadModels
from projections.requests import RequestRecord
from projections.runner import ProjectionStatus

__all__ = [
    "DISCLOSURE_COLUMNS",
    "AffectedPage",
    "AffectedPerson",
    "ConsentDecision",
    "ConsentReceipt",
    "DisclosureRow",
    "InclusionProof",
    "LogQueries",
    "NoCheckpointError",
    "NoSuchEventYetError",
    "NotAConsentFactError",
    "NotCaughtUpError",
    "ProjectionStatus",
    "Queries",
    "ReadModelFailure",
    "ReadModelStoppedError",
    "SignedCheckpoint",
    "SubjectFacts",
    "SubjectState",
    "UnknownPurposeError",
    "error_message",
    "moment",
]
"""The errors a question may raise and the records it answers with are named here too, so an
entrypoint imports nothing of the layers below but this module (tests/test_layering.py)."""

CONSENT = "consent_state"
"""The read model consent questions are answered from."""
PAGE = 1000
"""Rows a disclosure page holds unless asked otherwise."""
DISCLOSURE_COLUMNS = tuple(f.name for f in fields(DisclosureRow))
"""A disclosure row's columns, in order: the header of every disclosure CSV (API and CLI)."""


class NoSuchEventYetError(Exception):
    """A wait for an event the log does not hold yet (a receipt names only committed ones)."""

    def __init__(self, seq: int, head: int) -> None:
        self.seq = seq
        self.head = head
        super().__init__(f"no event {seq} was recorded (the log ends at {head})")


class UnknownPurposeError(Exception):
    """A decision asked about a purpose no published policy version declares: neither yes nor
    no, but a question the ledger cannot answer (a typo, or a policy not published yet)."""

    def __init__(self, purpose: str, policies: Mapping[str, Policy]) -> None:
        self.purpose = purpose
        ordered = sorted(policies.values(), key=lambda p: (p.effective_at, p.seq))
        self.policy_versions = [p.version for p in ordered]
        self.purposes = sorted({name for p in ordered for name in p.bases})
        known = ", ".join(self.policy_versions) or "none published yet"
        super().__init__(
            f"no published policy version declares the purpose {purpose} (versions: {known})"
        )


class NotCaughtUpError(Exception):
    """A read model did not reach an event within the wait."""

    def __init__(self, seq: int, read_model: str) -> None:
        self.seq = seq
        self.read_model = read_model
        super().__init__(f"event {seq} is not in {read_model} yet")


def moment(at: datetime | None) -> datetime:
    """A question's moment: now when not given, UTC when given without an offset."""
    if at is None:
        return datetime.now(UTC)
    return at if at.tzinfo else at.replace(tzinfo=UTC)


@dataclass(frozen=True)
class SubjectState:
    """Every purpose a subject decided on, as it stands at a moment (the subject by pseudonym)."""

    subject: str
    erasure: Erasure | None
    purposes: list[PurposeState]


@dataclass(frozen=True)
class ConsentDecision:
    """May ``purpose`` be used for ``subject`` (a pseudonym)? With the reason and its event."""

    subject: str
    purpose: str
    verdict: Verdict

    def as_dict(self) -> dict[str, object]:
        return self.verdict.answer(self.subject, self.purpose)


@dataclass(frozen=True)
class InclusionProof:
    record: LogRecord
    """The leaf's stored record (its ``entry`` is the leaf input)."""
    proof: list[bytes]


class LogQueries:
    """What the log itself answers: no read model needed."""

    def __init__(self, ledger: LedgerApplication) -> None:
        self._ledger = ledger

    # -- subjects ----------------------------------------------------------------------------

    def pseudonym(self, subject_ref: str) -> str:
        """For reading: the pseudonym of the reference's live lifecycle, or, for a reference
        unknown or erased, a stand-in that names nothing in the log (the same for both)."""
        return self._ledger.subject_keys.pseudonym(subject_ref)

    def pseudonym_or_none(self, subject_ref: str | None) -> str | None:
        return None if subject_ref is None else self.pseudonym(subject_ref)

    def refreshed_pseudonym(self, subject_ref: str) -> str:
        """The reference's pseudonym read again from the key store (another process may have
        begun its next lifecycle since this one cached it)."""
        keys = self._ledger.subject_keys
        keys.refresh([subject_ref])
        return keys.pseudonym(subject_ref)

    # -- events and records ------------------------------------------------------------------

    def claimed(self, event_id: str) -> int | None:
        """The sequence number of the event an emitter's event id names; None if unclaimed."""
        claim = self._ledger.ledger.select_claims([event_id]).get(event_id)
        return None if claim is None else claim.seq

    def head(self) -> int:
        """The sequence number of the last event (0 for an empty log)."""
        return self._ledger.head()

    def event(self, seq: int) -> DecodedEvent:
        """Event ``seq``, personal data opened; :class:`~ledger.errors.EventNotFoundError`
        when the log holds no such event."""
        return self._ledger.get_event(seq)

    def consent_receipt(self, seq: int) -> ConsentReceipt:
        """The consent receipt of event ``seq`` (:mod:`ledger.consent_receipts`), its subject's
        own data opened: the caller records the read before answering. Raises
        :class:`~ledger.errors.EventNotFoundError`, :class:`NotAConsentFactError` or
        :class:`NoCheckpointError`."""
        return consent_receipt(self._ledger, seq)

    def records(self, start: int, limit: int) -> list[LogRecord]:
        """Up to ``limit`` stored records from sequence number ``start`` on."""
        return self._ledger.ledger.select_records(start, limit)

    def events_from(self, start: int, limit: int) -> list[tuple[int, DecodedEvent]]:
        """Up to ``limit`` events from ``start`` on, decoded, each with its sequence number."""
        return [(r.seq, self._ledger.decode(r)) for r in self.records(start, limit)]

    def subject_events(
        self, pseudonym: str, seqs: Sequence[int], streams: Sequence[str]
    ) -> list[DecodedEvent]:
        """The events ``seqs`` and those of ``streams``, in log order, each once, with every
        subject but ``pseudonym`` sealed."""
        records: dict[int, LogRecord] = {}
        for seq in sorted(set(seqs)):
            record = self._ledger.ledger.get_record(seq)
            if record is not None:
                records[record.seq] = record
        for stream in streams:
            records.update((r.seq, r) for r in self._ledger.ledger.select_stream_records(stream))
        return [
            self._ledger.decode(records[seq], only_subject=pseudonym) for seq in sorted(records)
        ]

    # -- checkpoints and proofs --------------------------------------------------------------

    def latest_checkpoint(self) -> SignedCheckpoint | None:
        return self._ledger.ledger.latest_checkpoint()

    def origin(self, configured: str | None = None) -> str:
        """The log's origin line (the checkpoints' first line)."""
        return self._ledger.ledger.origin(configured)

    def inclusion_proof(self, index: int, size: int) -> InclusionProof:
        """The audit path of leaf ``index`` in the tree of the first ``size`` leaves (both
        checked by the caller: ``index < size <= head``)."""
        [record] = self._ledger.ledger.select_records(index + 1, 1)
        return InclusionProof(record, self._ledger.ledger.tree().inclusion_proof(index, size))

    def consistency_proof(self, first: int, second: int) -> list[bytes]:
        """The proof that the tree of ``first`` leaves is a prefix of that of ``second``
        (``first <= second <= head``); empty when there is nothing to prove (RFC 9162 §2.1.4
        proves only from a non-empty tree, and equal trees need no hashes)."""
        if first in (0, second):
            return []
        return self._ledger.ledger.tree().consistency_proof(first, second)


class Queries(LogQueries):
    """What the log and the read models answer together."""

    def __init__(self, ledger: LedgerApplication, models: ReadModels) -> None:
        super().__init__(ledger)
        self._models = models

    # -- read your writes --------------------------------------------------------------------

    def wait_for(self, seq: int | None, timeout: float, read_model: str = CONSENT) -> None:
        """Return once ``read_model`` has processed event ``seq`` (at once for None).

        :class:`ReadModelStoppedError` at once while the read model is stopped at an event
        (with or without ``seq``: its answers would miss every later fact);
        :class:`NoSuchEventYetError` for a ``seq`` past the log's head;
        :class:`NotCaughtUpError` when ``timeout`` seconds pass first.
        """
        runner = self._models.runner
        failure = runner.failure(read_model, max_age=1.0)
        if failure is not None:
            raise ReadModelStoppedError(failure)
        if seq is None:
            return
        head = self.head()
        if seq > head:
            raise NoSuchEventYetError(seq, head)
        if not runner.wait_for(seq, timeout, [read_model]):
            raise NotCaughtUpError(seq, read_model)

    def status(self) -> list[ProjectionStatus]:
        """Where each read model stands (position, lag, failure)."""
        return self._models.runner.status()

    # -- consent -----------------------------------------------------------------------------

    def subject_facts(self, subject_ref: str, purpose: str | None = None) -> SubjectFacts:
        """The facts about the reference's current lifecycle (one query, most of the time).

        The cached pseudonym may be out of date: another process (a second worker) may have
        begun the reference's next lifecycle, which this one has not seen. So an erasure makes
        it look again, once.
        """
        pseudonym = self.pseudonym(subject_ref)
        facts = self._models.consent.facts(pseudonym, purpose)
        if facts.erasure is not None:
            current = self.refreshed_pseudonym(subject_ref)
            if current != pseudonym:
                facts = self._models.consent.facts(current, purpose)
        return facts

    def consent_state(self, subject_ref: str, at: datetime | None = None) -> SubjectState:
        """Every purpose the subject decided on, as it stands at ``at`` (default now)."""
        facts = self.subject_facts(subject_ref)
        states = self._models.consent.state_of(facts, moment(at))
        return SubjectState(facts.subject, facts.erasure, states)

    def decision(
        self, subject_ref: str, purpose: str, at: datetime | None = None
    ) -> ConsentDecision:
        """May ``purpose`` be used for the subject at ``at`` (default now)? ``yes``, ``no`` or
        ``not_required`` (the purpose rests on another legal basis, which the answer names);
        :class:`UnknownPurposeError` when no policy version declares the purpose."""
        facts = self.subject_facts(subject_ref, purpose)
        when = moment(at)
        declared = declared_at(facts.policies, purpose, moment_text(when))
        if declared is None and not facts.decisions.get(purpose):
            raise UnknownPurposeError(purpose, facts.policies)
        verdict = self._models.consent.verdict_of(facts, purpose, when)
        return ConsentDecision(facts.subject, purpose, on_basis(verdict, declared, purpose))

    # -- disclosures -------------------------------------------------------------------------

    def disclosures(
        self,
        *,
        subject_ref: str | None = None,
        recipient_id: str | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
        violations_only: bool = False,
        after: tuple[str, int, str] | None = None,
        limit: int = PAGE,
    ) -> list[DisclosureRow]:
        """One page of disclosure rows in (occurred_at, seq, subject) order; ``after``: the
        position of the page before's last row. Times without an offset are UTC."""
        return self._models.disclosures.find(
            subject=self.pseudonym_or_none(subject_ref),
            recipient_id=recipient_id,
            start=None if start is None else moment(start),
            end=None if end is None else moment(end),
            violations_only=violations_only,
            after=after,
            limit=limit,
        )

    def all_disclosures(
        self,
        *,
        subject_ref: str | None = None,
        recipient_id: str | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
        violations_only: bool = False,
    ) -> Iterator[DisclosureRow]:
        """Every disclosure row that matches, page after page."""
        return self._models.disclosures.find_all(
            subject=self.pseudonym_or_none(subject_ref),
            recipient_id=recipient_id,
            start=None if start is None else moment(start),
            end=None if end is None else moment(end),
            violations_only=violations_only,
        )

    # -- registers ---------------------------------------------------------------------------

    def requests(
        self, *, overdue_only: bool = False, subject_ref: str | None = None
    ) -> list[RequestRecord]:
        """The data-subject request register, due dates computed now."""
        return self._models.requests.list(
            datetime.now(UTC),
            overdue_only=overdue_only,
            subject=self.pseudonym_or_none(subject_ref),
        )

    def incidents(self) -> list[IncidentRecord]:
        """The incident register, deadlines computed now."""
        return self._models.incidents.list(datetime.now(UTC))

    def incident(self, incident_id: str) -> IncidentRecord | None:
        """One incident, deadlines computed now; None if none was opened with that id."""
        return self._models.incidents.get(incident_id, datetime.now(UTC))

    def incident_answer(self, record: IncidentRecord) -> dict[str, Any]:
        """An incident as the API and the CLI show it: the register's record, the subjects its
        assessment's rule selects (``subjects_by_rule``) when it has one, and
        ``affected_subject_count``: the subjects named or selected, each once (the count GDPR
        33(3)(a) asks for, as the report of a bundle gives it)."""
        by_rule = self.subjects_by_rule(record)
        answer = record.with_rule_selected(by_rule or []).as_dict()
        answer["affected_subject_count"] = record.affected_count(by_rule or [])
        if by_rule is not None:
            answer["subjects_by_rule"] = by_rule
        return answer

    def affected_people(
        self, incident_id: str, after: str | None = None, limit: int = 100
    ) -> AffectedPage | None:
        """A page of the people incident ``incident_id`` affects (named, or selected by its
        rule), their references and contact data opened (:mod:`projections.affected_people`);
        None when no such incident was opened. The caller records the read before answering:
        this opens personal data."""
        record = self.incident(incident_id)
        if record is None:
            return None
        models = self._models
        people = AffectedPeople(self._ledger, models.incidents, models.disclosures)
        return people.page(record, after, limit)

    def subjects_by_rule(self, record: IncidentRecord) -> list[str] | None:
        """The subjects the incident's assessment rule selects from the disclosure history
        (disclosed to that recipient in that window), or None when it has no rule."""
        rule = record.affected_rule
        if rule is None:
            return None
        return self._models.incidents.subjects_by_rule(rule, self._models.disclosures)

    # -- a subject's history -----------------------------------------------------------------

    # -- notices to recipients (GDPR 19; projections/notices.py) -----------------------------

    def notices(
        self, *, overdue: bool | None = None, recipient_id: str | None = None
    ) -> list[NoticeRow]:
        """The register of notices (``GET /v1/notices``): no pseudonym, no reference."""
        return self._models.notices.register(overdue=overdue, recipient_id=recipient_id)

    def notice(self, notice_id: str) -> NoticeRow | None:
        """One notice of the register, or None."""
        found = self._models.notices.register(notice_id=notice_id, limit=1)
        return found[0] if found else None

    def notice_counts(self) -> list[NoticeCount]:
        """The notices by recipient and reason: owed, undelivered, unacknowledged, overdue."""
        return self._models.notices.counts()

    def notice_overdue_after(self) -> timedelta:
        """How long after it was recorded as due a notice not acknowledged is overdue."""
        return self._models.notices.overdue_after

    def history(self, subject_ref: str) -> dict[str, Any]:
        """The subject's history as the API answers it (:meth:`history_events`)."""
        pseudonym, events = self.history_events(subject_ref)
        return {"subject": pseudonym, "events": [event.as_dict() for event in events]}

    def history_events(self, subject_ref: str) -> tuple[str, list[DecodedEvent]]:
        """The subject's pseudonym and events: as a subject's export bundle holds them (its
        own events, its disclosures, its requests, every event of each incident that
        concerns it: named by an assessment, or selected by an assessment's rule, as the
        incident register says, and the notices to recipients about it), in log order, every
        other subject sealed."""
        pseudonym = self.pseudonym(subject_ref)
        models = self._models
        now = datetime.now(UTC)
        rows = list(models.disclosures.find_all(subject=pseudonym))
        streams = [pseudonym]
        streams += [
            str(stream_id("request", r.request_id))
            for r in models.requests.list(now, subject=pseudonym)
        ]
        streams += [
            str(stream_id("incident", i.incident_id))
            for i in models.incidents.concerning_subject(
                pseudonym, ((row.recipient_id, row.occurred_at) for row in rows), now
            )
        ]
        streams += models.notices.notices_about(pseudonym)  # the recipients told (GDPR 19)
        return pseudonym, self.subject_events(pseudonym, [row.seq for row in rows], streams)
