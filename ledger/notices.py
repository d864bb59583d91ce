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

A recipient may acknowledge in its answer to the webhook: a 2xx whose body is
:func:`reply_body` (the notice id, the recipient id, ``"type": "recipient.acknowledged"``),
signed the same way by the recipient's own Ed25519 key, whose public half the operator gave in
``notice-endpoints.json`` (``ack_public_key``). :func:`check_reply` decides whether an answer
is such an acknowledgement; anything else (no key configured, no or a bad signature, another
notice's id) is a delivery without acknowledgement.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import orjson
from nacl.exceptions import BadSignatureError
from nacl.public import PublicKey, SealedBox
from nacl.signing import VerifyKey

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
REPLY_EVENT = "recipient.acknowledged"
"""The ``type`` of a recipient's signed reply that acknowledges the notice."""
REPLY_FIELDS = frozenset({"type", "notice_id", "recipient_id"})
"""A signed reply's body holds these and nothing else (the log keeps it, so it must hold no
personal data)."""
REPLY_MAX_BYTES = 1024
ED25519_KEY_BYTES = 32
REPLY_TOLERANCE = 300
"""Seconds a reply's ``webhook-timestamp`` may be away from the dispatcher's clock."""


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


class AckVia(StrEnum):
    """How a recipient acknowledged a notice (``via`` of ``recipient.acknowledged``)."""

    API = "api"
    """``POST /v1/notices/{id}/ack`` with the recipient's own token."""
    WEBHOOK_REPLY = "webhook_reply"
    """The 2xx answer to the webhook, signed by the recipient's key (:func:`check_reply`)."""


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


# -- the recipient's signed reply ---------------------------------------------------------------


def reply_body(notice: str, recipient_id: str) -> bytes:
    """The body of a reply that acknowledges ``notice``: what the recipient signs."""
    return orjson.dumps(
        {"type": REPLY_EVENT, "notice_id": notice, "recipient_id": recipient_id},
        option=orjson.OPT_SORT_KEYS,
    )


@dataclass(frozen=True)
class Reply:
    """A recipient's acknowledgement in its answer to the webhook, checked: what
    ``recipient.acknowledged`` keeps of it, so that anyone with the recipient's public key can
    check it again (the body is the signed bytes, as received; it names only the notice)."""

    timestamp: int
    signature: str
    """The ``webhook-signature`` part that checked: ``v1a,`` and base64."""
    body: str

    def data(self) -> dict[str, Any]:
        return {
            "via": str(AckVia.WEBHOOK_REPLY),
            "reply_timestamp": self.timestamp,
            "reply_signature": self.signature,
            "reply_body": self.body,
        }


def check_reply(
    *,
    notice: str,
    recipient_id: str,
    headers: Mapping[str, str],
    body: bytes,
    ack_key: bytes,
    now: float,
) -> Reply | None:
    """The acknowledgement a webhook's answer carries, or None when it carries none: its
    ``webhook-id`` is the notice's id, its ``webhook-timestamp`` within
    :data:`REPLY_TOLERANCE` of ``now``, a ``v1a`` signature of
    ``{webhook-id}.{webhook-timestamp}.{body}`` checks with the recipient's key ``ack_key``,
    and the body is a JSON object of :data:`REPLY_FIELDS` naming this notice and recipient.
    Never raises on what the recipient sent."""
    lowered = {k.lower(): v for k, v in headers.items()}
    stamp = lowered.get("webhook-timestamp", "")
    if lowered.get("webhook-id") != notice or not (stamp.isascii() and stamp.isdigit()):
        return None
    if len(stamp) > 12 or not abs(now - int(stamp)) <= REPLY_TOLERANCE:  # NaN: stale
        return None
    if len(body) > REPLY_MAX_BYTES or len(ack_key) != ED25519_KEY_BYTES:
        return None
    content = signed_content(notice, int(stamp), body)
    verify = VerifyKey(ack_key)
    checked: str | None = None
    for part in lowered.get("webhook-signature", "").split()[:8]:
        version, _, encoded = part.partition(",")
        if version != "v1a":
            continue
        try:
            verify.verify(content, base64.b64decode(encoded, validate=True))
        except (ValueError, BadSignatureError):
            continue
        checked = part
        break
    if checked is None:
        return None
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(parsed, dict) or set(parsed) != REPLY_FIELDS:
        return None
    expected = {"type": REPLY_EVENT, "notice_id": notice, "recipient_id": recipient_id}
    if parsed != expected:
        return None
    return Reply(int(stamp), checked, body.decode())


SCHEMES = ("http://", "https://", "amqp://", "amqps://")
"""The endpoints a notice can be delivered to: a webhook, or a RabbitMQ queue."""


@dataclass(frozen=True)
class Endpoint:
    """Where a recipient gets its notices, the public key (X25519, libsodium's
    ``crypto_box``) it receives references sealed to, if it gave one, and its Ed25519 public
    key, if it acknowledges in its answers (:func:`check_reply`)."""

    url: str
    box_key: bytes | None = None
    ack_key: bytes | None = None


def as_endpoint(value: str | Endpoint) -> Endpoint:
    return value if isinstance(value, Endpoint) else Endpoint(value)


def endpoints_from(raw: Mapping[str, Any]) -> dict[str, Endpoint]:
    """Recipient id -> endpoint, from the parsed ``notice-endpoints.json``: a URL, or
    ``{"url": ..., "box_public_key": <base64 of 32 bytes>, "ack_public_key": <base64 of 32
    bytes>}`` (both keys optional). Entries that are not a URL of one of :data:`SCHEMES`, or
    whose keys are not 32 bytes of base64, are left out."""
    found: dict[str, Endpoint] = {}
    for recipient, value in raw.items():
        url, box, ack = (value, None, None) if isinstance(value, str) else (None, None, None)
        if isinstance(value, Mapping):
            url, box, ack = (
                value.get("url"),
                value.get("box_public_key"),
                value.get("ack_public_key"),
            )
        if not isinstance(url, str) or not url.startswith(SCHEMES):
            continue
        box_key, ack_key = _key32(box), _key32(ack)
        if (box is not None and box_key is None) or (ack is not None and ack_key is None):
            continue
        found[str(recipient)] = Endpoint(url, box_key, ack_key)
    return found


def _key32(value: object) -> bytes | None:
    """32 bytes from base64 (both key kinds are 32 bytes), else None."""
    if not isinstance(value, str):
        return None
    try:
        key = base64.b64decode(value, validate=True)
    except ValueError:
        return None
    return key if len(key) == PublicKey.SIZE else None


def seal_reference(box_key: bytes, reference: str) -> str:
    """``reference`` sealed to the recipient's public key (an anonymous, randomised
    ``crypto_box_seal``), base64: only the recipient's private key opens it, not the ledger."""
    return base64.b64encode(SealedBox(PublicKey(box_key)).encrypt(reference.encode())).decode()


__all__ = [
    "ACKNOWLEDGED",
    "NOTICE_DUE",
    "NOTICE_TYPES",
    "NOTIFIED",
    "REPLY_EVENT",
    "SCHEMES",
    "TOLD_SUBJECTS",
    "AckVia",
    "Delivery",
    "DeliveryStatus",
    "Endpoint",
    "NoticeDue",
    "NoticeReason",
    "Reply",
    "as_endpoint",
    "check_reply",
    "endpoints_from",
    "notice_id",
    "reply_body",
    "seal_reference",
    "signatures_of",
    "signed_content",
    "webhook_body",
    "webhook_headers",
]
