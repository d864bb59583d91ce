"""The log as a Merkle tree: nodes written with the entries, proofs, checkpoints."""

from __future__ import annotations

import threading

import pytest

from ledger.application import LedgerApplication
from ledger.config import Settings, open_ledger
from ledger.merkle_log import TreeError
from ledger.verifier.checkpoint import open_checkpoint
from ledger.verifier.merkle import (
    MerkleError,
    leaf_hash,
    root_from_leaf_hashes,
    verify_consistency,
    verify_inclusion,
)
from ledger.verifier.note import parse_verifier_key
from tests import facts
from tests.conftest import RawDatabase


def leaves(ledger: LedgerApplication) -> list[bytes]:
    return [leaf_hash(record.entry) for record in ledger.iter_records()]


def fill(ledger: LedgerApplication, batches: list[int]) -> None:
    for size in batches:
        ledger.append([facts.policy() for _ in range(size)])


def test_the_stored_tree_is_the_tree_of_the_entries(ledger: LedgerApplication) -> None:
    fill(ledger, [1, 2, 5, 1, 8, 3, 13])
    hashes = leaves(ledger)
    tree = ledger.ledger.tree()
    for size in range(len(hashes) + 1):
        assert tree.root(size) == root_from_leaf_hashes(hashes[:size])
    head = len(hashes)
    for index in range(head):
        verify_inclusion(
            index, head, hashes[index], tree.inclusion_proof(index, head), tree.root(head)
        )
    for size1 in range(1, head + 1, 3):
        proof = tree.consistency_proof(size1, head)
        verify_consistency(size1, head, proof, tree.root(size1), tree.root(head))


def test_concurrent_appends_keep_the_tree_whole(ledger: LedgerApplication) -> None:
    threads = [threading.Thread(target=fill, args=(ledger, [1, 2, 1, 3])) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    hashes = leaves(ledger)
    assert len(hashes) == 56
    assert ledger.ledger.tree().root(56) == root_from_leaf_hashes(hashes)


def test_proofs_outside_the_tree_are_refused(ledger: LedgerApplication) -> None:
    fill(ledger, [3])
    with pytest.raises(TreeError):
        ledger.ledger.tree().inclusion_proof(3, 3)
    with pytest.raises(TreeError):
        ledger.ledger.tree().consistency_proof(3, 2)


def test_checkpoints_are_signed_notes_consistent_with_each_other(
    ledger: LedgerApplication,
) -> None:
    assert ledger.checkpointer is not None
    verifier = parse_verifier_key(ledger.checkpointer.verifier_key)
    origin = ledger.checkpointer.origin
    empty = ledger.sign_checkpoint()
    assert empty.size == 0
    fill(ledger, [4])
    first = ledger.sign_checkpoint()
    assert ledger.sign_checkpoint() == first  # nothing new, nothing signed
    fill(ledger, [7, 2])
    second = ledger.sign_checkpoint()
    parsed = open_checkpoint(second.note, origin, [verifier])
    assert (parsed.size, parsed.root_hash) == (13, root_from_leaf_hashes(leaves(ledger)))
    proof = ledger.ledger.tree().consistency_proof(first.size, second.size)
    verify_consistency(first.size, second.size, proof, first.root, second.root)
    assert [c.size for c in ledger.ledger.checkpoints()] == [0, 4, 13]
    assert ledger.ledger.latest_checkpoint() == second


def test_several_signers_never_sign_backwards(
    ledger: LedgerApplication, settings: Settings
) -> None:
    others = [open_ledger(settings) for _ in range(2)]
    try:

        def sign_while_appending(app: LedgerApplication) -> None:
            for _ in range(5):
                fill(app, [2])
                app.sign_checkpoint()

        threads = [
            threading.Thread(target=sign_while_appending, args=(a,)) for a in [ledger, *others]
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        for app in others:
            app.close()
    checkpoints = ledger.ledger.checkpoints()
    hashes = leaves(ledger)
    for checkpoint in checkpoints:
        assert checkpoint.root == root_from_leaf_hashes(hashes[: checkpoint.size])
    assert checkpoints[-1].size <= len(hashes) == 30


def test_a_tree_that_disagrees_with_the_last_checkpoint_is_never_signed(
    ledger: LedgerApplication, raw_db: RawDatabase
) -> None:
    fill(ledger, [3])
    ledger.sign_checkpoint()
    fill(ledger, [2])
    raw_db.drop_append_only_guards()
    # The stored hash of the first four leaves, which the new root is made from.
    raw_db.execute(
        "UPDATE ledger_merkle_nodes SET hash = ? WHERE level = 2 AND idx = 0", (b"\1" * 32,)
    )
    with pytest.raises(MerkleError):
        ledger.sign_checkpoint()
    assert [c.size for c in ledger.ledger.checkpoints()] == [3]


def test_a_log_without_a_tree_gets_one_on_opening(settings: Settings, raw_db: RawDatabase) -> None:
    app = open_ledger(settings)
    fill(app, [5, 6])
    expected = app.ledger.tree().root(11)
    app.close()
    raw_db.drop_append_only_guards()
    raw_db.execute("DELETE FROM ledger_merkle_nodes")
    app = open_ledger(settings)
    try:
        assert app.ledger.tree().root(11) == expected
        fill(app, [1])
        assert app.ledger.tree().root(12) == root_from_leaf_hashes(leaves(app))
    finally:
        app.close()


def test_the_origin_is_kept_once_chosen(settings: Settings) -> None:
    from dataclasses import replace

    app = open_ledger(settings)
    origin = app.ledger.origin()
    app.close()
    assert origin.startswith("consent-ledger.local/")
    with pytest.raises(TreeError, match="would make another log"):
        open_ledger(replace(settings, origin="another.example/log"))
    open_ledger(replace(settings, origin=origin)).close()


def test_checkpoints_stay_consistent_across_a_restart(settings: Settings) -> None:
    app = open_ledger(settings)
    fill(app, [3])
    first = app.sign_checkpoint()
    app.close()
    app = open_ledger(settings)
    try:
        fill(app, [4])
        second = app.sign_checkpoint()
        proof = app.ledger.tree().consistency_proof(first.size, second.size)
        verify_consistency(first.size, second.size, proof, first.root, second.root)
        assert [c.size for c in app.ledger.checkpoints()] == [3, 7]
    finally:
        app.close()
