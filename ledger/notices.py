"""Notices to recipients (GDPR 19): what one holds, its id, and the signed webhook that tells it.

When a subject withdraws consent, is erased or has data rectified, every recipient that
received their data (for the purposes affected) must be told. The ledger records that it owes
the notice (``recipient.notice_due``), that it delivered it (``recipient.notified``) and that
the recipient acknowledged it (``recipient.acknowledged``): three events of one stream per
notice, appended by :class:`ledger.application.LedgerApplication` (``record_notice_due``,
``record_notified``, ``acknowledge_notice``). Who is owed a notice is derived from the log by a
follower (:mod:`projections.notices`), which also keeps the outbox and delivers.

A notice's id is derived from what caused it and whom it tells, so a follower that derives it
twice (after a crash) names the same stream, and the ledger refuses the second one.

Webhooks follow the Standard Webhooks specification: the headers ``webhook-id`` (the notice
id, the same on every attempt, so that a recipient dedupes), ``webhook-timestamp`` (Unix
seconds) and ``webhook-signature``: ``v1a,`` and the base64 Ed25519 signature, by the ledger's
signing key, of ``{webhook-id}.{webhook-timestamp}.{body}``. A recipient checks it with the
ledger's public key (``examples/recipient_webhook.py``).
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import orjson
from nacl.public import PublicKey, SealedBox

from ledger.domain import stream_id

NOTICE_DUE = "recipient.notice_due"
NOTIFIED = "recipient.notified"
ACKNOWLEDGED = "recipient.acknowledged"
NOTICE_TYPES = (NOTICE_DUE, NOTIFIED, ACKNOWLEDGED)
TOLD_SUBJECTS = "told_subjects"
"""The data field naming the notice's subject: one sealed mention
(:mod:`ledger.verifier.mentions`), so the subject's bundle shows it and nobody else learns who."""
WEBHOOK_EVENT = "recipient.notice"
"""The ``type`` of a webhook body."""


class NoticeReason(StrEnum):
    """Why a recipient is told (GDPR 7(3), 16, 17, 19)."""

    CONSENT_WITHDRAWN = "consent_withdrawn"
    """Told for the purposes withdrawn, only if it received data for one of them."""
    ERASURE = "erasure"
    """Every recipient of the subject's data is told."""
    RECTIFICATION = "rectification"
    """A ``rectification`` request was fulfilled: every recipient is told."""


class DeliveryStatus(StrEnum):
    DELIVERED = "delivered"


def notice_id(cause_seq: int, recipient_id: str) -> str:
    """The id of the notice that the event at ``cause_seq`` owes ``recipient_id`` (a UUID,
    the notice's stream): the same however often it is derived."""
    return str(stream_id("notice", f"{cause_seq}:{recipient_id}"))


@dataclass(frozen=True)
class NoticeDue:
    """One notice owed: whom it tells, about whom (a pseudonym, sealed as a mention when
    recorded), why, and the events that caused it and that carried the data there."""

    cause_seq: int
    recipient_id: str
    pseudonym: str
    reason: NoticeReason
    purposes: tuple[str, ...] = ()
    """For a withdrawal: the purposes withdrawn for which the recipient received data."""
    disclosure_seqs: tuple[int, ...] = ()

    @property
    def notice_id(self) -> str:
        return notice_id(self.cause_seq, self.recipient_id)

    def data(self) -> dict[str, Any]:
        """The event's data before the subject is sealed (:data:`TOLD_SUBJECTS` added then)."""
        data: dict[str, Any] = {
            "notice_id": self.notice_id,
            "recipient_id": self.recipient_id,
            "reason": str(self.reason),
            "cause_seqs": [self.cause_seq],
            "disclosure_seqs": list(self.disclosure_seqs),
        }
        if self.purposes:
            data["purposes"] = list(self.purposes)
        return data


@dataclass(frozen=True)
class Delivery:
    """How a notice reached its recipient: what ``recipient.notified`` records."""

    transport: str
    status: DeliveryStatus
    attempts: int
    delivered_at: str
    response_status: int | None = None

    def data(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "transport": self.transport,
            "status": str(self.status),
            "attempts": self.attempts,
            "delivered_at": self.delivered_at,
        }
        if self.response_status is not None:
            data["response_status"] = self.response_status
        return data


# -- the webhook --------------------------------------------------------------------------------


def webhook_body(
    *,
    notice: str,
    recipient_id: str,
    reason: str,
    subject_ref: str | None,
    subject_ref_sealed: str | None,
    purposes: Sequence[str],
    cause_seqs: Sequence[int],
    disclosure_seqs: Sequence[int],
    due_seq: int,
    timestamp: int,
) -> bytes:
    """The JSON a recipient receives: the subject as the recipient knows them (the reference
    its disclosures carried; ``null`` when the ledger no longer holds it, after an erasure),
    the same reference sealed to the recipient's public key when it gave one (captured when
    the disclosure was read, so an erasure's notice has it too), and where to acknowledge."""
    return orjson.dumps(
        {
            "type": WEBHOOK_EVENT,
            "timestamp": timestamp,
            "data": {
                "notice_id": notice,
                "recipient_id": recipient_id,
                "reason": reason,
                "subject_ref": subject_ref,
                "subject_ref_sealed": subject_ref_sealed,
                "purposes": list(purposes),
                "cause_seqs": list(cause_seqs),
                "disclosure_seqs": list(disclosure_seqs),
                "due_seq": due_seq,
                "ack_path": f"/v1/notices/{notice}/ack",
            },
        },
        option=orjson.OPT_SORT_KEYS,
    )


def signed_content(webhook_id: str, timestamp: int, body: bytes) -> bytes:
    """What a Standard Webhooks signature covers: ``{id}.{timestamp}.{body}``."""
    return f"{webhook_id}.{timestamp}.".encode() + body


def webhook_headers(
    webhook_id: str, timestamp: int, body: bytes, sign: Callable[[bytes], bytes]
) -> dict[str, str]:
    """The Standard Webhooks headers, signed ``v1a`` (Ed25519) by ``sign``."""
    signature = base64.b64encode(sign(signed_content(webhook_id, timestamp, body))).decode()
    return {
        "content-type": "application/json",
        "webhook-id": webhook_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": f"v1a,{signature}",
    }


def signatures_of(header: str) -> list[bytes]:
    """The ``v1a`` signatures a ``webhook-signature`` header lists (space-separated, each
    ``version,base64``); others and malformed ones are left out."""
    found: list[bytes] = []
    for part in header.split():
        version, _, value = part.partition(",")
        if version != "v1a":
            continue
        try:
            found.append(base64.b64decode(value, validate=True))
        except ValueError:
            continue
    return found


SCHEMES = ("http://", "https://", "amqp://", "amqps://")
"""The endpoints a notice can be delivered to: a webhook, or a RabbitMQ queue."""


@dataclass(frozen=True)
class Endpoint:
    """Where a recipient gets its notices, and the public key (X25519, libsodium's
    ``crypto_box``) it receives references sealed to, if it gave one."""

    url: str
    box_key: bytes | None = None


def as_endpoint(value: str | Endpoint) -> Endpoint:
    return value if isinstance(value, Endpoint) else Endpoint(value)


def endpoints_from(raw: Mapping[str, Any]) -> dict[str, Endpoint]:
    """Recipient id -> endpoint, from the parsed ``notice-endpoints.json``: a URL, or
    ``{"url": ..., "box_public_key": <base64 of 32 bytes>}``. Entries that are not a URL of
    one of :data:`SCHEMES`, or whose key is not 32 bytes of base64, are left out."""
    found: dict[str, Endpoint] = {}
    for recipient, value in raw.items():
        url, key = (value, None) if isinstance(value, str) else (None, None)
        if isinstance(value, Mapping):
            url, key = value.get("url"), value.get("box_public_key")
        if not isinstance(url, str) or not url.startswith(SCHEMES):
            continue
        if key is None:
            found[str(recipient)] = Endpoint(url)
            continue
        try:
            box_key = base64.b64decode(str(key), validate=True)
        except ValueError:
            continue
        if len(box_key) == PublicKey.SIZE:
            found[str(recipient)] = Endpoint(url, box_key)
    return found


def seal_reference(box_key: bytes, reference: str) -> str:
    """``reference`` sealed to the recipient's public key (an anonymous, randomised
    ``crypto_box_seal``), base64: only the recipient's private key opens it, not the ledger."""
    return base64.b64encode(SealedBox(PublicKey(box_key)).encrypt(reference.encode())).decode()


__all__ = [
    "ACKNOWLEDGED",
    "NOTICE_DUE",
    "NOTICE_TYPES",
    "NOTIFIED",
    "SCHEMES",
    "TOLD_SUBJECTS",
    "Delivery",
    "DeliveryStatus",
    "Endpoint",
    "NoticeDue",
    "NoticeReason",
    "as_endpoint",
    "endpoints_from",
    "notice_id",
    "seal_reference",
    "signatures_of",
    "signed_content",
    "webhook_body",
    "webhook_headers",
]
