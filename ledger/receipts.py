"""What the ledger hands back: receipts for appends, decoded events for reading."""

from __future__ import annotations

import base64
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from ledger.errors import LedgerError
from ledger.recorder import LogRecord, RecordedClaim
from ledger.sealing import ERASED as ERASED_TEXT
from ledger.verifier.entry import entry_hash
from ledger.verifier.mentions import WITHHELD
from ledger.verifier.scopes import SUBJECT_LISTS

LEGACY_CLAIM_REACH = 2
"""How far before a claim's event the fact it names may be: claims stored before 2026-12 for a
``request.fulfilled`` that closed an erasure name the ``subject.erased`` that follows the fact
(with, between them, the subject's registration when the ledger first met it there)."""


@dataclass(frozen=True)
class Receipt:
    """Proof of a durable append: returned only after the commit."""

    seq: int
    event_id: str
    event_hash: str
    """SHA-256 of the signed entry bytes (the Merkle leaf, which commits to the body), hex."""
    signature: str
    """Ed25519 signature of the entry bytes, base64."""
    key_id: str
    recorded_at: str
    duplicate: bool = False
    """True when this event id had been recorded before with the same content."""

    @property
    def leaf_index(self) -> int:
        """The event's leaf in the log's Merkle tree (sequenced in the same commit)."""
        return self.seq - 1

    @classmethod
    def from_record(cls, record: LogRecord, event_id: str, *, duplicate: bool) -> Receipt:
        body = orjson.loads(record.body)
        return cls(
            seq=record.seq,
            event_id=event_id,
            event_hash=entry_hash(record.entry).hex(),
            signature=base64.b64encode(record.signature).decode(),
            key_id=record.key_id,
            recorded_at=body["recorded_at"],
            duplicate=duplicate,
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "leaf_index": self.leaf_index,
            "event_id": self.event_id,
            "event_hash": self.event_hash,
            "signature": self.signature,
            "key_id": self.key_id,
            "recorded_at": self.recorded_at,
            "duplicate": self.duplicate,
        }


def fact_position(events: Sequence[Any], start: int, event_id: str) -> int:
    """Where, among ``events[start:]`` (what one fact made the ledger record), the fact's own
    event is: the one that carries its event id. The receipt and the claim name that event,
    never one the ledger records because of it (the ``subject.erased`` after the
    ``request.fulfilled`` that closes an erasure, a subject's registration)."""
    for position in range(start, len(events)):
        if getattr(events[position], "event_id", None) == event_id:
            return position
    raise LedgerError(f"no recorded event carries event id {event_id!r}")


def claimed_record(
    claim: RecordedClaim, get_record: Callable[[int], LogRecord | None]
) -> LogRecord | None:
    """The stored event a claim names: the one that carries its event id.

    A claim stored before that rule (see :data:`LEGACY_CLAIM_REACH`) names a later event of the
    same commit; the fact is then found a step or two before it, so a retry still gets the
    fact's receipt.
    """
    record = get_record(claim.seq)
    for seq in range(claim.seq - 1, max(claim.seq - 1 - LEGACY_CLAIM_REACH, 0), -1):
        if record is None or orjson.loads(record.body).get("event_id") == claim.event_id:
            break
        earlier = get_record(seq)
        if earlier is not None and orjson.loads(earlier.body).get("event_id") == claim.event_id:
            return earlier
    return record


@dataclass(frozen=True)
class DecodedEvent:
    """A stored event for people to read: personal data opened, or ``[erased]``."""

    seq: int
    type: str
    type_version: int
    stream: str
    stream_version: int
    event_id: str | None
    occurred_at: str
    recorded_at: str
    backdated: bool
    data: dict[str, Any]
    event_hash: str
    signature: str
    key_id: str
    emitter: dict[str, Any] | None = None
    """The emitting service's signature of the request that carried the event, if it signs."""

    def opened_subjects(self) -> list[str]:
        """The pseudonyms whose personal data this event shows opened: the subject whose
        reference it shows, and each item of a list of subjects whose ``ref`` it shows (not
        ``[erased]``, not withheld). Showing them is a read to record (invariant 11)."""
        data = self.data
        opened: list[str] = []
        if isinstance(data.get("subject"), str) and _shown(data.get("subject_ref")):
            opened.append(data["subject"])
        for name in SUBJECT_LISTS:
            for item in data.get(name) or ():
                if (
                    isinstance(item, Mapping)
                    and isinstance(item.get("subject"), str)
                    and _shown(item.get("ref"))
                ):
                    opened.append(item["subject"])
        return list(dict.fromkeys(opened))

    def as_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "type": self.type,
            "type_version": self.type_version,
            "stream": self.stream,
            "stream_version": self.stream_version,
            "event_id": self.event_id,
            "occurred_at": self.occurred_at,
            "recorded_at": self.recorded_at,
            "backdated": self.backdated,
            "data": self.data,
            "event_hash": self.event_hash,
            "signature": self.signature,
            "key_id": self.key_id,
            "emitter": self.emitter,
        }


def _shown(value: object) -> bool:
    """A personal-data value shown opened: text that is neither ``[erased]`` nor withheld."""
    return isinstance(value, str) and value not in (ERASED_TEXT, WITHHELD)
