"""The controlled vocabulary of the catalogue: the words privacy teams already use.

Values follow W3C DPV (``dpv:ConsentGiven``, ``dpv:LegalObligation`` ...) where DPV has a
term, written in snake case; ISO/IEC 27560 record fields guide the consent fields' names.
"""

from __future__ import annotations

from enum import StrEnum


class LegalBasis(StrEnum):
    """Why processing or a disclosure is lawful: consent, or a named exception to it.

    The seed policy's exceptions to consent are ``ledger.verifier.verdicts.CONSENT_EXCEPTIONS``;
    ``legitimate_interest`` and ``public_interest`` hold only for a purpose declared with them.
    """

    CONSENT = "consent"  # dpv:Consent
    CONTRACT = "contract"  # dpv:Contract (contract necessity)
    LEGAL_OBLIGATION = "legal_obligation"  # dpv:LegalObligation
    VITAL_INTEREST = "vital_interest"  # dpv:VitalInterest
    PUBLIC_INTEREST = "public_interest"  # dpv:PublicInterest
    LEGITIMATE_INTEREST = "legitimate_interest"  # dpv:LegitimateInterest
    NATIONAL_SECURITY = "national_security"
    PUBLIC_HEALTH = "public_health"
    CRIMINAL_INVESTIGATION = "criminal_investigation"
    MADE_PUBLIC_BY_SUBJECT = "made_public_by_subject"
    PUBLICLY_DISCLOSED_INFORMATION = "publicly_disclosed_information"
    SERVICE_SAFETY = "service_safety"


class RecipientRole(StrEnum):
    PROCESSOR = "processor"  # dpv:DataProcessor
    SUB_PROCESSOR = "sub_processor"  # dpv:DataSubProcessor
    THIRD_PARTY = "third_party"  # dpv:ThirdParty
    AFFILIATE = "affiliate"
    ACQUIRER = "acquirer"
    PUBLIC = "public"
    AUTHORITY = "authority"  # dpv:Authority


class DisclosureKind(StrEnum):
    DELEGATED_PROCESSING = "delegated_processing"
    SHARING = "sharing"
    TRANSFER = "transfer"  # merger, acquisition
    PUBLIC_DISCLOSURE = "public_disclosure"


class CollectionMethod(StrEnum):
    """How consent was collected (ISO/IEC 27560 ``collection method``)."""

    WEB_FORM = "web_form"
    MOBILE_APP = "mobile_app"
    COOKIE_BANNER = "cookie_banner"
    EMAIL = "email"
    SMS = "sms"
    PAPER = "paper"
    VERBAL = "verbal"
    API = "api"


class RenewalReason(StrEnum):
    """Why a controller asked a subject to renew consent (``consent.renewal_requested``)."""

    EXPIRY_APPROACHING = "expiry_approaching"  # the consent's expires_at is near
    POLICY_CHANGED = "policy_changed"  # a material policy version: consent must be renewed
    PERIODIC_REFRESH = "periodic_refresh"  # the controller's own schedule of reconfirmation


class AgeAttestationMethod(StrEnum):
    SELF_DECLARED = "self_declared"
    DOCUMENT_CHECKED = "document_checked"
    GUARDIAN_DECLARED = "guardian_declared"
    ESTIMATED = "estimated"


class RequestKind(StrEnum):
    """Data-subject rights a request can invoke."""

    ACCESS = "access"  # GDPR 15
    RECTIFICATION = "rectification"  # GDPR 16
    ERASURE = "erasure"  # GDPR 17
    WITHDRAWAL = "withdrawal"  # GDPR 7(3)
    ACCOUNT_CANCELLATION = "account_cancellation"


class RefusalGround(StrEnum):
    """Stated grounds for refusing a request (GDPR 12(5), 17(3); PIPL 47)."""

    IDENTITY_NOT_VERIFIED = "identity_not_verified"
    MANIFESTLY_UNFOUNDED = "manifestly_unfounded"
    EXCESSIVE = "excessive"
    LEGAL_OBLIGATION_TO_RETAIN = "legal_obligation_to_retain"
    LEGAL_CLAIMS = "legal_claims"
    RIGHTS_OF_OTHERS = "rights_of_others"
    PUBLIC_INTEREST = "public_interest"
    NO_DATA_HELD = "no_data_held"
    # The seed policy: a request "that is unnecessarily repetitive, requires excessive technical
    # means ... or is very unrealistic" may be refused (risks to others: RIGHTS_OF_OTHERS).
    UNNECESSARILY_REPETITIVE = "unnecessarily_repetitive"
    EXCESSIVE_TECHNICAL_MEANS = "excessive_technical_means"
    UNREALISTIC = "unrealistic"


class ErasureGround(StrEnum):
    """Why a subject's personal data was erased (GDPR 17(1); the seed policy's promises)."""

    ERASURE_REQUEST = "erasure_request"  # GDPR 17(1), a fulfilled erasure request
    ACCOUNT_CANCELLATION = "account_cancellation"  # a fulfilled cancellation request
    MINOR_DATA_FOUND = "minor_data_found"  # data of a child collected without a guardian
    RETENTION_ENDED = "retention_ended"  # every purpose's retention period has passed
    OPERATOR = "operator"  # an operator's decision, e.g. a court order


class RiskLevel(StrEnum):
    UNLIKELY = "unlikely"  # no notification to the authority needed (GDPR 33(1))
    RISK = "risk"  # notify the authority
    HIGH_RISK = "high_risk"  # notify the subjects too (GDPR 34)


class NotificationChannel(StrEnum):
    EMAIL = "email"
    SMS = "sms"
    IN_APP = "in_app"
    POST = "post"
    PUBLIC_NOTICE = "public_notice"
