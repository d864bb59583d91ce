"""One command per fact type: the streams it writes, and what it does (load, check, trigger).

:data:`HANDLERS` maps every fact class of the catalogue (:data:`ledger.events.FACT_TYPES`) to
a :class:`Handler`: ``streams`` names the streams the fact appends to (the application locks
them, so that writers in one process take turns), and ``handle`` runs the command over a
:class:`Command`: it loads the aggregates the fact concerns, calls their ``check_*`` guards
(the rules live in :mod:`ledger.aggregates`) and triggers the event, with the personal data
sealed. A fact type without an entry fails at import.

Adding a fact type: its model in ``ledger/events.py``, its aggregate event and guards in
``ledger/aggregates.py``, one function and one entry here (``docs/architecture.md``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar
from uuid import UUID

from ledger import events as ev
from ledger.aggregates import (
    Correction,
    Disclosure,
    Incident,
    PolicyVersion,
    Recipient,
    RightsRequest,
    Subject,
)
from ledger.domain import LedgerAggregate, LedgerCreated, LedgerEvent, rule, stream_id
from ledger.errors import LedgerError, ValidationError
from ledger.mapper import format_time
from ledger.sealing import seal_fact
from ledger.subject_keys import LifecycleError, SubjectKeys
from ledger.verifier.corrections import apply_correction
from ledger.verifier.entry import parse_body
from ledger.verifier.scopes import correction_concerns, subject_scope, subjects_of_scopes
from ledger.verifier.times import parse_utc
from ledger.vocabulary import ErasureGround

if TYPE_CHECKING:
    from ledger.application import Batch, LedgerApplication

A = TypeVar("A", bound=LedgerAggregate)
F = TypeVar("F", bound=ev.Fact)
F_contra = TypeVar("F_contra", bound=ev.Fact, contravariant=True)


class Command(Generic[F]):
    """One fact's command in its batch: the fact, the envelope of the events it triggers
    (event id, times, emitter), and the ways to load and change aggregates."""

    def __init__(self, app: LedgerApplication, batch: Batch, fact: F, now: datetime) -> None:
        self.app = app
        self.batch = batch
        self.fact = fact
        self.envelope: dict[str, Any] = {
            "event_id": fact.event_id,
            "occurred_at": fact.occurred_at,
            "backdated": now - fact.occurred_at > app.limits.backdate_tolerance,
            "timestamp": now,
            "emitter": batch.emitter,
        }

    def sealed(self, aggregate_id: UUID, version: int) -> dict[str, Any]:
        """The fact's data as the event at ``version`` of the stream holds it (sealed)."""
        return seal_fact(self.fact, aggregate_id, version, self.batch.keys)

    def create(self, cls: type[A], created: type[LedgerCreated], aggregate_id: UUID) -> A:
        data = self.sealed(aggregate_id, 1)
        return self.batch.create(cls, created, aggregate_id, data=data, **self.envelope)

    def trigger(self, aggregate: LedgerAggregate, event_class: type[LedgerEvent]) -> None:
        data = self.sealed(aggregate.id, aggregate.version + 1)
        self.batch.trigger(aggregate, event_class, data=data, **self.envelope)

    def subject(self, subject_ref: str) -> Subject:
        """The subject a reference names (registered now if it is new); not erased."""
        pseudonym = self.batch.keys.pseudonym(subject_ref)
        key = UUID(pseudonym)
        subject = self.batch.find(Subject, key)
        if subject is None:
            subject = self.batch.create(
                Subject,
                Subject.Registered,
                key,
                data={"subject": pseudonym},
                **dict(_system(self.envelope), emitter=None),
            )
        subject.check_not_erased()
        return subject

    def recipient(self, recipient_id: str, field: str) -> Recipient:
        return self.batch.existing(Recipient, "recipient", recipient_id, field, "recipient_unknown")

    def policy(self, version: str, field: str) -> PolicyVersion:
        return self.app.published_policy(self.batch, version, field)


@dataclass(frozen=True)
class Handler(Generic[F]):
    """What the application needs to know of one fact type."""

    streams: Callable[[F, SubjectKeys], list[UUID]]
    """The streams the fact appends to (for the in-process stream locks)."""
    handle: Callable[[Command[F]], None]
    """The command: load, ``check_*``, trigger."""


# -- streams ----------------------------------------------------------------------------------


class _AboutSubject(Protocol):
    @property
    def subject(self) -> str: ...


class _AboutIncident(Protocol):
    @property
    def incident_id(self) -> str: ...


class _AboutRequest(Protocol):
    @property
    def request_id(self) -> str: ...


class _AboutRecipient(Protocol):
    @property
    def recipient_id(self) -> str: ...


def _policy_stream(fact: ev.PolicyVersionPublished, _: SubjectKeys) -> list[UUID]:
    return [stream_id("policy", fact.version)]


def _recipient_stream(fact: _AboutRecipient, _: SubjectKeys) -> list[UUID]:
    return [stream_id("recipient", fact.recipient_id)]


def _subject_stream(fact: _AboutSubject, keys: SubjectKeys) -> list[UUID]:
    # By a name of the reference (its pseudonym may not be known yet, or may change when a
    # new lifecycle starts).
    return [keys.lock_id(fact.subject)]


def _disclosure_stream(fact: ev.DisclosureRecorded, _: SubjectKeys) -> list[UUID]:
    return [stream_id("disclosure", fact.disclosure_id)]


def _incident_stream(fact: _AboutIncident, _: SubjectKeys) -> list[UUID]:
    return [stream_id("incident", fact.incident_id)]


def _request_stream(fact: _AboutRequest, _: SubjectKeys) -> list[UUID]:
    return [stream_id("request", fact.request_id)]


def _fulfilment_streams(fact: ev.RequestFulfilled, keys: SubjectKeys) -> list[UUID]:
    # The request's, and the subject's: fulfilling an erasure or a cancellation writes the
    # subject's stream too (subject.erased), so in-process writers about them take turns.
    return [stream_id("request", fact.request_id), keys.lock_id(fact.subject)]


def _correction_stream(fact: ev.CorrectionRecorded, _: SubjectKeys) -> list[UUID]:
    return [stream_id("correction", fact.event_id)]


# -- policy versions --------------------------------------------------------------------------


def policy_version_published(c: Command[ev.PolicyVersionPublished]) -> None:
    key = c.batch.absent(
        PolicyVersion, "policy", c.fact.version, "version", "policy_version_exists"
    )
    c.create(PolicyVersion, PolicyVersion.Published, key)


# -- recipients -------------------------------------------------------------------------------


def recipient_registered(c: Command[ev.RecipientRegistered]) -> None:
    fact = c.fact
    key = c.batch.absent(
        Recipient, "recipient", fact.recipient_id, "recipient_id", "recipient_exists"
    )
    Recipient.check_may_register(fact.role, fact.parent_recipient_id)
    if fact.parent_recipient_id is not None:
        parent = c.recipient(fact.parent_recipient_id, "parent_recipient_id")
        parent.check_may_engage_sub_processor()
    c.create(Recipient, Recipient.Registered, key)


def recipient_updated(c: Command[ev.RecipientUpdated]) -> None:
    recipient = c.recipient(c.fact.recipient_id, "recipient_id")
    recipient.check_active()
    c.trigger(recipient, Recipient.Updated)


def recipient_terminated(c: Command[ev.RecipientTerminated]) -> None:
    recipient = c.recipient(c.fact.recipient_id, "recipient_id")
    recipient.check_active()
    c.trigger(recipient, Recipient.Terminated)


# -- subjects ---------------------------------------------------------------------------------


def _consent_policy(
    c: Command[ev.ConsentGiven] | Command[ev.ConsentRefused] | Command[ev.ConsentWithdrawn],
) -> PolicyVersion:
    """The policy version a consent decision names, in effect, declaring its purposes as
    consent-based ones."""
    fact = c.fact
    policy = c.policy(fact.policy_version, "policy_version")
    policy.check_in_effect(fact.occurred_at)
    policy.check_purposes(fact.purposes, "purposes")
    policy.check_consent_purposes(fact.purposes)
    return policy


def consent_given(c: Command[ev.ConsentGiven]) -> None:
    fact = c.fact
    policy = _consent_policy(c)
    subject = c.subject(fact.subject)
    subject.check_may_consent(
        policy.minimum_age_or(c.app.limits.minimum_age),
        fact.guardian is not None,
        policy.guardian_consent_allowed,
    )
    Subject.check_expiry(fact.occurred_at, fact.expires_at)
    c.trigger(subject, Subject.ConsentGiven)


def consent_refused(c: Command[ev.ConsentRefused]) -> None:
    _consent_policy(c)
    c.trigger(c.subject(c.fact.subject), Subject.ConsentRefused)


def consent_withdrawn(c: Command[ev.ConsentWithdrawn]) -> None:
    _consent_policy(c)
    c.trigger(c.subject(c.fact.subject), Subject.ConsentWithdrawn)


def consent_renewal_requested(c: Command[ev.ConsentRenewalRequested]) -> None:
    """Asking to renew: for terms published (not necessarily in effect yet: a renewal may be
    asked for ahead of a new version), of consent given before."""
    fact = c.fact
    policy = c.policy(fact.policy_version, "policy_version")
    policy.check_purposes(fact.purposes, "purposes")
    policy.check_consent_based(fact.purposes)
    subject = c.subject(fact.subject)
    subject.check_given_before(fact.purposes, fact.occurred_at)
    Subject.check_respond_by(fact.occurred_at, fact.respond_by)
    c.trigger(subject, Subject.RenewalRequested)


def age_attested(c: Command[ev.AgeAttested]) -> None:
    c.trigger(c.subject(c.fact.subject), Subject.AgeAttested)


def subject_lifecycle_started(c: Command[ev.SubjectLifecycleStarted]) -> None:
    try:
        c.batch.keys.start_lifecycle(c.fact.subject, c.batch.erasing)
    except LifecycleError:
        raise rule(
            "subject",
            "subject_not_erased",
            "a new lifecycle starts only after the subject's erasure",
        ) from None
    c.trigger(c.subject(c.fact.subject), Subject.LifecycleStarted)


def record_erasure(
    batch: Batch,
    pseudonym: str,
    ground: ErasureGround,
    envelope: Mapping[str, Any],
    request_id: str | None = None,
    details: Mapping[str, Any] | None = None,
) -> None:
    """Record the subject's erasure in ``batch``; its key is destroyed when it commits."""
    system = _system(envelope)
    subject = batch.find(Subject, UUID(pseudonym))
    if subject is None:  # a subject known only from requests or disclosures
        subject = batch.create(
            Subject, Subject.Registered, UUID(pseudonym), data={"subject": pseudonym}, **system
        )
    subject.check_not_erased()
    data: dict[str, Any] = {"subject": pseudonym, "ground": str(ground)}
    if request_id is not None:
        data["request_id"] = request_id
    if details:
        data["details"] = dict(details)
    batch.trigger(subject, Subject.Erased, data=data, **system)
    batch.erasing.add(pseudonym)


def _system(envelope: Mapping[str, Any]) -> dict[str, Any]:
    """The envelope of an event the ledger adds on its own (no event id of the sender's)."""
    return dict(envelope, event_id=None, backdated=False, occurred_at=envelope["timestamp"])


# -- disclosures ------------------------------------------------------------------------------


def disclosure_recorded(c: Command[ev.DisclosureRecorded]) -> None:
    fact = c.fact
    key = c.batch.absent(
        Disclosure, "disclosure", fact.disclosure_id, "disclosure_id", "disclosure_exists"
    )
    policy = c.policy(fact.policy_version, "policy_version")
    policy.check_in_effect(fact.occurred_at)
    policy.check_purposes([fact.purpose], "purpose")
    c.create(Disclosure, Disclosure.Recorded, key)


# -- incidents --------------------------------------------------------------------------------


def incident_opened(c: Command[ev.IncidentOpened]) -> None:
    key = c.batch.absent(Incident, "incident", c.fact.incident_id, "incident_id", "incident_exists")
    c.create(Incident, Incident.Opened, key)


def _open_incident(c: Command[Any]) -> Incident:
    incident = c.batch.existing(
        Incident, "incident", c.fact.incident_id, "incident_id", "incident_unknown"
    )
    incident.check_open()
    return incident


def incident_assessed(c: Command[ev.IncidentAssessed]) -> None:
    incident = _open_incident(c)
    window = c.fact.affected_rule
    if window is not None:
        Incident.check_window(window.disclosed_from, window.disclosed_to)
    c.trigger(incident, Incident.Assessed)


def _incident_step(event_class: type[LedgerEvent]) -> Callable[[Command[Any]], None]:
    """A step of an open incident with no rule of its own."""

    def handle(c: Command[Any]) -> None:
        c.trigger(_open_incident(c), event_class)

    handle.__name__ = handle.__qualname__ = event_class.TYPE.replace(".", "_")
    return handle


# -- data-subject requests --------------------------------------------------------------------


def request_received(c: Command[ev.RequestReceived]) -> None:
    key = c.batch.absent(
        RightsRequest, "request", c.fact.request_id, "request_id", "request_exists"
    )
    c.create(RightsRequest, RightsRequest.Received, key)


def _request_step(c: Command[Any]) -> tuple[RightsRequest, str]:
    """The open request the step belongs to, received for this subject; and its pseudonym."""
    request = c.batch.existing(
        RightsRequest, "request", c.fact.request_id, "request_id", "request_unknown"
    )
    pseudonym = c.batch.keys.pseudonym(c.fact.subject)
    request.check_step(pseudonym)
    return request, pseudonym


def request_identity_verified(c: Command[ev.RequestIdentityVerified]) -> None:
    request, _ = _request_step(c)
    c.trigger(request, RightsRequest.IdentityVerified)


def request_extended(c: Command[ev.RequestExtended]) -> None:
    request, _ = _request_step(c)
    request.check_may_extend(c.fact.extension_days, ev.MAX_TOTAL_EXTENSION_DAYS)
    c.trigger(request, RightsRequest.Extended)


def request_fulfilled(c: Command[ev.RequestFulfilled]) -> None:
    """A fulfilled erasure request (or account cancellation) erases the subject with it."""
    request, pseudonym = _request_step(c)
    request.check_may_cite_bundle(c.fact.bundle_manifest_sha256)
    c.trigger(request, RightsRequest.Fulfilled)
    ground = request.erasure_ground()
    if ground is not None:
        record_erasure(c.batch, pseudonym, ground, c.envelope, c.fact.request_id)


def request_refused(c: Command[ev.RequestRefused]) -> None:
    request, _ = _request_step(c)
    c.trigger(request, RightsRequest.Refused)


# -- corrections ------------------------------------------------------------------------------


def correction_recorded(c: Command[ev.CorrectionRecorded]) -> None:
    key = stream_id("correction", c.fact.event_id)
    concerns = check_correction(c.app, c.batch, c.fact)
    subjects = subjects_of_scopes(concerns)
    data = dict(
        c.sealed(key, 1),
        concerns=[s for s in concerns if s not in {subject_scope(p) for p in subjects}],
    )
    if subjects:  # listed apart, sealed, as a disclosure lists them
        data["concerned_subjects"] = [
            c.batch.keys.seal_mention(p, key, 1, f"concerned_subjects[{index}]")
            for index, p in enumerate(subjects)
        ]
    c.batch.create(Correction, Correction.Recorded, key, data=data, **c.envelope)


def check_correction(
    app: LedgerApplication, batch: Batch, fact: ev.CorrectionRecorded
) -> list[str]:
    """The corrected event exists (earlier, or earlier in this batch); fields are its own.

    Returns the scopes the correction concerns: the corrected event's, as recorded and as
    corrected (:func:`ledger.verifier.scopes.correction_concerns`).
    """
    wanted = fact.corrects_event_id
    in_batch = [e for e in batch.events if e.event_id == wanted]
    type_name: str | None = None
    corrected: tuple[Mapping[str, Any], str] = ({}, "")
    if in_batch:
        event = in_batch[0]
        type_name = event.TYPE
        data = app.mentions_opened(event.data, event.originator_id, event.originator_version)
        corrected = (data, format_time(event.occurred_at))
    else:
        claim = app.ledger.select_claims([wanted]).get(wanted)
        record = None if claim is None else app.ledger.get_record(claim.seq)
        if record is not None:
            body = parse_body(record.body)
            type_name = body["type"]
            data = app.mentions_opened(body["data"], body["stream"], body["stream_version"])
            corrected = (data, body["occurred_at"])
    if type_name is None:
        raise rule(
            "corrects_event_id",
            "corrected_event_unknown",
            f"no event {wanted} was recorded",
        )
    problems = ev.correction_problems(type_name, fact.corrected_fields)
    if problems:
        raise ValidationError(problems)
    check_corrected_fact(
        type_name, *apply_correction(corrected[1], corrected[0], fact.corrected_fields)
    )
    return correction_concerns(type_name, *corrected, fact.corrected_fields)


def check_corrected_fact(type_name: str, occurred_at: str, data: Mapping[str, Any]) -> None:
    """The rules between fields hold for the fact as corrected, as they held for it as sent:
    a consent expires after it was given, a renewal is due after it was asked; an incident's
    rule selects a window that is not empty. (Each corrected field is checked alone by the
    catalogue.)"""
    expires = data.get("expires_at") if type_name == "consent.given" else None
    if isinstance(expires, str):
        Subject.check_expiry(parse_utc(occurred_at), parse_utc(expires), corrected=True)
    due = data.get("respond_by") if type_name == "consent.renewal_requested" else None
    if isinstance(due, str):
        Subject.check_respond_by(parse_utc(occurred_at), parse_utc(due), corrected=True)
    window = data.get("affected_rule")
    if type_name == "incident.assessed" and isinstance(window, Mapping):
        start, end = window.get("disclosed_from"), window.get("disclosed_to")
        if isinstance(start, str) and isinstance(end, str):
            Incident.check_window(parse_utc(start), parse_utc(end), corrected=True)


# -- the table --------------------------------------------------------------------------------


def _entry(
    fact_type: type[F],
    streams: Callable[[F, SubjectKeys], list[UUID]],
    handle: Callable[[Command[F]], None],
) -> tuple[type[ev.Fact], Handler[Any]]:
    return fact_type, Handler(streams, handle)


HANDLERS: Mapping[type[ev.Fact], Handler[Any]] = dict(
    [
        _entry(ev.PolicyVersionPublished, _policy_stream, policy_version_published),
        _entry(ev.RecipientRegistered, _recipient_stream, recipient_registered),
        _entry(ev.RecipientUpdated, _recipient_stream, recipient_updated),
        _entry(ev.RecipientTerminated, _recipient_stream, recipient_terminated),
        _entry(ev.ConsentGiven, _subject_stream, consent_given),
        _entry(ev.ConsentRefused, _subject_stream, consent_refused),
        _entry(ev.ConsentWithdrawn, _subject_stream, consent_withdrawn),
        _entry(ev.ConsentRenewalRequested, _subject_stream, consent_renewal_requested),
        _entry(ev.AgeAttested, _subject_stream, age_attested),
        _entry(ev.SubjectLifecycleStarted, _subject_stream, subject_lifecycle_started),
        _entry(ev.DisclosureRecorded, _disclosure_stream, disclosure_recorded),
        _entry(ev.IncidentOpened, _incident_stream, incident_opened),
        _entry(ev.IncidentAssessed, _incident_stream, incident_assessed),
        _entry(ev.IncidentContained, _incident_stream, _incident_step(Incident.Contained)),
        _entry(
            ev.IncidentAuthorityNotified,
            _incident_stream,
            _incident_step(Incident.AuthorityNotified),
        ),
        _entry(
            ev.IncidentSubjectsNotified,
            _incident_stream,
            _incident_step(Incident.SubjectsNotified),
        ),
        _entry(ev.IncidentClosed, _incident_stream, _incident_step(Incident.Closed)),
        _entry(ev.RequestReceived, _request_stream, request_received),
        _entry(ev.RequestIdentityVerified, _request_stream, request_identity_verified),
        _entry(ev.RequestExtended, _request_stream, request_extended),
        _entry(ev.RequestFulfilled, _fulfilment_streams, request_fulfilled),
        _entry(ev.RequestRefused, _request_stream, request_refused),
        _entry(ev.CorrectionRecorded, _correction_stream, correction_recorded),
    ]
)


def handler_for(fact: ev.Fact) -> Handler[Any]:
    try:
        return HANDLERS[type(fact)]
    except KeyError:
        raise LedgerError(f"no command handles {fact.TYPE}") from None


def _check_complete() -> None:
    """Every fact type of the catalogue has a handler, and nothing else has one."""
    missing = sorted(n for n, t in ev.FACT_TYPES.items() if t not in HANDLERS)
    extra = sorted(t.TYPE for t in HANDLERS if ev.FACT_TYPES.get(t.TYPE) is not t)
    if missing or extra:
        raise LedgerError(
            f"fact types without a handler: {missing}; handlers for no fact type: {extra}"
        )


_check_complete()
