"""The streams of the ledger: one aggregate per subject, policy version, recipient,
disclosure, incident, data-subject request and correction (``docs/architecture.md`` says why).

Guards named ``check_*`` raise :class:`~ledger.errors.ValidationError` before any event is
triggered; ``apply`` methods only evolve state.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ledger.domain import LedgerAggregate, LedgerCreated, LedgerEvent, register, rule
from ledger.vocabulary import ErasureGround


@register
class Subject(LedgerAggregate):
    """A person, known only by pseudonym: consent decisions and age attestations."""

    class Registered(LedgerCreated):
        TYPE = "subject.registered"

    class ConsentGiven(LedgerEvent):
        TYPE = "consent.given"

        def apply(self, aggregate: Subject) -> None:
            for purpose in self.data["purposes"]:
                first = aggregate.first_given.get(purpose)
                if first is None or self.occurred_at < first:
                    aggregate.first_given[purpose] = self.occurred_at

    class ConsentRefused(LedgerEvent):
        TYPE = "consent.refused"

    class ConsentWithdrawn(LedgerEvent):
        TYPE = "consent.withdrawn"

    class RenewalRequested(LedgerEvent):
        """Decides nothing: the read models show it as pending until the next decision."""

        TYPE = "consent.renewal_requested"

    class AgeAttested(LedgerEvent):
        TYPE = "subject.age_attested"

        def apply(self, aggregate: Subject) -> None:
            aggregate.attested_age = int(self.data["age"])
            aggregate.age_attested_at = self.occurred_at

    class LifecycleStarted(LedgerEvent):
        TYPE = "subject.lifecycle_started"

    class Erased(LedgerEvent):
        """The subject's key was destroyed in the same commit; no personal data here."""

        TYPE = "subject.erased"

        def apply(self, aggregate: Subject) -> None:
            aggregate.erased_at_version = self.originator_version

    def __init__(self, **_: Any) -> None:
        self.attested_age: int | None = None
        self.age_attested_at: datetime | None = None
        self.erased_at_version: int | None = None
        self.first_given: dict[str, datetime] = {}
        """Purpose -> when consent to it was first given (by ``occurred_at``)."""

    def check_not_erased(self) -> None:
        if self.erased_at_version is not None:
            raise rule(
                "subject",
                "subject_erased",
                "the subject was erased: nothing more is recorded for it; to record facts "
                "about a new relationship with the same reference, send a "
                "subject.lifecycle_started fact first",
            )

    def check_may_consent(
        self, minimum_age: int, has_guardian: bool, guardian_allowed: bool
    ) -> None:
        """A minor's own consent is refused; a guardian's is recorded even where the policy
        version accepts none (it happened; the read models judge it not valid)."""
        if self.attested_age is not None and self.attested_age < minimum_age and not has_guardian:
            raise rule(
                "subject",
                "subject_is_minor",
                f"the subject was attested to be {self.attested_age}, under the minimum age "
                f"{minimum_age}; "
                + (
                    "consent needs a guardian"
                    if guardian_allowed
                    else "the policy version accepts no consent for a minor, not even a "
                    "guardian's (guardian_consent_allowed is false)"
                ),
            )

    def check_given_before(self, purposes: list[str], occurred_at: datetime) -> None:
        """A renewal renews: consent to each purpose was given before the request (at any
        time, even if withdrawn since). Asking for the first time is a request for consent."""
        for index, purpose in enumerate(purposes):
            first = self.first_given.get(purpose)
            if first is None or first >= occurred_at:
                raise rule(
                    f"purposes[{index}]",
                    "renewal_without_prior_consent",
                    f"the subject never gave consent to {purpose!r} before this request; a "
                    "first request for consent is not a renewal",
                )

    @staticmethod
    def check_respond_by(
        occurred_at: datetime, respond_by: datetime | None, *, corrected: bool = False
    ) -> None:
        """A renewal request's answer is due after it was asked (as sent, or as corrected)."""
        if respond_by is not None and respond_by <= occurred_at:
            field = "corrected_fields.respond_by" if corrected else "respond_by"
            raise rule(field, "respond_by_before_occurred", "respond_by must be after occurred_at")

    @staticmethod
    def check_expiry(
        occurred_at: datetime, expires_at: datetime | None, *, corrected: bool = False
    ) -> None:
        """A consent expires after it was given (as sent, or as a correction makes it)."""
        if expires_at is not None and expires_at <= occurred_at:
            if corrected:
                raise rule(
                    "corrected_fields.expires_at",
                    "expires_before_occurred",
                    "the corrected consent would expire before it was given",
                )
            raise rule(
                "expires_at", "expires_before_occurred", "expires_at must be after occurred_at"
            )


@register
class PolicyVersion(LedgerAggregate):
    """One published version of the privacy policy, with its purposes. Immutable."""

    class Published(LedgerCreated):
        TYPE = "policy.version_published"

    def __init__(self, data: dict[str, Any], **_: Any) -> None:
        self.policy_version: str = data["version"]
        self.effective_at = datetime.fromisoformat(data["effective_at"])
        self.minimum_age: int | None = data.get("minimum_age")
        self.guardian_consent_allowed = bool(data.get("guardian_consent_allowed", False))
        self.purposes: dict[str, dict[str, Any]] = {p["id"]: p for p in data["purposes"]}

    def minimum_age_or(self, configured: int) -> int:
        """The minimum age for consent: this version's own, else the ledger's configured one."""
        return self.minimum_age if self.minimum_age is not None else configured

    def check_purposes(self, purposes: list[str], field: str) -> None:
        """``purposes`` come from ``field``: a list field (indexed) or a single one."""
        for index, purpose in enumerate(purposes):
            if purpose not in self.purposes:
                raise rule(
                    f"{field}[{index}]" if field.endswith("purposes") else field,
                    "purpose_unknown",
                    f"purpose {purpose!r} is not in policy version {self.policy_version} "
                    f"(it has: {', '.join(sorted(self.purposes))})",
                )

    def check_in_effect(self, occurred_at: datetime) -> None:
        if occurred_at < self.effective_at:
            raise rule(
                "policy_version",
                "policy_not_in_effect",
                f"policy version {self.policy_version} takes effect at "
                f"{self.effective_at.isoformat()}, after the fact occurred",
            )

    def check_consent_based(self, purposes: list[str]) -> None:
        """Consent is asked for consent-based purposes only."""
        for index, purpose in enumerate(purposes):
            declared = self.purposes[purpose]
            if declared["legal_basis"] != "consent":
                raise rule(
                    f"purposes[{index}]",
                    "purpose_not_consent_based",
                    f"purpose {purpose!r} rests on {declared['legal_basis']}, not on consent",
                )

    def check_consent_purposes(self, purposes: list[str]) -> None:
        """Consent covers consent-based purposes; a separate-consent purpose stands alone."""
        self.check_consent_based(purposes)
        for index, purpose in enumerate(purposes):
            declared = self.purposes[purpose]
            if declared.get("separate_consent") and len(purposes) > 1:
                raise rule(
                    f"purposes[{index}]",
                    "separate_consent_bundled",
                    f"purpose {purpose!r} needs its own consent, not one bundled with others",
                )


@register
class Recipient(LedgerAggregate):
    """A processor, third party, affiliate, acquirer, the public or an authority."""

    class Registered(LedgerCreated):
        TYPE = "recipient.registered"

    class Updated(LedgerEvent):
        TYPE = "recipient.updated"

    class Terminated(LedgerEvent):
        TYPE = "recipient.terminated"

        def apply(self, aggregate: Recipient) -> None:
            aggregate.terminated = True

    def __init__(self, data: dict[str, Any], **_: Any) -> None:
        self.role: str = data["role"]
        self.terminated = False

    @staticmethod
    def check_may_register(role: str, parent_recipient_id: str | None) -> None:
        """A sub-processor names the processor that engaged it."""
        if role == "sub_processor" and parent_recipient_id is None:
            raise rule(
                "parent_recipient_id",
                "parent_required",
                "a sub-processor names the processor that engaged it",
            )

    def check_may_engage_sub_processor(self) -> None:
        self.check_active("parent_recipient_id")
        if self.role not in ("processor", "sub_processor"):
            raise rule(
                "parent_recipient_id",
                "parent_not_processor",
                f"a sub-processor is engaged by a processor; this recipient's role is {self.role}",
            )

    def check_active(self, field: str = "recipient_id") -> None:
        if self.terminated:
            raise rule(field, "recipient_terminated", "the recipient was terminated already")


@register
class Disclosure(LedgerAggregate):
    """One disclosure of one or many subjects' data to one recipient."""

    class Recorded(LedgerCreated):
        TYPE = "disclosure.recorded"

    def __init__(self, **_: Any) -> None:
        pass


@register
class Incident(LedgerAggregate):
    """A security incident, from detection to closure (GDPR 33, 34; PIPL 57)."""

    class Opened(LedgerCreated):
        TYPE = "incident.opened"

    class Assessed(LedgerEvent):
        TYPE = "incident.assessed"

    class Contained(LedgerEvent):
        TYPE = "incident.contained"

    class AuthorityNotified(LedgerEvent):
        TYPE = "incident.authority_notified"

    class SubjectsNotified(LedgerEvent):
        TYPE = "incident.subjects_notified"

    class Closed(LedgerEvent):
        TYPE = "incident.closed"

        def apply(self, aggregate: Incident) -> None:
            aggregate.closed = True

    def __init__(self, **_: Any) -> None:
        self.closed = False

    def check_open(self) -> None:
        if self.closed:
            raise rule("incident_id", "incident_closed", "the incident is closed already")

    @staticmethod
    def check_window(
        disclosed_from: datetime, disclosed_to: datetime, *, corrected: bool = False
    ) -> None:
        """An assessment's affected rule selects a window that is not empty (as sent, or as a
        correction makes it)."""
        if disclosed_to <= disclosed_from:
            if corrected:
                raise rule(
                    "corrected_fields.affected_rule",
                    "window_empty",
                    "the corrected rule's disclosed_to must be after its disclosed_from",
                )
            raise rule(
                "affected_rule.disclosed_to",
                "window_empty",
                "disclosed_to must be after disclosed_from",
            )


@register
class RightsRequest(LedgerAggregate):
    """A data-subject request: access, rectification, erasure, withdrawal, cancellation."""

    class Received(LedgerCreated):
        TYPE = "request.received"

    class IdentityVerified(LedgerEvent):
        TYPE = "request.identity_verified"

    class Extended(LedgerEvent):
        TYPE = "request.extended"

        def apply(self, aggregate: RightsRequest) -> None:
            aggregate.extension_days += int(self.data["extension_days"])

    class Fulfilled(LedgerEvent):
        TYPE = "request.fulfilled"

        def apply(self, aggregate: RightsRequest) -> None:
            aggregate.outcome = "fulfilled"

    class Refused(LedgerEvent):
        TYPE = "request.refused"

        def apply(self, aggregate: RightsRequest) -> None:
            aggregate.outcome = "refused"

    def __init__(self, data: dict[str, Any], **_: Any) -> None:
        self.subject: str = data["subject"]
        self.kind: str = data["kind"]
        self.outcome: str | None = None
        self.extension_days = 0

    def check_step(self, subject: str) -> None:
        if self.outcome is not None:
            raise rule("request_id", "request_closed", f"the request was {self.outcome} already")
        if subject != self.subject:
            raise rule(
                "subject", "subject_mismatch", "the request was received for another subject"
            )

    def check_may_cite_bundle(self, cited: str | None) -> None:
        """Only an access request is answered with the subject's bundle."""
        if cited is not None and self.kind != "access":
            raise rule(
                "bundle_manifest_sha256",
                "bundle_only_for_access",
                f"a request of kind {self.kind!r} is not answered with a bundle; only an "
                "access request is",
            )

    def erasure_ground(self) -> ErasureGround | None:
        """Why fulfilling this request erases its subject; None when it does not."""
        return _ERASING_KINDS.get(self.kind)

    def check_may_extend(self, days: int, most: int) -> None:
        """All the extensions of a request add up to at most ``most`` days."""
        if self.extension_days + days > most:
            raise rule(
                "extension_days",
                "extensions_exceed_maximum",
                f"the request was extended by {self.extension_days} days already; all "
                f"extensions together are at most {most} days",
            )


_ERASING_KINDS = {
    "erasure": ErasureGround.ERASURE_REQUEST,
    "account_cancellation": ErasureGround.ACCOUNT_CANCELLATION,
}
"""The request kinds whose fulfilment erases the subject, with the ground recorded."""


@register
class DataAccess(LedgerAggregate):
    """One read of personal data, recorded by the ledger itself (:mod:`ledger.access_records`):
    a stream of one event, so that reads never wait on each other."""

    class Recorded(LedgerCreated):
        TYPE = "personal_data.accessed"

    def __init__(self, **_: Any) -> None:
        pass


@register
class Correction(LedgerAggregate):
    """A correction of an earlier event, which stays as it was recorded."""

    class Recorded(LedgerCreated):
        TYPE = "correction.recorded"

    def __init__(self, **_: Any) -> None:
        pass


@register
class RecipientNotice(LedgerAggregate):
    """One notice owed to a recipient (GDPR 19, :mod:`ledger.notices`), recorded by the ledger:
    owed, delivered, acknowledged; each at most once."""

    class Due(LedgerCreated):
        TYPE = "recipient.notice_due"

    class Notified(LedgerEvent):
        TYPE = "recipient.notified"

        def apply(self, aggregate: RecipientNotice) -> None:
            aggregate.notified = True

    class Acknowledged(LedgerEvent):
        TYPE = "recipient.acknowledged"

        def apply(self, aggregate: RecipientNotice) -> None:
            aggregate.acknowledged = True

    def __init__(self, data: dict[str, Any], **_: Any) -> None:
        self.recipient_id: str = data["recipient_id"]
        self.told: str = data["told_subjects"][0]
        """The subject, as the sealed mention the first event holds."""
        self.notified = False
        self.acknowledged = False

    def check_not_notified(self) -> None:
        if self.notified:
            raise rule("notice_id", "notice_notified", "the notice was delivered already")

    def check_not_acknowledged(self) -> None:
        if self.acknowledged:
            raise rule("notice_id", "notice_acknowledged", "the notice was acknowledged already")
