"""A bundle's ``events.tsv`` and the checks run on it and on ``leaves.bin``, chunk by chunk.

``events.tsv`` (bundle format 2) holds one line per event of the bundle's scope, in log order,
four fields separated by a tab (0x09) and ended by a line feed (0x0A)::

    index      decimal, no sign, no leading zero: the event's leaf index (seq - 1)
    signature  base64 (RFC 4648, padded) of the 64-byte Ed25519 signature of its entry
    opened     a JSON array of strings: what the report shows in place of each sealed value
               of the body's data (``sealed:v1:...``), in the order they appear in the body
    body       the body bytes exactly as signed (canonical JSON: one line, no tab or line
               feed outside strings, and JSON escapes both inside them)

The event's entry is not repeated: it is leaf ``index`` of ``leaves.bin``, whose leaves the
verifier has already proven to make the checkpoint's root. The body is the JSON a person
reads (``cut -f4 events.tsv | jq .``); ``opened`` shows the subject's own personal data in a
subject's bundle, and ``[another subject]`` (or ``[erased]``) elsewhere.

The checks (:func:`check_leaf_chunk`, :class:`EventChecker`) are plain functions of their
input, so that the verifier can run them in worker processes (on chunks of leaves and on
ranges of ``events.tsv``, :mod:`ledger.verifier.event_ranges`) and still name the first failure
in log order. Standard library and PyNaCl only.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey

from ledger.verifier.entry import HEADER_SIZE, TAG_SIZE, EntryError, parse_body, parse_entry
from ledger.verifier.mentions import (
    is_pseudonym,
    is_withheld,
    mention_paths,
    resolve_from_shown,
    withheld,
    without_withheld,
)
from ledger.verifier.merkle import CompactRange, leaf_hash
from ledger.verifier.scopes import (
    Closure,
    scopes_of,
    subject_scope,
    tag,
    tag_key,
    tags_for,
)

EVENTS = "events.tsv"
SEALED_PREFIX = "sealed:v1:"
_SEALED_BYTES = SEALED_PREFIX.encode()
_TAB = b"\t"
_decode_json = json.JSONDecoder().decode
_OPENED: dict[bytes, tuple[str, ...]] = {}
"""Opened fields already decoded: most lines repeat a few (``["[another subject]"]``)."""


class EventLineError(ValueError):
    """A line of ``events.tsv`` is not well formed; the message says how."""


# -- the line format -------------------------------------------------------------------------------


def event_line(index: int, signature: bytes, opened: Sequence[str], body: bytes) -> bytes:
    """One line of ``events.tsv`` (the exporter writes what the verifier reads)."""
    if b"\n" in body or b"\r" in body:
        raise EventLineError(f"the body of event {index} is not one line")
    return b"%d\t%s\t%s\t%s\n" % (
        index,
        base64.b64encode(signature),
        json.dumps(list(opened), ensure_ascii=False, separators=(",", ":")).encode(),
        body,
    )


def line_index(raw: bytes) -> int:
    """The index field of a line: all the reader needs to pair the line with its leaf."""
    end = raw.find(_TAB)
    digits = raw[:end] if end > 0 else b""
    if not digits.isdigit() or not digits.isascii() or (len(digits) > 1 and digits[0] == 48):
        raise EventLineError("it does not start with an index and a tab")
    return int(digits)


def split_line(raw: bytes) -> tuple[int, bytes, Sequence[str], bytes]:
    """``(index, signature, opened, body)`` of one line, its line feed included or not."""
    if raw.endswith(b"\n"):
        raw = raw[:-1]
    fields = raw.split(_TAB, 3)
    if len(fields) != 4:
        raise EventLineError("it does not have four tab-separated fields")
    index = line_index(raw)
    try:
        signature = binascii.a2b_base64(fields[1], strict_mode=True)
    except (binascii.Error, ValueError):
        raise EventLineError("its signature is not base64") from None
    if len(signature) != 64:
        raise EventLineError(f"its signature is {len(signature)} bytes, not 64")
    opened = _OPENED.get(fields[2])
    if opened is None:
        opened = _opened_field(fields[2])
    return index, signature, opened, fields[3]


def report_fields(raw: bytes) -> tuple[int, Sequence[str], bytes]:
    """``(index, opened, body)`` of a line, as :func:`split_line` reads them, the signature
    left alone (the report needs none of it)."""
    fields = raw[:-1].split(_TAB, 3) if raw.endswith(b"\n") else raw.split(_TAB, 3)
    if len(fields) != 4:
        raise EventLineError("it does not have four tab-separated fields")
    opened = _OPENED.get(fields[2])
    if opened is None:
        opened = _opened_field(fields[2])
    return line_index(raw), opened, fields[3]


def _opened_field(field: bytes) -> tuple[str, ...]:
    try:
        values = _decode_json(field.decode())
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise EventLineError("its opened values are not JSON") from None
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise EventLineError("its opened values are not a list of strings")
    opened = tuple(values)
    if len(field) <= 200:
        if len(_OPENED) >= 4096:
            _OPENED.clear()
        _OPENED[field] = opened
    return opened


# -- sealed values: which the body holds, what the report shows for them ---------------------------


def sealed_count(value: Any) -> int:
    """How many sealed values ``value`` (a body's data) holds."""
    kind = type(value)  # decoded JSON: exact types first, then the general case
    if kind is str or (kind is not dict and kind is not list and isinstance(value, str)):
        return 1 if value.startswith(SEALED_PREFIX) else 0
    if kind is dict or isinstance(value, dict):
        return sum(map(sealed_count, value.values()))
    if kind is list or isinstance(value, list):
        return sum(map(sealed_count, value))
    return 0


def opened_values(data: Any, shown: Any) -> list[str]:
    """The exporter's ``opened`` field: what ``shown`` (the decoded data) holds at each sealed
    value of ``data`` (as signed), in order."""
    out: list[str] = []

    def walk(signed: Any, seen: Any) -> None:
        if isinstance(signed, str):
            if signed.startswith(SEALED_PREFIX):
                out.append(seen if isinstance(seen, str) else "[sealed]")
        elif isinstance(signed, dict):
            for key, value in signed.items():
                walk(value, seen.get(key) if isinstance(seen, dict) else None)
        elif isinstance(signed, list):
            for at, value in enumerate(signed):
                walk(value, seen[at] if isinstance(seen, list) and at < len(seen) else None)

    walk(data, shown)
    return out


def shown_data(data: dict[str, Any], opened: Sequence[str], body: bytes) -> dict[str, Any]:
    """``data`` (as signed) with each sealed value replaced by the next of ``opened``; raise
    :class:`EventLineError` when their numbers differ."""
    if _SEALED_BYTES not in body:
        if opened:
            raise EventLineError(f"it opens {len(opened)} values, the body seals none")
        return data
    values = iter(opened)
    missing: list[int] = []

    def walk(value: Any) -> Any:
        kind = type(value)  # decoded JSON: exact types first, then the general case
        if kind is str or (kind is not dict and kind is not list and isinstance(value, str)):
            if value.startswith(SEALED_PREFIX):
                replacement = next(values, None)
                if replacement is None:
                    missing.append(1)
                    return value
                return replacement
            return value
        if kind is dict or isinstance(value, dict):
            return {key: walk(item) for key, item in value.items()}
        if kind is list or isinstance(value, list):
            return [walk(item) for item in value]
        return value

    shown = walk(data)
    left = sum(1 for _ in values)
    if missing or left:
        sealed = sealed_count(data)
        raise EventLineError(f"it opens {len(opened)} values, the body seals {sealed}")
    assert isinstance(shown, dict)
    return shown


class LazyShown(Mapping[str, Any]):
    """:func:`shown_data`, worked out the first time it is read (the report reads the shown
    data of few events)."""

    __slots__ = ("_body", "_data", "_opened", "_shown")

    def __init__(self, data: dict[str, Any], opened: Sequence[str], body: bytes) -> None:
        self._data, self._opened, self._body = data, opened, body
        self._shown: dict[str, Any] | None = None

    def _value(self) -> dict[str, Any]:
        if self._shown is None:
            self._shown = shown_data(self._data, self._opened, self._body)
        return self._shown

    def __getitem__(self, key: str) -> Any:
        return self._value()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._value())

    def __len__(self) -> int:
        return len(self._value())


# -- checking leaves.bin, chunk by chunk -----------------------------------------------------------


@dataclass(frozen=True)
class LeafChunk:
    start: int
    """The index of the chunk's first leaf (a multiple of the chunk's size, but for the last)."""
    leaves: bytes
    """The chunk's entries, one after another, as in ``leaves.bin``."""
    offsets: tuple[int, ...]
    """Where each entry starts in ``leaves``; the last is ``len(leaves)``."""
    prefix: int | None = None
    """A leaf count inside the chunk at which to report the range's right edge as well."""


@dataclass
class LeafResult:
    start: int
    count: int = 0
    nodes: list[tuple[int, bytes]] = field(default_factory=list)
    prefix_nodes: list[tuple[int, bytes]] | None = None
    tagged: list[int] = field(default_factory=list)
    error: str | None = None


def check_leaf_chunk(chunk: LeafChunk, tag_keys: Sequence[bytes] | None) -> LeafResult:
    """Without ``tag_keys``: each leaf is an entry whose seq is its index + 1, and the chunk's
    hashes (its right edge). With them: the leaves tagged for one of them (nothing else)."""
    result = LeafResult(chunk.start)
    tree = CompactRange()
    offsets = chunk.offsets
    for at in range(len(offsets) - 1):
        raw = chunk.leaves[offsets[at] : offsets[at + 1]]
        index = chunk.start + at
        if tag_keys is not None:
            if len(raw) > 51:
                tags = {raw[i : i + 16] for i in range(51, len(raw), 16)}
                seq = index + 1
                if any(tag(key, seq) in tags for key in tag_keys):
                    result.tagged.append(index)
            continue
        try:
            entry = parse_entry(raw)
        except EntryError as exc:
            result.error = f"leaf {index}: {exc}"
            return result
        if entry.seq != index + 1:
            result.error = f"leaf {index} holds the entry of seq {entry.seq}"
            return result
        if chunk.prefix == at:
            result.prefix_nodes = tree.nodes()
        tree.append(leaf_hash(raw))
    if tag_keys is None and chunk.prefix == len(offsets) - 1:
        result.prefix_nodes = tree.nodes()
    result.count = len(offsets) - 1
    result.nodes = tree.nodes()
    return result


# -- checking events, chunk by chunk ---------------------------------------------------------------


class EventChecker:
    """Checks an event: its entry (leaf ``index``) is signed by a key of the log,
    its body is the one the entry commits to, its tags are those of its body's scopes, and its
    opened values stand for its sealed ones; notes what the scope's closure learns from it."""

    def __init__(self, keys: Mapping[str, bytes], scope: Mapping[str, Any]) -> None:
        self.keys = {key_id: VerifyKey(public) for key_id, public in keys.items()}
        self.scope = dict(scope)

    def check_one(
        self, index: int, leaf: bytes, raw: bytes, closure: Closure
    ) -> tuple[str, str] | None:
        """The first failure of the event of line ``raw`` (whose leaf is ``leaf``), or None;
        what the closure learns from it goes to ``closure``."""
        where = f"entry {index}"
        try:
            line_index_, signature, opened, body_bytes = split_line(raw)
        except EventLineError as exc:
            return EVENTS, str(exc)
        if line_index_ != index:  # the reader paired the line by this very field
            return EVENTS, f"its index {line_index_} is not {index}"
        # The leaves check has parsed every leaf already (format, seq, size, tags in order).
        seq = int.from_bytes(leaf[1:9], "big")
        if seq != index + 1:
            return where, f"holds the entry of seq {seq}"
        key = self.keys.get(leaf[9:17].hex())
        if key is None:
            return where, f"is signed by key {leaf[9:17].hex()}, which no key file names"
        try:
            key.verify(leaf, signature)
        except (BadSignatureError, ValueError, TypeError):
            return where, "its signature does not verify"
        if hashlib.sha256(body_bytes).digest() != leaf[17:49]:
            return where, "its body is not the one its entry commits to"
        try:
            body = parse_body(body_bytes)
        except EntryError as exc:
            return where, str(exc)
        sealed = sealed_count(body["data"]) if _SEALED_BYTES in body_bytes else 0
        if sealed != len(opened):
            return where, (
                "the decoded event differs from the signed body: "
                f"it opens {len(opened)} values, the body seals {sealed}"
            )
        data = body["data"]
        if sealed and mention_paths(data):
            data = resolve_from_shown(data, shown_data(data, opened, body_bytes))
            problem = self._check_mentions(data)
            if problem is not None:
                return where, problem
        hidden = withheld(data)  # counted once: most events withhold nothing
        known = without_withheld(data) if hidden else data
        scopes = scopes_of(body["type"], known, body["occurred_at"])
        problem = _check_tags(tags_for(scopes, seq), leaf[HEADER_SIZE:], hidden)
        if problem is not None:
            return where, problem
        mine = self.scope.get("subject") if self.scope.get("kind") == "subject" else None
        if (
            isinstance(mine, str)
            and hidden
            and tag(tag_key(subject_scope(mine)), seq) in _split_tags(leaf[HEADER_SIZE:])
            and subject_scope(mine) not in scopes
        ):
            return where, "it is tagged for the bundle's subject, whose place in it is withheld"
        closure.see(body["type"], known, body["occurred_at"])
        return None

    def _check_mentions(self, data: Mapping[str, Any]) -> str | None:
        """Each opened mention is a pseudonym; only a subject's bundle withholds any."""
        for name, index, value in mention_paths(data):
            if is_withheld(value):
                if self.scope.get("kind") != "subject":
                    return f"it withholds {name}[{index}], which a bundle of its scope opens"
            elif not is_pseudonym(value):
                return f"{name}[{index}] opens to {value!r}, which is not a pseudonym"
        return None


def _split_tags(raw: bytes) -> list[bytes]:
    return [raw[at : at + TAG_SIZE] for at in range(0, len(raw), TAG_SIZE)]


def _check_tags(expected: Sequence[bytes], raw: bytes, hidden: int) -> str | None:
    """The entry's tags are those of the scopes its body concerns; with ``hidden`` mentions
    withheld, those the bundle can name, and at most one more per withheld mention (the
    withheld subjects' own, which this bundle cannot name). An opened mention whose tag the
    entry lacks was not the subject the ledger signed for."""
    if not hidden:
        if b"".join(expected) != raw:
            return "its tags are not those of the scopes its body concerns"
        return None
    present = set(_split_tags(raw))
    if not set(expected) <= present:
        return "its tags are not those of the scopes its body concerns (as far as it opens them)"
    if not 0 < len(present) - len(set(expected)) <= hidden:
        return (
            f"it carries {len(present) - len(set(expected))} tags beyond those of the scopes it "
            f"opens, for {hidden} withheld subjects"
        )
    return None


# -- worker processes ------------------------------------------------------------------------------

_checker: EventChecker | None = None


def start_worker(keys: Mapping[str, bytes], scope: Mapping[str, Any]) -> None:
    """A worker process's initialiser: the keys and the scope every chunk is checked with."""
    global _checker
    _checker = EventChecker(keys, scope)


def checker() -> EventChecker:
    """The checker :func:`start_worker` made in this process."""
    assert _checker is not None, "start_worker was not called"
    return _checker
