"""Read models on SQLite: ``projections.sqlite3`` in the data directory."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ledger.sqlite import connect
from projections.database import ProjectionDatabase, Row, insert_statement

CACHE_KIB = 65_536
"""Page cache of a connection: a page's rows go into indexes keyed by pseudonyms, all over."""


class _SQLiteSql:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def execute(self, query: str, params: Sequence[Any] = ()) -> list[Row]:
        return self.conn.execute(query, params).fetchall()

    def executemany(self, query: str, rows: Iterable[Sequence[Any]]) -> None:
        self.conn.executemany(query, rows)

    def insert(
        self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]], tail: str = ""
    ) -> None:
        # In process, one prepared statement stepped per row is as fast as SQLite goes.
        if rows:
            self.conn.executemany(insert_statement(table, columns, 1, tail), rows)


class SQLiteProjectionDatabase(ProjectionDatabase):
    dialect = "sqlite"

    def __init__(self, path: Path) -> None:
        self.path = path
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = connect(self.path)
            # Read models are derived from the log: a commit need not reach the disk before it
            # returns (WAL keeps every transaction whole, so rows and positions stay together;
            # a power cut may only take the last pages back, which are applied again).
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
            self._local.conn = conn
            with self._lock:
                self._all.append(conn)
        return conn

    @contextmanager
    def transaction(self) -> Iterator[_SQLiteSql]:
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield _SQLiteSql(conn)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    @contextmanager
    def reading(self) -> Iterator[_SQLiteSql]:
        yield _SQLiteSql(self._conn())

    def table_names(self) -> list[str]:
        rows = self.query(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND substr(name, 1, 5) = 'proj_' "
            "ORDER BY name"
        )
        return [str(r[0]) for r in rows]

    def close(self) -> None:
        with self._lock:
            for conn in self._all:
                conn.close()
            self._all.clear()
        self._local = threading.local()
