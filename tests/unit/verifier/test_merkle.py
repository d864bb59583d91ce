"""RFC 9162 Merkle hashing and proofs: transparency-dev/merkle vectors, then every small tree."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ledger.verifier.merkle import (
    EMPTY_ROOT,
    MemoryNodeReader,
    MerkleError,
    NodeReader,
    ProofError,
    RootMismatchError,
    complete_nodes_after_append,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    node_hash,
    root,
    root_from_inclusion_proof,
    root_from_leaf_hashes,
    verify_consistency,
    verify_inclusion,
)

VECTORS = Path(__file__).resolve().parents[2] / "vectors" / "transparency-dev-merkle"
LEAVES = [leaf_hash(i.to_bytes(4, "big")) for i in range(100)]


def b64(value: str) -> bytes:
    return base64.b64decode(value)


def proof_of(case: dict[str, Any]) -> list[bytes]:
    return [b64(p) for p in case["proof"] or []]  # the Go generator writes `null` for no proof


def check_inclusion_case(case: dict[str, Any]) -> None:
    verify_inclusion(
        case["leafIdx"], case["treeSize"], b64(case["leafHash"]), proof_of(case), b64(case["root"])
    )


def check_consistency_case(case: dict[str, Any]) -> None:
    verify_consistency(
        case["size1"], case["size2"], proof_of(case), b64(case["root1"]), b64(case["root2"])
    )


def run_vectors(folder: str, check: Callable[[dict[str, Any]], None]) -> tuple[int, list[str]]:
    """Run every JSON case under ``folder``; return how many there were and which failed."""
    paths = sorted((VECTORS / "testdata" / folder).rglob("*.json"))
    failures = []
    for path in paths:
        case = json.loads(path.read_text())
        name = f"{path.relative_to(VECTORS)} ({case['desc']})"
        try:
            check(case)
        except MerkleError as exc:
            if not case["wantErr"]:
                failures.append(f"{name}: {exc}")
        except Exception as exc:
            failures.append(f"{name}: raised {exc!r}, not a MerkleError")
        else:
            if case["wantErr"]:
                failures.append(f"{name}: verified, but the case wants an error")
    return len(paths), failures


def test_every_inclusion_vector_verifies_or_fails_as_it_says() -> None:
    total, failures = run_vectors("inclusion", check_inclusion_case)
    assert total == 98
    assert not failures, f"{len(failures)} out of {total} failed:\n" + "\n".join(failures)


def test_every_consistency_vector_verifies_or_fails_as_it_says() -> None:
    total, failures = run_vectors("consistency", check_consistency_case)
    assert total == 98
    assert not failures, f"{len(failures)} out of {total} failed:\n" + "\n".join(failures)


def test_roots_and_nodes_of_the_eight_leaf_reference_tree() -> None:
    constants = json.loads((VECTORS / "constants.json").read_text())
    leaves = [leaf_hash(bytes.fromhex(data)) for data in constants["leaf_inputs_hex"]]
    roots = [root_from_leaf_hashes(leaves[:size]).hex() for size in range(9)]
    assert roots == constants["root_hashes_hex"]
    reader = MemoryNodeReader(leaves)
    by_level: list[list[str]] = [[] for _ in constants["node_hashes_hex_by_level"]]
    for level, _, value in reader.nodes():
        by_level[level].append(value.hex())
    assert by_level == constants["node_hashes_hex_by_level"]


def test_hashes_carry_the_rfc_9162_prefixes() -> None:
    assert hashlib.sha256(b"").digest() == EMPTY_ROOT
    assert leaf_hash(b"x") == hashlib.sha256(b"\x00x").digest()
    assert node_hash(b"a", b"b") == hashlib.sha256(b"\x01ab").digest()
    assert root(0, MemoryNodeReader([])) == EMPTY_ROOT


class BoundedReader:
    """Reads from a bigger tree, failing the test on any node not complete within ``size``."""

    def __init__(self, inner: NodeReader, size: int) -> None:
        self.inner, self.size = inner, size

    def node(self, level: int, index: int) -> bytes:
        assert (index + 1) << level <= self.size, f"node {level}/{index} is not in tree {self.size}"
        return self.inner.node(level, index)


FULL = MemoryNodeReader(LEAVES)
ROOTS = [root_from_leaf_hashes(LEAVES[:size]) for size in range(71)]


def flipped(proof: list[bytes], i: int) -> list[bytes]:
    return [*proof[:i], bytes([proof[i][0] ^ 0x10]) + proof[i][1:], *proof[i + 1 :]]


def inclusion_sides(index: int, size: int) -> list[str]:
    """Bottom-up, which side each sibling on the path of ``index`` is: RFC 9162 PATH's shape."""
    sides, lo, hi = [], 0, size
    while hi - lo > 1:
        mid = lo + (1 << ((hi - lo - 1).bit_length() - 1))
        sides.append("R" if index < mid else "L")
        lo, hi = (lo, mid) if index < mid else (mid, hi)
    return sides[::-1]


def consistency_shape(size1: int, size2: int) -> tuple[bool, list[str]]:
    """Whether the old root starts the chain, and the sides of the hashes: PROOF's shape."""
    sides, lo, hi, m, whole = [], 0, size2, size1, True
    while m != hi - lo:
        k = 1 << ((hi - lo - 1).bit_length() - 1)
        sides.append("R" if m <= k else "L")
        lo, hi, m, whole = (lo, lo + k, m, whole) if m <= k else (lo + k, hi, m - k, False)
    return whole, sides[::-1]


def test_inclusion_proofs_verify_for_every_leaf_of_every_tree_up_to_70() -> None:
    for size in range(1, 71):
        reader = BoundedReader(FULL, size)
        assert root(size, reader) == ROOTS[size]
        for index in range(size):
            proof = inclusion_proof(index, size, reader)
            assert len(proof) == len(inclusion_sides(index, size))
            verify_inclusion(index, size, LEAVES[index], proof, ROOTS[size])
            assert root_from_inclusion_proof(index, size, LEAVES[index], proof) == ROOTS[size]


def test_a_flipped_bit_in_any_inclusion_proof_hash_fails() -> None:
    for size in range(1, 71):
        for index in range(size):
            proof = inclusion_proof(index, size, FULL)
            for i in range(len(proof)):
                with pytest.raises(RootMismatchError):
                    verify_inclusion(index, size, LEAVES[index], flipped(proof, i), ROOTS[size])


def test_an_inclusion_proof_fails_at_a_wrong_size_unless_its_shape_is_the_same() -> None:
    """A proof alone does not bind the tree size (the signed checkpoint does): leaf 0 of 3 and
    leaf 0 of 4 have proofs of one shape. Any size that changes the shape must fail."""
    accepted = 0
    for size in range(1, 71):
        for index in range(size):
            proof = inclusion_proof(index, size, FULL)
            for wrong in {size - 1, size + 1, size * 2, size // 2} - {size}:
                same_shape = index < wrong and inclusion_sides(index, wrong) == inclusion_sides(
                    index, size
                )
                try:
                    verify_inclusion(index, wrong, LEAVES[index], proof, ROOTS[size])
                except MerkleError:
                    assert not same_shape, (index, size, wrong)
                else:
                    assert same_shape, (index, size, wrong)
                    accepted += 1
    assert accepted > 0  # the caveat in the docstring is real


def test_consistency_proofs_verify_for_every_pair_up_to_40() -> None:
    for size2 in range(1, 41):
        reader = BoundedReader(FULL, size2)
        for size1 in range(1, size2 + 1):
            proof = consistency_proof(size1, size2, reader)
            seed_is_root1, sides = consistency_shape(size1, size2)
            assert len(proof) == len(sides) + (0 if seed_is_root1 else 1)
            verify_consistency(size1, size2, proof, ROOTS[size1], ROOTS[size2])


def test_a_flipped_bit_in_any_consistency_proof_hash_fails() -> None:
    for size2 in range(1, 41):
        for size1 in range(1, size2):
            proof = consistency_proof(size1, size2, FULL)
            for i in range(len(proof)):
                with pytest.raises(RootMismatchError):
                    verify_consistency(size1, size2, flipped(proof, i), ROOTS[size1], ROOTS[size2])


def test_a_consistency_proof_fails_at_wrong_sizes_unless_its_shape_is_the_same() -> None:
    accepted = 0
    for size2 in range(2, 41):
        for size1 in range(1, size2):
            proof = consistency_proof(size1, size2, FULL)
            shape = consistency_shape(size1, size2)
            wrongs = {
                (size1 - 1, size2),
                (size1 + 1, size2),
                (size1 ^ 2, size2),
                (size1, size2 - 1),
                (size1, size2 + 1),
                (size1, size2 * 2),
                (size1, size2 // 2),
            } - {(size1, size2)}
            for wrong1, wrong2 in wrongs:
                same_shape = 1 <= wrong1 <= wrong2 and consistency_shape(wrong1, wrong2) == shape
                try:
                    verify_consistency(wrong1, wrong2, proof, ROOTS[size1], ROOTS[size2])
                except MerkleError:
                    assert not same_shape, (size1, size2, wrong1, wrong2)
                else:
                    assert same_shape, (size1, size2, wrong1, wrong2)
                    accepted += 1
    assert accepted > 0


def test_appends_create_exactly_the_complete_nodes_of_the_tree() -> None:
    stored: dict[tuple[int, int], bytes] = {}

    class StoredReader:
        def node(self, level: int, index: int) -> bytes:
            return stored[level, index]

    for size_before in range(100):
        created = complete_nodes_after_append(size_before, LEAVES[size_before], StoredReader())
        trailing_ones = (size_before ^ (size_before + 1)).bit_length() - 1
        assert len(created) == 1 + trailing_ones
        for level, index, value in created:
            assert (level, index) not in stored
            stored[level, index] = value
        expected = MemoryNodeReader(LEAVES[: size_before + 1]).nodes()
        assert stored == {(level, index): value for level, index, value in expected}


def test_the_edge_cases_of_consistency_are_early_branches() -> None:
    verify_consistency(5, 5, [], ROOTS[5], ROOTS[5])
    with pytest.raises(RootMismatchError) as mismatch:
        verify_consistency(5, 5, [], ROOTS[5], ROOTS[6])
    assert (mismatch.value.expected, mismatch.value.calculated) == (ROOTS[6], ROOTS[5])
    with pytest.raises(ProofError, match="sizes are equal \\(5\\)"):
        verify_consistency(5, 5, [ROOTS[5]], ROOTS[5], ROOTS[5])
    with pytest.raises(ProofError, match="size1 6 is greater than size2 5"):
        verify_consistency(6, 5, [], ROOTS[6], ROOTS[5])
    with pytest.raises(ProofError, match="size 0 \\(size2 5\\)"):
        verify_consistency(0, 5, [], EMPTY_ROOT, ROOTS[5])
    with pytest.raises(ProofError, match="proof has 0 hashes, sizes 3 and 5 needs 4"):
        verify_consistency(3, 5, [], ROOTS[3], ROOTS[5])
    assert consistency_proof(5, 5, FULL) == []


def test_precondition_errors_name_the_values() -> None:
    proof = inclusion_proof(2, 5, FULL)
    with pytest.raises(ProofError, match="leaf index 5 is outside a tree of size 5"):
        verify_inclusion(5, 5, LEAVES[5], proof, ROOTS[5])
    with pytest.raises(ProofError, match="leaf hash is 9 bytes, not 32"):
        verify_inclusion(2, 5, b"WrongLeaf", proof, ROOTS[5])
    with pytest.raises(ProofError, match="proof has 4 hashes, leaf 2 in a tree of size 5 needs 3"):
        verify_inclusion(2, 5, LEAVES[2], [*proof, ROOTS[5]], ROOTS[5])
    with pytest.raises(ProofError, match="proof\\[1\\] is 0 bytes, not 32"):
        verify_inclusion(2, 5, LEAVES[2], [proof[0], b"", proof[2]], ROOTS[5])
    with pytest.raises(RootMismatchError) as mismatch:
        verify_inclusion(2, 5, LEAVES[3], proof, ROOTS[5])
    assert mismatch.value.expected == ROOTS[5]
    assert mismatch.value.calculated == root_from_inclusion_proof(2, 5, LEAVES[3], proof)
    assert mismatch.value.calculated.hex() in str(mismatch.value)
    with pytest.raises(ProofError, match="leaf index 5 is outside a tree of size 5"):
        inclusion_proof(5, 5, FULL)
    with pytest.raises(ProofError, match="size1 6 is greater than size2 5"):
        consistency_proof(6, 5, FULL)
    with pytest.raises(ProofError, match="size 0"):
        consistency_proof(0, 5, FULL)
    with pytest.raises(IndexError, match="level 1, index 1 in a tree of 3 leaves"):
        MemoryNodeReader(LEAVES[:3]).node(1, 1)


def test_proofs_in_large_random_trees_match_an_independent_recomputation() -> None:
    import random

    from ledger.verifier.merkle import (
        MemoryNodeReader,
        consistency_proof,
        inclusion_proof,
        leaf_hash,
        root_from_leaf_hashes,
        verify_consistency,
        verify_inclusion,
    )

    rng = random.Random(9162)
    hashes = [leaf_hash(rng.randbytes(rng.randrange(0, 40))) for _ in range(4000)]
    reader = MemoryNodeReader(hashes)
    for size in sorted(rng.sample(range(1, 4001), 25)):
        expected = root_from_leaf_hashes(hashes[:size])  # the RFC's recursive definition
        for index in rng.sample(range(size), min(size, 10)):
            verify_inclusion(
                index, size, hashes[index], inclusion_proof(index, size, reader), expected
            )
        smaller = rng.randrange(1, size + 1)
        proof = consistency_proof(smaller, size, reader)
        verify_consistency(smaller, size, proof, root_from_leaf_hashes(hashes[:smaller]), expected)
