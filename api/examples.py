"""Examples for the OpenAPI documents: what each answer looks like (from examples/events.jsonl)."""

from __future__ import annotations

from typing import Any

PSEUDONYM = "4890a934-f947-1ab0-1d85-0fb955cd2f00"

DECISION = {
    "subject": PSEUDONYM,
    "purpose": "marketing_email",
    "allowed": False,
    "status": "withdrawn",
    "dpv_status": "dpv:ConsentWithdrawn",
    "decided_by_seq": 20,
    "policy_version": "2026-03",
    "since": "2026-04-01T22:45:19.000000Z",
}
STATE = {
    "subject": PSEUDONYM,
    "purposes": [
        {
            "purpose": "marketing_email",
            "status": "withdrawn",
            "dpv_status": "dpv:ConsentWithdrawn",
            "valid": False,
            "policy_version": "2026-03",
            "since": "2026-04-01T22:45:19.000000Z",
            "decided_by_seq": 20,
        }
    ],
}
EVENT = {
    "seq": 9,
    "type": "consent.given",
    "type_version": 1,
    "stream": PSEUDONYM,
    "stream_version": 2,
    "event_id": "evt-0009",
    "occurred_at": "2026-03-05T12:14:03.000000Z",
    "recorded_at": "2026-11-29T05:34:36.386137Z",
    "backdated": True,
    "data": {
        "subject": PSEUDONYM,
        "subject_ref": "user-10482",
        "purposes": ["marketing_email"],
        "policy_version": "2026-03",
        "collection_method": "web_form",
    },
    "event_hash": "d89040974ba3322e99db0529bb1d3bff6071ed94c80e33283132cfaec7a44fc9",
    "signature": "68LBRHVYKa5fl/yDfKqM0/ajiK6gqe9wXI6eZggc/1nLzCdErfvHh/0SZFx/kQc2X/UK01xy70"
    "35RLz4zvaSDw==",
    "key_id": "6775c32dd645dad0",
    "emitter": None,
}
DISCLOSURES = {
    "items": [
        {
            "seq": 21,
            "subject": PSEUDONYM,
            "disclosure_id": "dsc-2026-04-northwind",
            "occurred_at": "2026-04-30T14:59:59.000000Z",
            "recipient_id": "rcp-northwind-cloud",
            "recipient_name": "Northwind Cloud Ireland Ltd",
            "recipient_role": "processor",
            "recipient_country": "IE",
            "kind": "delegated_processing",
            "data_categories": ["usage.logs"],
            "purpose": "usage_analytics",
            "legal_basis": "consent",
            "de_identified": True,
            "destination_country": "IE",
            "policy_version": "2026-03",
            "verdict": "consent_missing",
            "violation": True,
            "consent_seq": None,
        }
    ],
    "next_cursor": None,
}
REQUESTS = [
    {
        "request_id": "req-2026-0131",
        "subject": PSEUDONYM,
        "kind": "erasure",
        "channel": "email",
        "jurisdiction": None,
        "received_at": "2026-10-20T13:03:00.000000Z",
        "status": "refused",
        "due_at": "2026-11-17T13:03:00.000000Z",
        "overdue": False,
        "answered_late": False,
        "refusal_ground": "legal_obligation_to_retain",
    }
]
INCIDENT = {
    "incident_id": "inc-2026-003",
    "status": "closed",
    "detected_at": "2026-06-09T16:55:00.000000Z",
    "authority_deadline": "2026-06-12T16:55:00.000000Z",
    "authority_notified_at": "2026-06-11T01:00:00.000000Z",
    "authority_overdue": False,
    "authority_notified_late": False,
    "affected_subjects": [PSEUDONYM],
}


CHECKPOINT = (
    "consent-ledger.local/46baf3d6\n44\nkx/9JW5orXvaojLZVqCPICXKNFys+d5Ht1sgsLFOIaM=\n\n"
    "\u2014 consent-ledger.local/46baf3d6 tbdfZBywbMJEQq1c4Vg5egXn41541D6LX2L41iZXAIvtSj/PcmSZGb"
    "Tq1hk+KTKUu9tXBo9upijQo1N30J6FSkH23w8=\n"
)
KEYS = "consent-ledger.local/46baf3d6+b5b75f64+AdnR6c3dbT8I0KPK7Uj5dqcAQQxP3Bvp93H/5VwL4+9S\n"


def text_example(value: str, description: str = "OK") -> dict[int | str, dict[str, Any]]:
    return {200: {"description": description, "content": {"text/plain": {"example": value}}}}


def example(value: Any, description: str = "OK") -> dict[int | str, dict[str, Any]]:
    return {200: {"description": description, "content": {"application/json": {"example": value}}}}
