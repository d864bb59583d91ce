"""What the ledger hands back: receipts for appends, decoded events for reading."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

import orjson

from ledger.recorder import LogRecord
from ledger.verifier.entry import entry_hash


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
