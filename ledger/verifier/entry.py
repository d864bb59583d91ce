"""The signed entry (the Merkle leaf) and the event body it commits to.

An event is stored as two byte strings:

- the **body**: canonical JSON (UTF-8, keys sorted, no insignificant whitespace) holding
  ``type``, ``type_version``, ``stream``, ``stream_version``, ``event_id``, ``occurred_at``,
  ``recorded_at``, ``backdated``, ``data`` and, when the sending service signed its request,
  ``emitter``;
- the **entry** (format 2), binary, which is what the ledger signs and what the Merkle tree's
  leaf holds::

      format      1 byte     0x02
      seq         8 bytes    unsigned, big-endian; the event's place in the log, from 1
      key id      8 bytes    first 8 bytes of SHA-256 of the signer's Ed25519 public key
      body hash  32 bytes    SHA-256 of the body bytes
      tag count   2 bytes    unsigned, big-endian
      tags       16 bytes each, in ascending byte order, no repeats (see :mod:`.scopes`)

The signature is Ed25519 over the entry bytes; through the body hash it covers the body.
An entry carries no personal data and nothing that links two entries, so a bundle can hold
the entries of other people's events (to prove it is complete) without revealing them.

Standard library and PyNaCl only: a regulator runs this without the server.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import IO, Any

from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey

ENTRY_FORMAT = 2
TAG_SIZE = 16
MAX_TAGS = 0xFFFF
_HEADER = struct.Struct(">BQ8s32sH")
HEADER_SIZE = _HEADER.size  # 51
BODY_KEYS = frozenset(
    {
        "backdated",
        "data",
        "event_id",
        "occurred_at",
        "recorded_at",
        "stream",
        "stream_version",
        "type",
        "type_version",
    }
)


_decode_json = json.JSONDecoder().decode


class EntryError(ValueError):
    """The entry or body bytes are not well formed."""


@dataclass(frozen=True)
class Entry:
    seq: int
    key_id: str
    """Hex, 16 characters."""
    body_sha256: bytes
    tags: tuple[bytes, ...]


def key_id_for(public_key: bytes) -> str:
    """The key id that names ``public_key`` (32 raw Ed25519 bytes) in entries and receipts."""
    if len(public_key) != 32:
        raise ValueError(f"an Ed25519 public key is 32 bytes, not {len(public_key)}")
    return hashlib.sha256(public_key).digest()[:8].hex()


def entry_hash(entry: bytes) -> bytes:
    """SHA-256 of the entry bytes: the event hash that receipts carry."""
    return hashlib.sha256(entry).digest()


def encode_entry(seq: int, key_id: str, body: bytes, tags: Sequence[bytes]) -> bytes:
    """The entry for ``body`` at ``seq``; ``tags`` are sorted and deduplicated here."""
    ordered = sorted(set(tags))
    if any(len(tag) != TAG_SIZE for tag in ordered):
        raise EntryError(f"tags are {TAG_SIZE} bytes each")
    if len(ordered) > MAX_TAGS:
        raise EntryError(f"an entry holds at most {MAX_TAGS} tags, not {len(ordered)}")
    header = _HEADER.pack(
        ENTRY_FORMAT, seq, bytes.fromhex(key_id), hashlib.sha256(body).digest(), len(ordered)
    )
    return header + b"".join(ordered)


def parse_entry(entry: bytes) -> Entry:
    """Decode entry bytes; raise :class:`EntryError` naming what is wrong."""
    if len(entry) < HEADER_SIZE:
        raise EntryError(f"an entry is at least {HEADER_SIZE} bytes, this one {len(entry)}")
    form, seq, key_id, body_sha256, count = _HEADER.unpack_from(entry)
    if form != ENTRY_FORMAT:
        raise EntryError(f"entry format {form} is not {ENTRY_FORMAT}")
    if seq < 1:
        raise EntryError("seq 0 is not a position in the log (it starts at 1)")
    if len(entry) != HEADER_SIZE + count * TAG_SIZE:
        raise EntryError(
            f"an entry with {count} tags is {HEADER_SIZE + count * TAG_SIZE} bytes, "
            f"this one {len(entry)}"
        )
    tags = tuple(
        entry[start : start + TAG_SIZE] for start in range(HEADER_SIZE, len(entry), TAG_SIZE)
    )
    if any(a >= b for a, b in itertools.pairwise(tags)):
        raise EntryError("tags are not in ascending order without repeats")
    return Entry(seq=seq, key_id=key_id.hex(), body_sha256=body_sha256, tags=tags)


def read_entries(stream: IO[bytes]) -> Iterator[bytes]:
    """Entries written one after another (as in a bundle's ``leaves.bin``), one by one."""
    while True:
        header = stream.read(HEADER_SIZE)
        if not header:
            return
        if len(header) < HEADER_SIZE:
            raise EntryError("the entries end inside an entry's header")
        count = int.from_bytes(header[-2:], "big")
        tags = stream.read(count * TAG_SIZE)
        if len(tags) != count * TAG_SIZE:
            raise EntryError("the entries end inside an entry's tags")
        yield header + tags


def parse_body(body: bytes) -> dict[str, Any]:
    """Decode body bytes and check their shape; raise :class:`EntryError` if they are not."""
    try:
        obj = _decode_json(body.decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise EntryError(f"body is not UTF-8 JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise EntryError("body is not a JSON object")
    keys = set(obj)
    if not keys >= BODY_KEYS or keys - BODY_KEYS - {"emitter"}:
        raise EntryError(f"body keys are {sorted(keys)}, expected {sorted(BODY_KEYS)}")
    version = obj["stream_version"]
    if not (isinstance(version, int) and version >= 1):
        raise EntryError(f"stream_version {version!r} is not a positive integer")
    for name in ("type", "stream", "occurred_at", "recorded_at"):
        if not isinstance(obj[name], str):
            raise EntryError(f"body's {name} is not a string")
    if not isinstance(obj["data"], dict):
        raise EntryError("body's data is not a JSON object")
    return obj


def signature_is_valid(entry: bytes, signature: bytes, public_key: bytes) -> bool:
    """True when ``signature`` is the Ed25519 signature of ``entry`` by ``public_key``."""
    try:
        VerifyKey(public_key).verify(entry, signature)
    except (BadSignatureError, ValueError, TypeError):
        return False
    return True
