"""Merkle tree hashing and proofs, exactly as RFC 9162 §2.1 says, with SHA-256.

The tree over leaves ``d(0) .. d(n-1)`` (RFC 9162 §2.1.1)::

    MTH({})        = SHA-256()
    MTH({d(0)})    = SHA-256(0x00 || d(0))
    MTH(D[n])      = SHA-256(0x01 || MTH(D[0:k]) || MTH(D[k:n]))   k: largest power of two < n

Verification (``verify_inclusion``, ``verify_consistency``) computes a root from the proof and
compares it with the one claimed, raising :class:`RootMismatchError`; a proof that cannot be
checked at all (wrong length, index outside the tree, sizes in the wrong order) raises
:class:`ProofError`. Proof generation (``inclusion_proof``, ``consistency_proof``, ``root``) reads
the hashes of complete subtrees through a one-method :class:`NodeReader`, the way a log stores
them, and computes any incomplete subtree from complete ones.

Errors::

    MerkleError (ValueError)
    ├── ProofError          malformed proof, or an index or size outside what the proof allows
    └── RootMismatchError   a well-formed proof leads to another root (.expected, .calculated)

Standard library only: a regulator runs this without the server.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Sequence
from typing import Protocol

HASH_SIZE = 32
LEAF_PREFIX = b"\x00"
NODE_PREFIX = b"\x01"
EMPTY_ROOT = hashlib.sha256(b"").digest()


class MerkleError(ValueError):
    """A Merkle proof could not be made or checked, or it did not verify."""


class ProofError(MerkleError):
    """The proof is malformed, or an index or size breaks a precondition; the message has them."""


class RootMismatchError(MerkleError):
    """A well-formed proof leads to ``calculated``, not to the ``expected`` root."""

    def __init__(self, expected: bytes, calculated: bytes, what: str = "root") -> None:
        super().__init__(expected, calculated, what)
        self.expected = expected
        self.calculated = calculated
        self.what = what

    def __str__(self) -> str:
        return (
            f"calculated {self.what} {self.calculated.hex()} does not match"
            f" expected {self.what} {self.expected.hex()}"
        )


# Hashing (RFC 9162 §2.1.1)


def leaf_hash(data: bytes) -> bytes:
    """The hash of a leaf: SHA-256(0x00 || data)."""
    return hashlib.sha256(LEAF_PREFIX + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """The hash of an interior node: SHA-256(0x01 || left || right)."""
    return hashlib.sha256(NODE_PREFIX + left + right).digest()


def root_from_leaf_hashes(hashes: Sequence[bytes]) -> bytes:
    """MTH of the leaves whose hashes are given, by the RFC's recursive definition."""
    n = len(hashes)
    if n == 0:
        return EMPTY_ROOT
    if n == 1:
        return hashes[0]
    k = _split(n)
    return node_hash(root_from_leaf_hashes(hashes[:k]), root_from_leaf_hashes(hashes[k:]))


# Verification (RFC 9162 §2.1.3.2 and §2.1.4.2, in the decomposed form of transparency-dev/merkle)


def root_from_inclusion_proof(
    index: int, size: int, leaf_hash: bytes, proof: Sequence[bytes]
) -> bytes:
    """The root of a tree of ``size`` leaves in which ``leaf_hash`` is leaf ``index`` (0-based)."""
    # The leaf must lie inside the tree (RFC 9162 §2.1.3.2 step 1).
    if not 0 <= index < size:
        raise ProofError(f"leaf index {index} is outside a tree of size {size}")
    _check_hash("leaf hash", leaf_hash)
    inner, border = _decompose(index, size)
    _check_proof(proof, inner + border, f"leaf {index} in a tree of size {size}")
    calculated = _chain_inner(leaf_hash, proof[:inner], index)
    return _chain_border_right(calculated, proof[inner:])


def verify_inclusion(
    index: int, size: int, leaf_hash: bytes, proof: Sequence[bytes], root: bytes
) -> None:
    """Raise unless ``proof`` puts ``leaf_hash`` at ``index`` in the tree (``size``, ``root``)."""
    calculated = root_from_inclusion_proof(index, size, leaf_hash, proof)
    if calculated != root:
        raise RootMismatchError(root, calculated)


def verify_consistency(
    size1: int, size2: int, proof: Sequence[bytes], root1: bytes, root2: bytes
) -> None:
    """Raise unless ``proof`` shows the tree (size1, root1) is a prefix of (size2, root2)."""
    # A log only grows.
    if size2 < size1:
        raise ProofError(f"size1 {size1} is greater than size2 {size2}")
    # RFC 9162 §2.1.4 defines consistency proofs from a non-empty tree only: every tree extends
    # the empty one, so there is nothing to prove (and transparency-dev/merkle refuses it too).
    if size1 <= 0:
        raise ProofError(f"no consistency proof from a tree of size {size1} (size2 {size2})")
    # Equal sizes: the proof is empty and the roots are the same.
    if size1 == size2:
        if proof:
            raise ProofError(
                f"sizes are equal ({size1}) so the proof must be empty, it has {len(proof)} hashes"
            )
        if root1 != root2:
            raise RootMismatchError(root2, root1, "root2")
        return
    inner, border = _decompose(size1 - 1, size2)
    shift = _trailing_zeros(size1)
    inner -= shift  # the levels below 2^shift are inside a complete subtree of the old tree
    # When size1 is a power of two, the old root is a node of the new tree and the proof leaves it
    # out (RFC 9162 §2.1.4.2 step 2); otherwise the proof starts with that subtree's hash.
    seed_is_root1 = size1 == 1 << shift
    want = inner + border + (0 if seed_is_root1 else 1)
    _check_proof(proof, want, f"sizes {size1} and {size2}")
    seed, rest = (root1, proof) if seed_is_root1 else (proof[0], proof[1:])
    mask = (size1 - 1) >> shift

    calculated1 = _chain_inner_right(seed, rest[:inner], mask)
    calculated1 = _chain_border_right(calculated1, rest[inner:])
    if calculated1 != root1:
        raise RootMismatchError(root1, calculated1, "root1")
    calculated2 = _chain_inner(seed, rest[:inner], mask)
    calculated2 = _chain_border_right(calculated2, rest[inner:])
    if calculated2 != root2:
        raise RootMismatchError(root2, calculated2, "root2")


def _decompose(index: int, size: int) -> tuple[int, int]:
    """Lengths of the inclusion proof of ``index`` below and above where its path to the root
    leaves the path of the last leaf ``size - 1``: the inner part, then the right border."""
    inner = (index ^ (size - 1)).bit_length()
    border = (index >> inner).bit_count()
    return inner, border


def _chain_inner(seed: bytes, proof: Sequence[bytes], index: int) -> bytes:
    """Hash ``seed`` up with siblings on either side, as the bits of ``index`` say."""
    for i, sibling in enumerate(proof):
        seed = node_hash(sibling, seed) if (index >> i) & 1 else node_hash(seed, sibling)
    return seed


def _chain_inner_right(seed: bytes, proof: Sequence[bytes], index: int) -> bytes:
    """Like :func:`_chain_inner`, with only the siblings on the left: the older subtree."""
    for i, sibling in enumerate(proof):
        if (index >> i) & 1:
            seed = node_hash(sibling, seed)
    return seed


def _chain_border_right(seed: bytes, proof: Sequence[bytes]) -> bytes:
    """Hash ``seed`` up the right border of the tree, where every sibling is on the left."""
    for sibling in proof:
        seed = node_hash(sibling, seed)
    return seed


def _check_hash(name: str, value: bytes) -> None:
    if len(value) != HASH_SIZE:
        raise ProofError(f"{name} is {len(value)} bytes, not {HASH_SIZE}")


def _check_proof(proof: Sequence[bytes], want: int, what: str) -> None:
    if len(proof) != want:
        raise ProofError(f"proof has {len(proof)} hashes, {what} needs {want}")
    for i, value in enumerate(proof):
        _check_hash(f"proof[{i}]", value)


# Proof generation over stored complete subtrees (RFC 9162 §2.1.3.1 and §2.1.4.1)


class NodeReader(Protocol):
    def node(self, level: int, index: int) -> bytes:
        """The hash of the complete subtree of 2**level leaves from leaf ``index * 2**level``."""
        ...


def root(size: int, reader: NodeReader) -> bytes:
    """MTH of the first ``size`` leaves."""
    if size < 0:
        raise ProofError(f"tree size {size} is negative")
    if size == 0:
        return EMPTY_ROOT
    return _subtree_hash(0, size, reader)


def inclusion_proof(index: int, size: int, reader: NodeReader) -> list[bytes]:
    """PATH(index, D[size]): the sibling hashes from leaf ``index`` up to the root."""
    if not 0 <= index < size:
        raise ProofError(f"leaf index {index} is outside a tree of size {size}")
    path: list[bytes] = []  # top-down; the proof lists them bottom-up
    lo, hi = 0, size
    while hi - lo > 1:
        mid = lo + _split(hi - lo)
        if index < mid:
            path.append(_subtree_hash(mid, hi, reader))
            hi = mid
        else:
            path.append(_subtree_hash(lo, mid, reader))
            lo = mid
    path.reverse()
    return path


def consistency_proof(size1: int, size2: int, reader: NodeReader) -> list[bytes]:
    """PROOF(size1, D[size2]): the hashes showing the first tree is a prefix of the second."""
    if size2 < size1:
        raise ProofError(f"size1 {size1} is greater than size2 {size2}")
    if size1 <= 0:
        raise ProofError(f"no consistency proof from a tree of size {size1} (size2 {size2})")
    path: list[bytes] = []  # top-down; the proof lists them bottom-up
    # SUBPROOF(m, D[lo:hi], whole), m counted from lo; whole while [lo, lo+m) is the old tree.
    lo, hi, m, whole = 0, size2, size1, True
    while m != hi - lo:
        k = _split(hi - lo)
        if m <= k:
            path.append(_subtree_hash(lo + k, hi, reader))
            hi = lo + k
        else:
            path.append(_subtree_hash(lo, lo + k, reader))
            lo, m, whole = lo + k, m - k, False
    if not whole:
        path.append(_subtree_hash(lo, hi, reader))
    path.reverse()
    return path


def complete_nodes_after_append(
    size_before: int, leaf_hash: bytes, reader_of_existing: NodeReader
) -> list[tuple[int, int, bytes]]:
    """The (level, index, hash) of every complete node that appending leaf ``size_before``
    creates, bottom-up: the leaf, then one parent per trailing one-bit of ``size_before``."""
    if size_before < 0:
        raise ProofError(f"tree size {size_before} is negative")
    _check_hash("leaf hash", leaf_hash)
    level, index, value = 0, size_before, leaf_hash
    created = [(level, index, value)]
    while index & 1:
        value = node_hash(reader_of_existing.node(level, index - 1), value)
        level, index = level + 1, index >> 1
        created.append((level, index, value))
    return created


class MemoryNodeReader:
    """Every complete node of a tree held in memory: for tests and small trees."""

    def __init__(self, leaf_hashes: Iterable[bytes]) -> None:
        level = list(leaf_hashes)
        self.size = len(level)
        self._levels = [level]
        while len(level) > 1:
            level = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
            self._levels.append(level)

    def node(self, level: int, index: int) -> bytes:
        if 0 <= level < len(self._levels) and 0 <= index < len(self._levels[level]):
            return self._levels[level][index]
        raise IndexError(
            f"no complete node at level {level}, index {index} in a tree of {self.size} leaves"
        )

    def nodes(self) -> Iterator[tuple[int, int, bytes]]:
        """Every complete node as (level, index, hash), level by level."""
        for level, hashes in enumerate(self._levels):
            for index, value in enumerate(hashes):
                yield level, index, value


def _subtree_hash(lo: int, hi: int, reader: NodeReader) -> bytes:
    """MTH(D[lo:hi]) for a subtree of the RFC's recursion (``lo`` is a multiple of the power of
    two at or above ``hi - lo``): read when complete, else split as MTH does."""
    n = hi - lo
    if n & (n - 1) == 0:
        level = n.bit_length() - 1
        return reader.node(level, lo >> level)
    k = _split(n)
    return node_hash(_subtree_hash(lo, lo + k, reader), _subtree_hash(lo + k, hi, reader))


def _split(n: int) -> int:
    """The largest power of two smaller than ``n`` (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def _trailing_zeros(n: int) -> int:
    return (n & -n).bit_length() - 1


class CompactRange:
    """The right edge of a tree being read leaf by leaf: its root at any size, O(log n) memory."""

    def __init__(self) -> None:
        self.size = 0
        self._stack: list[tuple[int, bytes]] = []

    def append(self, hash_of_leaf: bytes) -> list[tuple[int, int, bytes]]:
        """Add a leaf; the complete nodes it creates (the leaf first), as a store keeps them."""
        leaf_index = self.size
        level, value = 0, hash_of_leaf
        created = [(0, leaf_index, value)]
        while self._stack and self._stack[-1][0] == level:
            _, left = self._stack.pop()
            level, value = level + 1, node_hash(left, value)
            created.append((level, leaf_index >> level, value))
        self._stack.append((level, value))
        self.size += 1
        return created

    def append_subtree(self, level: int, value: bytes) -> None:
        """Add the root of a complete subtree of 2^level leaves; the tree's size must be a
        multiple of 2^level (the subtree is aligned, as those of :meth:`nodes` are)."""
        if self.size % (1 << level):
            raise ProofError(f"a subtree of 2^{level} leaves cannot follow {self.size} leaves")
        self.size += 1 << level
        while self._stack and self._stack[-1][0] == level:
            _, left = self._stack.pop()
            level, value = level + 1, node_hash(left, value)
        self._stack.append((level, value))

    def nodes(self) -> list[tuple[int, bytes]]:
        """The right edge, (level, hash) of each complete subtree, leftmost first: appended in
        order with :meth:`append_subtree` to a tree whose size is a multiple of 2^(the first
        level), they add this range's leaves there."""
        return list(self._stack)

    def root(self) -> bytes:
        if not self._stack:
            return EMPTY_ROOT
        value = self._stack[-1][1]
        for _, left in reversed(self._stack[:-1]):
            value = node_hash(left, value)
        return value
