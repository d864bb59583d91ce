"""The signed entry: the exact bytes the ledger stores, signs and (later) logs.

Format 1 is a JSON object, UTF-8, keys sorted, no insignificant whitespace::

    {"body":{...},"format":1,"key_id":"<16 hex>","seq":<n>,"stream":"<uuid>","stream_version":<v>}

``seq`` is the global position (1-based, gapless), ``stream``/``stream_version`` the event's
place in its aggregate. ``body`` holds ``type``, ``type_version``, ``event_id``, ``occurred_at``,
``recorded_at``, ``backdated`` and ``data``. The signature is Ed25519 over the entry bytes as
stored; the key id is the first 8 bytes of SHA-256 of the raw public key, in hex.

Standard library and PyNaCl only: a regulator runs this without the server.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey

ENTRY_FORMAT = 1


class EntryError(ValueError):
    """The entry bytes are not a well-formed format-1 entry."""


@dataclass(frozen=True)
class Entry:
    seq: int
    stream: str
    stream_version: int
    key_id: str
    body: dict[str, Any]


def key_id_for(public_key: bytes) -> str:
    """The key id that names ``public_key`` (32 raw Ed25519 bytes) in entries and receipts."""
    if len(public_key) != 32:
        raise ValueError(f"an Ed25519 public key is 32 bytes, not {len(public_key)}")
    return hashlib.sha256(public_key).digest()[:8].hex()


def entry_hash(entry: bytes) -> bytes:
    """SHA-256 of the entry bytes: the event hash that receipts carry."""
    return hashlib.sha256(entry).digest()


def parse_entry(entry: bytes) -> Entry:
    """Decode entry bytes; raise :class:`EntryError` naming what is wrong."""
    try:
        obj = json.loads(entry)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise EntryError(f"entry is not UTF-8 JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise EntryError("entry is not a JSON object")
    expected = {"body", "format", "key_id", "seq", "stream", "stream_version"}
    if set(obj) != expected:
        raise EntryError(f"entry keys are {sorted(obj)}, expected {sorted(expected)}")
    if obj["format"] != ENTRY_FORMAT:
        raise EntryError(f"entry format {obj['format']!r} is not {ENTRY_FORMAT}")
    seq, version = obj["seq"], obj["stream_version"]
    if not (isinstance(seq, int) and seq >= 1):
        raise EntryError(f"seq {seq!r} is not a positive integer")
    if not (isinstance(version, int) and version >= 1):
        raise EntryError(f"stream_version {version!r} is not a positive integer")
    if not isinstance(obj["body"], dict):
        raise EntryError("body is not a JSON object")
    if not isinstance(obj["stream"], str) or not isinstance(obj["key_id"], str):
        raise EntryError("stream and key_id must be strings")
    return Entry(
        seq=seq,
        stream=obj["stream"],
        stream_version=version,
        key_id=obj["key_id"],
        body=obj["body"],
    )


def signature_is_valid(entry: bytes, signature: bytes, public_key: bytes) -> bool:
    """True when ``signature`` is the Ed25519 signature of ``entry`` by ``public_key``."""
    try:
        VerifyKey(public_key).verify(entry, signature)
    except (BadSignatureError, ValueError, TypeError):
        return False
    return True
