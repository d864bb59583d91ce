"""Reading Merkle nodes on SQLite is an index search, whatever the size of the log."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from ledger.sqlite import SCHEMA, _read_nodes


class Recording:
    """A connection that also notes the statements run on it."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.statements: list[tuple[str, Sequence[Any]]] = []

    def execute(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Cursor:
        self.statements.append((sql, params))
        return self.conn.execute(sql, params)


def test_the_right_edge_and_proof_nodes_are_read_through_the_index() -> None:
    conn = sqlite3.connect(":memory:")
    conn.executescript(SCHEMA)
    rows = [
        (level, index, bytes([level, index % 256])) for level in range(4) for index in range(500)
    ]
    conn.executemany("INSERT INTO ledger_merkle_nodes (level, idx, hash) VALUES (?, ?, ?)", rows)
    conn.execute("ANALYZE")
    recording = Recording(conn)
    keys = [(3, 7), (2, 16), (0, 65), (0, 64), (1, 499)]
    found = _read_nodes(recording, keys)  # type: ignore[arg-type]
    assert found == {(level, index): bytes([level, index % 256]) for level, index in keys}
    for sql, params in recording.statements:
        plan = " | ".join(row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + sql, params))
        assert "SCAN ledger_merkle_nodes" not in plan, plan
        assert "SEARCH ledger_merkle_nodes" in plan, plan
    # Many keys: several statements, every key found.
    many = [(level, index) for level in range(4) for index in range(0, 500, 2)]
    assert _read_nodes(recording, many) == {  # type: ignore[arg-type]
        (level, index): bytes([level, index % 256]) for level, index in many
    }
