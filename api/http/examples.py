"""Examples for the OpenAPI documents: what each answer looks like (from examples/events.jsonl)."""

from __future__ import annotations

from typing import Any

PSEUDONYM = "4890a934-f947-1ab0-1d85-0fb955cd2f00"

DECISION = {
    "subject": PSEUDONYM,
    "purpose": "marketing_email",
    "allowed": False,
    "answer": "no",
    "legal_basis": "consent",
    "status": "withdrawn",
    "dpv_status": "dpv:ConsentWithdrawn",
    "decided_by_seq": 20,
    "policy_version": "2026-03",
    "since": "2026-04-01T22:45:19.000000Z",
}
STATE = {
    "subject": PSEUDONYM,
    "erased": None,
    "purposes": [
        {
            "purpose": "marketing_email",
            "status": "withdrawn",
            "dpv_status": "dpv:ConsentWithdrawn",
            "valid": False,
            "policy_version": "2026-03",
            "since": "2026-04-01T22:45:19.000000Z",
            "decided_by_seq": 20,
            "pending_renewal": None,
        },
        {
            "purpose": "analytics",
            "status": "given",
            "dpv_status": "dpv:ConsentGiven",
            "valid": True,
            "policy_version": "2026-03",
            "since": "2026-03-05T12:14:03.000000Z",
            "decided_by_seq": 9,
            "pending_renewal": {
                "seq": 31,
                "since": "2026-11-02T09:00:00.000000Z",
                "policy_version": "2026-03",
                "reason": "expiry_approaching",
                "channel": "email",
                "respond_by": "2026-12-01T00:00:00.000000Z",
            },
        },
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
        "received_seq": 36,
        "identity_verified_at": "2026-10-21T09:00:00.000000Z",
        "identity_verified_seq": 37,
        "extension_days": 0,
        "extensions": 0,
        "status": "refused",
        "closed_at": "2026-11-02T10:00:00.000000Z",
        "closed_seq": 40,
        "refusal_ground": "legal_obligation_to_retain",
        "last_seq": 40,
        "due_at": "2026-11-17T13:03:00.000000Z",
        "overdue": False,
        "answered_late": False,
        "days_left": None,
    }
]
INCIDENT = {
    "incident_id": "inc-2026-003",
    "opened_seq": 24,
    "detected_at": "2026-06-09T16:55:00.000000Z",
    "summary": "A misconfigured analytics export sent usage logs to the wrong bucket.",
    "recipient_id": "rcp-northwind-cloud",
    "status": "closed",
    "risk": "high_risk",
    "data_categories": ["usage.logs"],
    "likely_consequences": "Members' usage patterns seen by the bucket's operator.",
    "affected_rule": {
        "recipient_id": "rcp-northwind-cloud",
        "disclosed_from": "2026-06-01T00:00:00.000000Z",
        "disclosed_to": "2026-06-09T16:55:00.000000Z",
    },
    "approximate_subject_count": 1200,
    "assessed_at": "2026-06-10T09:00:00.000000Z",
    "assessed_seq": 25,
    "contained_at": "2026-06-10T11:30:00.000000Z",
    "contained_seq": 26,
    "measures": "The bucket was locked and its objects deleted; exports re-keyed.",
    "authority_notified_at": "2026-06-11T01:00:00.000000Z",
    "authority_notified_seq": 27,
    "authority": "Data Protection Commission",
    "authority_reference": "DPC-2026-0611-17",
    "dpo_contact": "dpo@example.com",
    "delay_reason": None,
    "subjects_notified_at": "2026-06-11T08:00:00.000000Z",
    "subjects_notified_seq": 28,
    "subjects_notified_channel": "email",
    "subjects_notified_count": 1200,
    "closed_at": "2026-06-20T12:00:00.000000Z",
    "closed_seq": 29,
    "resolution": "Contained; the operator confirmed deletion in writing.",
    "last_seq": 29,
    "affected_subjects": [PSEUDONYM],
    "authority_deadline": "2026-06-12T16:55:00.000000Z",
    "authority_overdue": False,
    "authority_notified_late": False,
    "subjects_notification_due": False,
    "article_33_3": {
        "nature": {
            "summary": "A misconfigured analytics export sent usage logs to the wrong bucket.",
            "data_categories": ["usage.logs"],
            "approximate_subject_count": 1200,
            "affected_subject_count": 1,
        },
        "dpo_contact": "dpo@example.com",
        "likely_consequences": "Members' usage patterns seen by the bucket's operator.",
        "measures": "The bucket was locked and its objects deleted; exports re-keyed.",
        "missing": [],
    },
    "affected_subject_count": 1,
    "subjects_by_rule": [PSEUDONYM],
}

CHECKPOINT = (
    "consent-ledger.local/46baf3d6\n44\nkx/9JW5orXvaojLZVqCPICXKNFys+d5Ht1sgsLFOIaM=\n\n"
    "\u2014 consent-ledger.local/46baf3d6 tbdfZBywbMJEQq1c4Vg5egXn41541D6LX2L41iZXAIvtSj/PcmSZGb"
    "Tq1hk+KTKUu9tXBo9upijQo1N30J6FSkH23w8=\n"
)
KEYS = "consent-ledger.local/46baf3d6+b5b75f64+AdnR6c3dbT8I0KPK7Uj5dqcAQQxP3Bvp93H/5VwL4+9S\n"

# The proofs and entry below come from a log of examples/events.jsonl (44 events), as the
# routes answer them; the checkpoint is that log's, so the proofs verify against it.
PROOF_CHECKPOINT = (
    "consent-ledger.local/e4308d80\n"
    "44\n"
    "hYeIwgg75tkAldD7jCOFE47OvcBwsJoymcRmKDFgsd8=\n"
    "\n"
    "\u2014 consent-ledger.local/e4308d80 La+KdAgP/8aD/fdmm6KAw3buRL+wF9TjsnrZp5SbuiZGC7EW987tEl"
    "UfKP0jo82h3IcoDy2BQ1GCy19ufSEw6sXhFwE=\n"
)

INCLUSION_PROOF = {
    "index": 9,
    "size": 44,
    "leaf_hash": "lD9HRh21Xd7HU4jWYIy0moZno5UWOayM3vRQ1nhmgmg=",
    "proof": [
        "nlONVvZE7OT3NKTcNr6IOBbKv7rLT3g2HxneAsPcUfI=",
        "Y6Djjw6KlavHkJVuIHkL3V5yPZG9bKWPeYyOqUwKXaw=",
        "v9VTOlK2jxteHeIs0zVGV82A+dwL7a/jYmz6WSrNvXo=",
        "iNy0BF29xX+WoTI5ZYdwwTEeLBc54tMWYgPGxEa59l0=",
        "noTvwEbTii6s8VOw8P8x5vNRIrh44vVTb8QrGvNZJ1g=",
        "o02Zsvo6YErStVDvJ7dW3wEf5PLK9o0zwxgjsx/ff04=",
    ],
    "checkpoint": PROOF_CHECKPOINT,
}

CONSISTENCY_PROOF = {
    "from": 20,
    "to": 44,
    "proof": [
        "wq6FoC3KNBYkh+3UmSC/8PVYYHLF32BeNdkLo3lyFQI=",
        "YDOcQkmkFKIbSe3vEDz8o6t8MQSWJ4ObIYVo7rLzuR8=",
        "ysdgIA6FzFe3hhqid/vIHTXfqczhPxOJanbDkI734QI=",
        "WKC2AwSWIpxESNC55/lXPwwgSzpFH9fWVBZr2O/uP6Q=",
        "o02Zsvo6YErStVDvJ7dW3wEf5PLK9o0zwxgjsx/ff04=",
    ],
}

ENTRIES = {
    "entries": [
        {
            "index": 9,
            "entry": (
                "AgAAAAAAAAAKJxvxnsnFHtN0VQbQBLX53aZUOcIirTLPPCAKo+h3ggDnwmIHzVt1vAACkoke"
                "Grwa/xoFU0U0kJrdStxrFgn+M+31F/9fYy7djmw="
            ),
            "body": (
                "eyJiYWNrZGF0ZWQiOnRydWUsImRhdGEiOnsiY29sbGVjdGlvbl9tZXRob2QiOiJ3ZWJfZm9y"
                "bSIsImNvbnRhY3QiOiJzZWFsZWQ6djE6RzVkRDBaQUNkcGZ2TzNKdTFCM0l1SktUNDN5TUZT"
                "cUxlbWRCRGpXWjdxMng3ZHdraGVrSk9JRWpnTC83Q2hGV0xQNDBMc0tNOENCL1hEMjdULzA9"
                "IiwiZXZpZGVuY2UiOnsiZm9ybV9pZCI6InNpZ251cC13ZWItdjciLCJpcF9hZGRyZXNzIjoi"
                "c2VhbGVkOnYxOmVjRFVrcHlZR2FiRjZyUDRMbWtNWHltZ0tuQjdRaGhnNUZ0RitYWmF0UVNU"
                "Q0t6MmFDNmo2aE5UWUo1S0lwVWwxSEh0S3c9PSIsIm5vdGljZV9kaWdlc3QiOiJzaGEyNTY6"
                "ODYxNjk5ZmU3YjQyMWRlNjIxZDhlYjVmZGI1MzMyNTI0M2ZiYjBiMzA0ZmFiZWE5YTZkZGY0"
                "MzkzZTc0ODI4ZiIsIm5vdGljZV9pZCI6Im1hcmtldGluZy1lbWFpbC1ub3RpY2UtMjAyNi0w"
                "MyIsInVzZXJfYWdlbnQiOiJzZWFsZWQ6djE6WHhzTnBvR29taktTMW9iSkl0WGtsZ3ZKZjlY"
                "cHZVVHJTTlNTZVlVMzM3MzBLaEFyQXdiV3dvS2YzU2tOOFV0Y0tPbkFqOTNDUXA3ZVNEWGJy"
                "WE5KbWdhYWJFOWVWMmNpZkd6YzlzMXhwNFJTNXZrN0xobURwamw1Tjk1T3ZodkJHaUpqbFZD"
                "OTJHc2psYWIzODBQNnlXZFZQd2RoUitXcVFBeC9BOGRmRmJubnR0OVJrczc2b3JzRjE2UVB0"
                "SEdESkhDZXJBWlBOdz09In0sInBvbGljeV92ZXJzaW9uIjoiMjAyNi0wMyIsInB1cnBvc2Vz"
                "IjpbIm1hcmtldGluZ19lbWFpbCJdLCJzdWJqZWN0IjoiNzA1YTk4ZDYtYjhmMS00Y2U4LTk2"
                "OTMtNGU0YmRmOGNjZGJmIiwic3ViamVjdF9yZWYiOiJzZWFsZWQ6djE6OHQyRXVzcEg3NjN5"
                "bGRXaFp1T3FvWmpsRUU5MUErQXg3TmQ5dkNQaVM3bFdtdGtUNnR3TmNXVU91MEV5R09JMWx2"
                "QT0ifSwiZXZlbnRfaWQiOiJldnQtMDAwOSIsIm9jY3VycmVkX2F0IjoiMjAyNi0wMy0wNVQx"
                "MjoxNDowMy4wMDAwMDBaIiwicmVjb3JkZWRfYXQiOiIyMDI2LTExLTI5VDA4OjI0OjI5LjEz"
                "MzI5MFoiLCJzdHJlYW0iOiI3MDVhOThkNi1iOGYxLTRjZTgtOTY5My00ZTRiZGY4Y2NkYmYi"
                "LCJzdHJlYW1fdmVyc2lvbiI6MywidHlwZSI6ImNvbnNlbnQuZ2l2ZW4iLCJ0eXBlX3ZlcnNp"
                "b24iOjF9"
            ),
            "signature": (
                "Pg/zN7+8Vqi9CWnSU5tSgKRk1i7Zx1iucTFSsb1eckRL3s9xmYtsQAVvro22po3S7/1rDHW+"
                "FNJNJt01tV+1Cg=="
            ),
            "key_id": "271bf19ec9c51ed3",
        }
    ],
    "next": None,
}

NOTICES = {
    "overdue_after_hours": 168.0,
    "notices": [
        {
            "notice_id": "5b0f3c8e-2d6a-4c51-9f0e-7a1d2c3b4e5f",
            "recipient_id": "rcp-northwind-cloud",
            "reason": "consent_withdrawn",
            "cause_seq": 20,
            "purposes": ["usage_analytics"],
            "disclosure_seqs": [21],
            "due_seq": 45,
            "due_at": "2026-04-01T22:45:20.000000Z",
            "attempts": 1,
            "next_attempt_at": None,
            "last_error": None,
            "delivered_at": "2026-04-01T22:45:21.000000Z",
            "notified_seq": 46,
            "acknowledged_seq": None,
            "acknowledged_at": None,
            "overdue": False,
            "transport": "webhook",
            "acknowledged_via": None,
        }
    ],
}
ACKNOWLEDGEMENT = {
    "notice_id": "5b0f3c8e-2d6a-4c51-9f0e-7a1d2c3b4e5f",
    "acknowledged_seq": 47,
    "acknowledged_at": "2026-04-02T08:00:00.000000Z",
    "receipt": {
        "seq": 47,
        "event_hash": "d89040974ba3322e99db0529bb1d3bff6071ed94c80e33283132cfaec7a44fc9",
        "signature": "68LBRHVYKa5fl/yDfKqM0/ajiK6gqe9wXI6eZggc/1nLzCdErfvHh/0SZFx/kQc2X/"
        "UK01xy7035RLz4zvaSDw==",
        "key_id": "6775c32dd645dad0",
    },
}

READINESS = {
    "status": "degraded",
    "head": 44,
    "failed": [
        {
            "read_model": "disclosures",
            "seq": 41,
            "event_type": "disclosure.recorded",
            "error": "OverflowError",
            "message": "date value out of range",
            "since": "2026-07-01T10:00:00.000000Z",
            "last_attempt": "2026-07-01T10:05:00.000000Z",
            "attempts": 9,
            "position": 40,
        }
    ],
}

EXPORT_JOB = {
    "id": "0b7e6f0c-1c1e-4f7e-9a55-2f1b8f0d4a11",
    "state": "done",
    "scope": {"kind": "incident", "incident_id": "inc-2026-003"},
    "purpose": "DPA inquiry 2026-17",
    "answers_request": None,
    "progress": {"phase": "verify", "done": 44, "total": 44},
    "attempts": 1,
    "created_at": "2026-12-02T19:40:00.120551Z",
    "started_at": "2026-12-02T19:40:00.301145Z",
    "finished_at": "2026-12-02T19:40:02.120551Z",
    "expires_at": "2026-12-03T19:40:02.120551Z",
    "manifest_sha256": "5c1f3e0b7c5d9a4e2f8b6a1d3c7e9f0a2b4c6d8e0f1a3b5c7d9e1f2a4b6c8d0e",
    "bytes": 1843302,
    "checkpoint_size": 44,
    "entries": 12,
    "failure": None,
    "links": {
        "self": "/v1/exports/0b7e6f0c-1c1e-4f7e-9a55-2f1b8f0d4a11",
        "bundle": "/v1/exports/0b7e6f0c-1c1e-4f7e-9a55-2f1b8f0d4a11/bundle",
    },
}

INCIDENT_FACTS = [
    {
        "type": "incident.opened",
        "event_id": "evt-0020",
        "occurred_at": "2026-06-10T03:20:00+09:00",
        "incident_id": "inc-2026-003",
        "detected_at": "2026-06-10T02:40:00+09:00",
        "summary": "An object-storage bucket holding support-ticket attachments at our hosting "
        "processor was made publicly listable by a faulty deployment script.",
        "recipient_id": "rcp-northwind-cloud",
        "data_categories": ["support.tickets", "contact.email"],
    },
    {
        "type": "incident.contained",
        "event_id": "evt-0022",
        "occurred_at": "2026-06-10T06:10:00+09:00",
        "incident_id": "inc-2026-003",
        "measures": "Public access to the bucket was revoked, access keys rotated and the "
        "access log secured; the deployment script now fails closed.",
    },
]
"""Two incident facts of examples/events.jsonl, as ``POST /v1/incidents`` takes them."""


def text_example(value: str, description: str = "OK") -> dict[int | str, dict[str, Any]]:
    return {200: {"description": description, "content": {"text/plain": {"example": value}}}}


def example(value: Any, description: str = "OK") -> dict[int | str, dict[str, Any]]:
    return {200: {"description": description, "content": {"application/json": {"example": value}}}}
