"""events.tsv lines, sealed values and the leaves' chunks: what the bundle verifier builds on."""

from __future__ import annotations

import json
import os

import pytest

from ledger.verifier.events import (
    EventLineError,
    LazyShown,
    LeafChunk,
    check_leaf_chunk,
    event_line,
    opened_values,
    sealed_count,
    shown_data,
    split_line,
)
from ledger.verifier.merkle import CompactRange, ProofError, leaf_hash, root_from_leaf_hashes

SEALED = "sealed:v1:AAAA"


def test_a_line_reads_back_as_written() -> None:
    body = json.dumps(
        {"data": {"note": "tab\there, line\nthere, é"}, "type": "x"},
        ensure_ascii=False,
        separators=(",", ":"),
        sort_keys=True,
    ).encode()
    line = event_line(12, b"\x01" * 64, ["ouvert", "[another subject]"], body)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert split_line(line) == (12, b"\x01" * 64, ("ouvert", "[another subject]"), body)
    assert split_line(line[:-1])[3] == body


@pytest.mark.parametrize(
    ("line", "named"),
    [
        (b"012\tAA==\t[]\t{}\n", "does not start with an index"),
        (b"+1\tAA==\t[]\t{}\n", "does not start with an index"),
        (b"1\t[]\t{}\n", "four tab-separated fields"),
        (b"1\t****\t[]\t{}\n", "not base64"),
        (b"1\tAA==\t[]\t{}\n", "is 1 bytes, not 64"),
        (b"1\t" + b"A" * 86 + b"==\t{\t{}\n", "not JSON"),
        (b"1\t" + b"A" * 86 + b"==\t[1]\t{}\n", "not a list of strings"),
    ],
)
def test_a_malformed_line_is_named(line: bytes, named: str) -> None:
    with pytest.raises(EventLineError, match=named):
        split_line(line)


def test_a_body_of_more_than_one_line_is_refused() -> None:
    with pytest.raises(EventLineError, match="not one line"):
        event_line(1, b"\x00" * 64, [], b'{"a":\n1}')


def test_opened_values_stand_for_the_sealed_ones_in_order() -> None:
    data = {
        "contact": SEALED,
        "subject": "p1",
        "subjects": [{"ref": SEALED, "subject": "p2"}, {"ref": SEALED, "subject": "p3"}],
    }
    shown = {
        "contact": "a@example.org",
        "subject": "p1",
        "subjects": [{"ref": "[another subject]", "subject": "p2"}, {"ref": "b", "subject": "p3"}],
    }
    opened = opened_values(data, shown)
    assert opened == ["a@example.org", "[another subject]", "b"]
    assert sealed_count(data) == 3
    body = json.dumps(data).encode()
    assert shown_data(data, opened, body) == shown
    assert dict(LazyShown(data, opened, body)) == shown
    with pytest.raises(EventLineError, match="opens 2 values, the body seals 3"):
        shown_data(data, opened[:2], body)
    with pytest.raises(EventLineError, match="opens 4 values, the body seals 3"):
        shown_data(data, [*opened, "x"], body)
    plain = {"subject": "p1"}
    assert shown_data(plain, [], b'{"subject":"p1"}') is plain
    with pytest.raises(EventLineError, match="the body seals none"):
        shown_data(plain, ["x"], b'{"subject":"p1"}')


def _entry(seq: int, tags: int = 0) -> bytes:
    header = bytes([2]) + seq.to_bytes(8, "big") + bytes(40) + tags.to_bytes(2, "big")
    return header + b"".join(bytes([i]) * 16 for i in range(tags))


@pytest.mark.parametrize("level", [0, 1, 2, 3])
def test_leaf_chunks_make_the_root_of_the_whole(level: int) -> None:
    entries = [_entry(seq, seq % 3) for seq in range(1, 24)]
    tree = CompactRange()
    size = 1 << level
    for start in range(0, len(entries), size):
        part = entries[start : start + size]
        offsets = [0]
        for entry in part:
            offsets.append(offsets[-1] + len(entry))
        result = check_leaf_chunk(LeafChunk(start, b"".join(part), tuple(offsets)), None)
        assert result.error is None and result.count == len(part)
        for node_level, value in result.nodes:
            tree.append_subtree(node_level, value)
    assert tree.root() == root_from_leaf_hashes([leaf_hash(e) for e in entries])


def test_a_leaf_out_of_place_is_named() -> None:
    entries = [_entry(1), _entry(3)]
    chunk = LeafChunk(0, b"".join(entries), (0, 51, 102))
    assert check_leaf_chunk(chunk, None).error == "leaf 1 holds the entry of seq 3"


def test_a_subtree_must_be_aligned() -> None:
    tree = CompactRange()
    tree.append(leaf_hash(os.urandom(4)))
    with pytest.raises(ProofError, match="cannot follow 1 leaves"):
        tree.append_subtree(1, bytes(32))
