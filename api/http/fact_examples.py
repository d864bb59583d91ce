"""An example of every fact type of the catalogue, each one recordable on its own.

The OpenAPI document shows each as the example of its type's schema and of ``POST /v1/events``.
Each names only what :data:`CONTEXT` records (a policy version, recipients, incidents, requests,
an erased subject, an event to correct), so on a ledger holding the context, every example is
recorded, in whatever order they come (``tests/e2e/test_fact_examples.py`` sends them in orders
hypothesis draws; the schemathesis run, ``tests/e2e/test_openapi.py``, in its own). Their ids
(``evt-5xxx``, ``rcp-mailcourier``, ``inc-2026-05xx``, ``req-2026-05xx``, policy ``2026-05``)
are theirs alone, so they do not meet the data set of ``examples/events.jsonl``.
"""

from __future__ import annotations

from typing import Any

UA = "Mozilla/5.0 (Android 16; Mobile) ExampleApp/8.5.0"
SUBJECT = "user-30511"
ERASED = "user-41277"
"""Erased in the context (a cancellation fulfilled): the example of a new lifecycle names it."""
PURPOSES = [
    {
        "id": "service_provision",
        "name": "Providing the service",
        "legal_basis": "contract",
        "retention_days": 1825,
    },
    {
        "id": "marketing_email",
        "name": "Marketing e-mail",
        "legal_basis": "consent",
        "retention_days": 730,
        "description": "Offers and news by e-mail, at most twice a month.",
    },
    {
        "id": "usage_analytics",
        "name": "Usage analytics",
        "legal_basis": "consent",
        "retention_days": 395,
        "separate_consent": True,
    },
]


def _at(day: str, time: str = "09:00:00") -> str:
    return f"2026-{day}T{time}+09:00"


def _request(event: int, request: str, subject: str, kind: str, day: str) -> dict[str, Any]:
    return {
        "type": "request.received",
        "event_id": f"evt-{event}",
        "occurred_at": _at(day),
        "request_id": request,
        "subject": subject,
        "kind": kind,
        "channel": "in_app",
    }


CONTEXT: tuple[dict[str, Any], ...] = (
    {
        "type": "policy.version_published",
        "event_id": "evt-5001",
        "occurred_at": _at("05-01"),
        "version": "2026-05",
        "effective_at": "2026-05-01T00:00:00+09:00",
        "material": False,
        "purposes": PURPOSES,
        "text_digest": "sha256:5d41402abc4b2a76b9719d911017c592ae8e2a9b46c2f3e0d1f6b3c7a9e8d012",
        "url": "https://example.com/privacy/2026-05",
    },
    {
        "type": "recipient.registered",
        "event_id": "evt-5002",
        "occurred_at": _at("05-02"),
        "recipient_id": "rcp-mailcourier",
        "name": "Mail Courier Ltd",
        "role": "processor",
        "country": "IE",
        "agreement_ref": "DPA-2026-021",
        "purposes": ["marketing_email"],
        "data_categories": ["contact.email"],
    },
    {
        "type": "recipient.registered",
        "event_id": "evt-5003",
        "occurred_at": _at("05-02"),
        "recipient_id": "rcp-smsgate",
        "name": "SMS Gate GmbH",
        "role": "processor",
        "country": "DE",
        "data_categories": ["contact.phone"],
    },
    {
        "type": "incident.opened",
        "event_id": "evt-5004",
        "occurred_at": _at("05-03", "03:20:00"),
        "incident_id": "inc-2026-0501",
        "detected_at": _at("05-03", "02:45:00"),
        "summary": "A mailing list export at the mail processor was readable without a login "
        "for two hours.",
        "recipient_id": "rcp-mailcourier",
        "data_categories": ["contact.email"],
    },
    {
        "type": "incident.opened",
        "event_id": "evt-5005",
        "occurred_at": _at("05-04"),
        "incident_id": "inc-2026-0502",
        "detected_at": _at("05-04", "08:30:00"),
        "summary": "A support agent's laptop was stolen; its disk is encrypted.",
    },
    {
        "type": "consent.given",
        "event_id": "evt-5011",
        "occurred_at": _at("05-02", "20:00:00"),
        "subject": SUBJECT,
        "purposes": ["marketing_email"],
        "policy_version": "2026-05",
        "collection_method": "mobile_app",
    },
    _request(5006, "req-2026-0501", SUBJECT, "access", "05-05"),
    _request(5007, "req-2026-0502", SUBJECT, "access", "05-06"),
    _request(5008, "req-2026-0503", SUBJECT, "access", "05-07"),
    _request(5009, "req-2026-0504", ERASED, "account_cancellation", "05-08"),
    {
        "type": "request.fulfilled",
        "event_id": "evt-5010",
        "occurred_at": _at("05-09"),
        "request_id": "req-2026-0504",
        "subject": ERASED,
        "note": "Account closed; the ledger destroyed the subject's key.",
    },
)
"""What the examples name, recorded first: the policy version ``2026-05``, two recipients, two
incidents, :data:`SUBJECT`'s consent to marketing e-mail (a renewal asks again for what was
given) and three open requests, and :data:`ERASED` erased."""

EXAMPLES: tuple[dict[str, Any], ...] = (
    {
        "type": "policy.version_published",
        "event_id": "evt-5101",
        "occurred_at": _at("06-01"),
        "version": "2026-07",
        "effective_at": "2026-07-01T00:00:00+09:00",
        "material": False,
        "purposes": PURPOSES,
        "text_digest": "sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae",
        "url": "https://example.com/privacy/2026-07",
    },
    {
        "type": "recipient.registered",
        "event_id": "evt-5102",
        "occurred_at": _at("06-02"),
        "recipient_id": "rcp-cloudhost",
        "name": "Northwind Cloud Ireland Ltd",
        "role": "processor",
        "country": "IE",
        "agreement_ref": "DPA-2026-030",
        "purposes": ["service_provision"],
        "data_categories": ["account.identifiers", "contact.email"],
    },
    {
        "type": "recipient.updated",
        "event_id": "evt-5103",
        "occurred_at": _at("06-03"),
        "recipient_id": "rcp-mailcourier",
        "agreement_ref": "DPA-2026-021 rev. 2",
    },
    {
        "type": "recipient.terminated",
        "event_id": "evt-5104",
        "occurred_at": _at("06-04", "23:59:00"),
        "recipient_id": "rcp-smsgate",
        "reason": "SMS moved in-house; the processor confirmed deletion of every number.",
    },
    {
        "type": "consent.given",
        "event_id": "evt-5105",
        "occurred_at": _at("06-05", "08:11:42"),
        "subject": SUBJECT,
        "purposes": ["marketing_email"],
        "policy_version": "2026-05",
        "collection_method": "web_form",
        "evidence": {
            "form_id": "signup-v7",
            "notice_digest": "sha256:"
            + "0b5e3a6f1c9d2e4f8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f",
            "ip_address": "203.0.113.41",
            "user_agent": UA,
        },
        "contact": "mina.sato@example.org",
    },
    {
        "type": "consent.refused",
        "event_id": "evt-5106",
        "occurred_at": _at("06-05", "08:11:42"),
        "subject": SUBJECT,
        "purposes": ["usage_analytics"],
        "policy_version": "2026-05",
        "collection_method": "web_form",
        "evidence": {"form_id": "signup-v7"},
    },
    {
        "type": "consent.withdrawn",
        "event_id": "evt-5107",
        "occurred_at": _at("07-04", "21:15:00"),
        "subject": SUBJECT,
        "purposes": ["marketing_email"],
        "policy_version": "2026-05",
        "collection_method": "email",
        "evidence": {"notice_id": "newsletter-unsubscribe-footer"},
        "contact": "mina.sato@example.org",
    },
    {
        "type": "consent.renewal_requested",
        "event_id": "evt-5108",
        "occurred_at": _at("06-20"),
        "subject": SUBJECT,
        "purposes": ["marketing_email"],
        "policy_version": "2026-05",
        "reason": "periodic_refresh",
        "channel": "email",
        "respond_by": "2026-07-20T23:59:59+09:00",
    },
    {
        "type": "subject.age_attested",
        "event_id": "evt-5109",
        "occurred_at": _at("06-05", "08:10:00"),
        "subject": SUBJECT,
        "age": 34,
        "method": "self_declared",
    },
    {
        "type": "subject.lifecycle_started",
        "event_id": "evt-5110",
        "occurred_at": _at("06-10", "12:15:00"),
        "subject": ERASED,
        "reason": "The reference was reused for a new account opened by a new sign-up.",
    },
    {
        "type": "disclosure.recorded",
        "event_id": "evt-5111",
        "occurred_at": _at("06-11"),
        "disclosure_id": "dsc-2026-0501",
        "recipient_id": "rcp-mailcourier",
        "kind": "delegated_processing",
        "subjects": [SUBJECT],
        "data_categories": ["contact.email"],
        "purpose": "service_provision",
        "legal_basis": "contract",
        "de_identified": False,
        "destination_country": "IE",
        "policy_version": "2026-05",
    },
    {
        "type": "incident.opened",
        "event_id": "evt-5112",
        "occurred_at": _at("06-12", "03:20:00"),
        "incident_id": "inc-2026-0503",
        "detected_at": _at("06-12", "02:45:00"),
        "summary": "Password-reset mails were sent to the wrong addresses for ten minutes.",
        "data_categories": ["contact.email"],
    },
    {
        "type": "incident.assessed",
        "event_id": "evt-5113",
        "occurred_at": _at("05-03", "06:00:00"),
        "incident_id": "inc-2026-0501",
        "risk": "high_risk",
        "data_categories": ["contact.email"],
        "likely_consequences": "E-mail addresses of members may be used for targeted phishing.",
        "affected_subjects": [SUBJECT],
        "approximate_subject_count": 1,
    },
    {
        "type": "incident.contained",
        "event_id": "evt-5114",
        "occurred_at": _at("05-03", "07:30:00"),
        "incident_id": "inc-2026-0501",
        "measures": "The export was deleted and the processor's bucket made private.",
    },
    {
        "type": "incident.authority_notified",
        "event_id": "evt-5115",
        "occurred_at": _at("05-04", "18:00:00"),
        "incident_id": "inc-2026-0501",
        "authority": "Personal Information Protection Commission (JP)",
        "reference": "PPC-2026-0504-0142",
        "dpo_contact": "Data Protection Officer, Example Co., privacy@example.com",
    },
    {
        "type": "incident.subjects_notified",
        "event_id": "evt-5116",
        "occurred_at": _at("05-05", "10:00:00"),
        "incident_id": "inc-2026-0501",
        "channel": "email",
        "subject_count": 1,
        "message_digest": "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
    },
    {
        "type": "incident.closed",
        "event_id": "evt-5117",
        "occurred_at": _at("06-15", "17:00:00"),
        "incident_id": "inc-2026-0502",
        "resolution": "The laptop's disk was encrypted and its keys revoked; nothing was read.",
    },
    {
        "type": "request.received",
        "event_id": "evt-5118",
        "occurred_at": _at("06-18", "09:12:00"),
        "request_id": "req-2026-0505",
        "subject": SUBJECT,
        "kind": "access",
        "channel": "in_app",
        "jurisdiction": "JP",
        "details": "Please send me a copy of my data and the companies that received it.",
    },
    {
        "type": "request.identity_verified",
        "event_id": "evt-5119",
        "occurred_at": _at("05-05", "09:12:00"),
        "request_id": "req-2026-0501",
        "subject": SUBJECT,
        "method": "authenticated_session",
    },
    {
        "type": "request.extended",
        "event_id": "evt-5120",
        "occurred_at": _at("05-20", "11:00:00"),
        "request_id": "req-2026-0501",
        "subject": SUBJECT,
        "extension_days": 14,
        "reason": "The archive of support tickets has to be restored from backup first.",
    },
    {
        "type": "request.fulfilled",
        "event_id": "evt-5121",
        "occurred_at": _at("05-28", "16:00:00"),
        "request_id": "req-2026-0502",
        "subject": SUBJECT,
        "note": "Export delivered as a download link in the app.",
        "bundle_manifest_sha256": "3a7bd3e2360a3d29eea436fcfb7e44c7"
        "35d117c42d1c1835420b6b9942dd4f1b",
    },
    {
        "type": "request.refused",
        "event_id": "evt-5122",
        "occurred_at": _at("05-30", "11:00:00"),
        "request_id": "req-2026-0503",
        "subject": SUBJECT,
        "ground": "unnecessarily_repetitive",
        "explanation": "A full export is being prepared (req-2026-0502); a second copy "
        "at the same time is unnecessarily repetitive.",
    },
    {
        "type": "correction.recorded",
        "event_id": "evt-5123",
        "occurred_at": _at("06-16"),
        "corrects_event_id": "evt-5004",
        "reason": "The detection time was copied from the ticket; the alert fired earlier.",
        "corrected_fields": {"detected_at": "2026-05-03T02:30:00+09:00"},
    },
)
"""One fact of every type, in the catalogue's order; each recorded on a ledger holding
:data:`CONTEXT`, whichever of the others came before it."""

BY_TYPE: dict[str, dict[str, Any]] = {fact["type"]: fact for fact in EXAMPLES}
"""The example of each type."""
