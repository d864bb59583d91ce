"""Builders of realistic facts for tests; every id is fresh, so tests can share a database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4


def ref(prefix: str = "id") -> str:
    return f"{prefix}-{uuid4().hex[:12]}"


def now(offset: timedelta = timedelta()) -> str:
    return (datetime.now(UTC) + offset).isoformat()


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
    },
    {
        "id": "usage_analytics",
        "name": "Usage analytics",
        "legal_basis": "consent",
        "retention_days": 365,
        "separate_consent": True,
    },
]


def policy(version: str | None = None, **fields: Any) -> dict[str, Any]:
    return {
        "type": "policy.version_published",
        "event_id": ref("evt"),
        "occurred_at": now(),
        "version": version or ref("policy"),
        "effective_at": "2026-01-01T00:00:00Z",
        "material": False,
        "text_digest": "sha256:" + "ab" * 32,
        "purposes": PURPOSES,
        **fields,
    }


def consent(
    subject: str, policy_version: str, kind: str = "given", **fields: Any
) -> dict[str, Any]:
    return {
        "type": f"consent.{kind}",
        "event_id": ref("evt"),
        "occurred_at": now(),
        "subject": subject,
        "purposes": ["marketing_email"],
        "policy_version": policy_version,
        "collection_method": "web_form",
        **fields,
    }


def age(subject: str, years: int) -> dict[str, Any]:
    return {
        "type": "subject.age_attested",
        "event_id": ref("evt"),
        "occurred_at": now(),
        "subject": subject,
        "age": years,
        "method": "self_declared",
    }


def recipient(recipient_id: str | None = None, **fields: Any) -> dict[str, Any]:
    return {
        "type": "recipient.registered",
        "event_id": ref("evt"),
        "occurred_at": now(),
        "recipient_id": recipient_id or ref("rcpt"),
        "name": "Example Cloud Ltd",
        "role": "processor",
        "country": "IE",
        **fields,
    }


def disclosure(
    recipient_id: str, subjects: list[str], policy_version: str, **fields: Any
) -> dict[str, Any]:
    return {
        "type": "disclosure.recorded",
        "event_id": ref("evt"),
        "occurred_at": now(),
        "disclosure_id": ref("disc"),
        "recipient_id": recipient_id,
        "kind": "sharing",
        "subjects": subjects,
        "data_categories": ["contact"],
        "purpose": "marketing_email",
        "legal_basis": "consent",
        "de_identified": False,
        "destination_country": "US",
        "policy_version": policy_version,
        **fields,
    }


def incident(incident_id: str | None = None) -> dict[str, Any]:
    return {
        "type": "incident.opened",
        "event_id": ref("evt"),
        "occurred_at": now(),
        "incident_id": incident_id or ref("inc"),
        "detected_at": now(),
        "summary": "Misconfigured storage bucket at the hosting processor",
    }


def request(
    subject: str, request_id: str | None = None, kind: str = "access", **fields: Any
) -> dict[str, Any]:
    return {
        "type": "request.received",
        "event_id": ref("evt"),
        "occurred_at": now(),
        "request_id": request_id or ref("req"),
        "subject": subject,
        "kind": kind,
        "channel": "web_form",
        **fields,
    }


def time_correction(original: dict[str, Any], days: int) -> dict[str, Any]:
    """A correction of ``original``'s ``occurred_at`` to ``days`` earlier."""
    moment = datetime.fromisoformat(str(original["occurred_at"])) - timedelta(days=days)
    return {
        "type": "correction.recorded",
        "event_id": ref("evt"),
        "occurred_at": now(),
        "corrects_event_id": original["event_id"],
        "reason": "recorded with the wrong time",
        "corrected_fields": {"occurred_at": moment.isoformat()},
    }
