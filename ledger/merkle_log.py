"""The log as an RFC 9162 Merkle tree: complete nodes stored with the entries, and checkpoints.

Leaf ``i`` (0-based) is the entry of event ``seq = i + 1``, hashed as
``SHA-256(0x00 || entry bytes)``. Every complete subtree's hash is stored as (level, index),
written in the same transaction as the entries that complete it, so the tree is always the
log's: appending a leaf adds one node per level it completes, and a proof or a root reads
O(log n) of them (:class:`StoredTree`).

A checkpoint (C2SP tlog-checkpoint in a signed note) is signed by one signer at a time, which
first proves the new tree consistent with the last checkpoint it signed and persists the new
one in the same transaction, so two inconsistent checkpoints are never signed, across restarts
and processes alike (:class:`Checkpointer`).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol, TypeVar

from ledger.errors import LedgerError
from ledger.signing import Signer
from ledger.verifier.checkpoint import Checkpoint, check_origin
from ledger.verifier.merkle import (
    MerkleError,
    NodeReader,
    complete_nodes_after_append,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    root,
    verify_consistency,
)
from ledger.verifier.note import format_verifier_key, sign_note

Node = tuple[int, int, bytes]
T = TypeVar("T")
ORIGIN_META = "origin"


class TreeError(LedgerError):
    """The stored tree and the log disagree, or a proof was asked for outside the tree."""


def right_edge(size: int) -> list[tuple[int, int]]:
    """The complete subtrees a tree of ``size`` leaves is made of, largest first."""
    keys = []
    offset = 0
    for level in range(size.bit_length() - 1, -1, -1):
        if size >> level & 1:
            keys.append((level, offset >> level))
            offset += 1 << level
    return keys


class EdgeReader:
    """Nodes known in memory (the right edge read at the start of a commit, and new ones)."""

    def __init__(self, nodes: Mapping[tuple[int, int], bytes]) -> None:
        self.nodes = dict(nodes)

    def node(self, level: int, index: int) -> bytes:
        try:
            return self.nodes[(level, index)]
        except KeyError:
            raise TreeError(f"the tree has no node at level {level}, index {index}") from None


def nodes_for_leaves(
    size_before: int, entries: Iterable[bytes], edge: Mapping[tuple[int, int], bytes]
) -> list[Node]:
    """The complete nodes that appending ``entries`` (as leaves) to a tree creates."""
    reader = EdgeReader(edge)
    created: list[Node] = []
    size = size_before
    for entry in entries:
        for level, index, value in complete_nodes_after_append(size, leaf_hash(entry), reader):
            reader.nodes[(level, index)] = value
            created.append((level, index, value))
        size += 1
    return created


class NodeSource(Protocol):
    def select_nodes(self, keys: Sequence[tuple[int, int]]) -> dict[tuple[int, int], bytes]: ...


class StoredTree:
    """Roots and proofs read from the stored nodes (each node read once per request)."""

    def __init__(self, source: NodeSource) -> None:
        self.source = source
        self._cache: dict[tuple[int, int], bytes] = {}

    def node(self, level: int, index: int) -> bytes:
        key = (level, index)
        if key not in self._cache:
            found = self.source.select_nodes([key])
            if key not in found:
                raise TreeError(f"the tree has no node at level {level}, index {index}")
            self._cache.update(found)
        return self._cache[key]

    def _nodes_for(self, compute: Callable[[NodeReader], object]) -> dict[tuple[int, int], bytes]:
        """Every node ``compute`` reads, learnt by running it once on dummies, then read in one
        query (those not in the cache), so a proof is one round trip, not one per node."""
        recording = _Recording()
        try:
            compute(recording)
        except MerkleError as exc:
            raise TreeError(str(exc)) from None
        wanted = sorted(key for key in recording.asked if key not in self._cache)
        found = self.source.select_nodes(wanted) if wanted else {}
        missing = [key for key in wanted if key not in found]
        if missing:
            level, index = missing[0]
            raise TreeError(f"the tree has no node at level {level}, index {index}")
        return {**{k: self._cache[k] for k in recording.asked if k in self._cache}, **found}

    def _with_nodes(self, compute: Callable[[NodeReader], T]) -> T:
        """``compute`` on the stored nodes, read in one go and kept for later questions."""
        self._cache.update(self._nodes_for(compute))
        return compute(self)

    def root(self, size: int) -> bytes:
        return self._with_nodes(lambda reader: root(size, reader))

    def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        return self._with_nodes(lambda reader: inclusion_proof(index, size, reader))

    def inclusion_proofs(self, indexes: Sequence[int], size: int) -> list[list[bytes]]:
        """Inclusion proofs of many leaves against one tree, their nodes read in one go and not
        kept (an export asks for every leaf: the cache would grow with the log)."""

        def proofs(reader: NodeReader) -> list[list[bytes]]:
            return [inclusion_proof(index, size, reader) for index in indexes]

        return proofs(EdgeReader(self._nodes_for(proofs)))

    def consistency_proof(self, size1: int, size2: int) -> list[bytes]:
        return self._with_nodes(lambda reader: consistency_proof(size1, size2, reader))


class TreeTransaction(Protocol):
    """A transaction in which no append commits (the backends' ``_tree_transaction``)."""

    def head(self) -> int: ...

    def tree_size(self) -> int: ...

    def entries(self, first_seq: int, limit: int) -> list[tuple[int, bytes]]: ...

    def read_nodes(self, keys: Sequence[tuple[int, int]]) -> dict[tuple[int, int], bytes]: ...

    def insert_nodes(self, nodes: Sequence[Node]) -> None: ...

    def last_checkpoint(self) -> tuple[int, bytes, str] | None: ...

    def insert_checkpoint(
        self, size: int, root: bytes, note: str, key_id: str, at: str
    ) -> None: ...

    def get_meta(self, name: str) -> str | None: ...

    def put_meta(self, name: str, value: str) -> None: ...


def build_missing_nodes(txn: TreeTransaction, batch: int = 1000) -> int:
    """Add the nodes of entries recorded before the tree existed; the number of leaves added."""
    added = 0
    while True:
        size, head = txn.tree_size(), txn.head()
        if size >= head:
            return added
        rows = txn.entries(size + 1, batch)
        if not rows or rows[0][0] != size + 1:
            raise TreeError(f"the log has no event {size + 1}: the tree cannot be built past it")
        edge = txn.read_nodes(right_edge(size))
        txn.insert_nodes(nodes_for_leaves(size, [entry for _, entry in rows], edge))
        added += len(rows)


@dataclass(frozen=True)
class SignedCheckpoint:
    size: int
    root: bytes
    note: str
    signed_at: str | None = field(default=None, compare=False)
    """When it was signed (RFC 3339, UTC), where the store says; not part of its identity."""


class Checkpointer:
    """Signs checkpoints of the log: one signer at a time, each consistent with the last."""

    def __init__(self, signer: Signer, origin: str) -> None:
        check_origin(origin)
        self.signer = signer
        self.origin = origin

    @property
    def verifier_key(self) -> str:
        """The C2SP verifier key of the checkpoints: ``<origin>+<hash>+<key>``."""
        return format_verifier_key(self.origin, self.signer.public_key)

    def sign(self, txn: TreeTransaction) -> SignedCheckpoint:
        """A checkpoint of the current tree: the last one when nothing was appended since."""
        size = txn.tree_size()
        if size != txn.head():
            raise TreeError(f"the tree has {size} leaves but the log {txn.head()} events")
        last = txn.last_checkpoint()
        if last is not None and size < last[0]:
            raise TreeError(
                f"the tree has {size} leaves, fewer than the last checkpoint's {last[0]}"
            )
        if last is not None and last[0] == size:
            return SignedCheckpoint(*last)
        reader = EdgeReader(txn.read_nodes(_nodes_for_root(size, last)))
        new_root = root(size, reader)
        if last is not None and last[0] > 0:
            # Never sign a tree the last checkpoint is not a prefix of.
            proof = consistency_proof(last[0], size, reader)
            verify_consistency(last[0], size, proof, last[1], new_root)
        text = Checkpoint(self.origin, size, new_root).text()
        note = sign_note(text, self.origin, self.signer.signing_key)
        at = datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
        txn.insert_checkpoint(size, new_root, note, self.signer.key_id, at)
        return SignedCheckpoint(size, new_root, note)


def _nodes_for_root(size: int, last: tuple[int, bytes, str] | None) -> list[tuple[int, int]]:
    """The stored nodes that the root of ``size``, and a proof from ``last``, are made of."""
    wanted = set(right_edge(size))
    if last is not None and 0 < last[0] < size:
        recorder = _Recording()
        consistency_proof(last[0], size, recorder)
        wanted |= recorder.asked
    return sorted(wanted)


class _Recording:
    """A reader that only notes which nodes are asked for (every answer is a dummy hash)."""

    def __init__(self) -> None:
        self.asked: set[tuple[int, int]] = set()

    def node(self, level: int, index: int) -> bytes:
        self.asked.add((level, index))
        return b"\0" * 32


def origin_of(txn: TreeTransaction, configured: str | None) -> str:
    """The log's origin: set once (configured, or made up) and then the same forever."""
    stored = txn.get_meta(ORIGIN_META)
    if stored is None:
        stored = configured or f"consent-ledger.local/{secrets.token_hex(4)}"
        check_origin(stored)
        txn.put_meta(ORIGIN_META, stored)
    elif configured is not None and configured != stored:
        raise TreeError(
            f"this log's origin is {stored!r}; CONSENT_LEDGER_ORIGIN={configured!r} would make "
            "another log's checkpoints"
        )
    return stored
