"""Where read models live, and the small SQL surface projections write through.

Queries are written once, in portable SQL with ``?`` parameters; timestamps are stored as
UTC text (``2026-03-01T00:00:00.000000Z``), which sorts as time does, and flags as integers.
Backends: :mod:`projections.sqlite` (a file of its own beside the ledger's, so projection
writes never wait for the log's write lock) and :mod:`projections.postgres` (tables in the
ledger's schema).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol, TypeVar

Row = tuple[Any, ...]
T = TypeVar("T")

IN_LIST = 500
"""Values in one ``IN (...)`` list: a page's keys are read in a few statements, not one each."""


class Sql(Protocol):
    """One connection, inside a transaction or not."""

    def execute(self, query: str, params: Sequence[Any] = ()) -> list[Row]:
        """Run one statement; the rows it returns (none for writes)."""
        ...

    def executemany(self, query: str, rows: Iterable[Sequence[Any]]) -> None: ...

    def insert(
        self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]], tail: str = ""
    ) -> None:
        """``INSERT INTO table (columns) VALUES ... tail`` for every row, in as few statements as
        the backend likes (``tail``: an ``ON CONFLICT`` clause, or nothing)."""
        ...


class ProjectionDatabase(ABC):
    dialect: str

    @abstractmethod
    def transaction(self) -> AbstractContextManager[Sql]:
        """A write transaction: commits on a clean exit, rolls back on an exception."""

    @abstractmethod
    def reading(self) -> AbstractContextManager[Sql]:
        """A connection for reads (each statement sees committed data)."""

    def lock_schema(self, sql: Sql) -> None:  # noqa: B027 (SQLite needs nothing more)
        """Within a transaction: wait until no other process is creating or dropping tables.

        SQLite's write transaction already excludes every other writer; PostgreSQL overrides.
        """

    @abstractmethod
    def table_names(self) -> list[str]:
        """Every table of the read models (names starting ``proj_``)."""

    @abstractmethod
    def close(self) -> None: ...

    def query(self, query: str, params: Sequence[Any] = ()) -> list[Row]:
        with self.reading() as sql:
            return sql.execute(query, params)


def chunks(values: Iterable[T], size: int = IN_LIST) -> Iterator[list[T]]:
    """``values`` in lists of at most ``size``."""
    chunk: list[T] = []
    for value in values:
        chunk.append(value)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def marks(count: int) -> str:
    """``?, ?, ?`` for ``count`` parameters."""
    return ", ".join("?" * count)


def insert_statement(table: str, columns: Sequence[str], rows: int = 1, tail: str = "") -> str:
    """``INSERT INTO table (columns) VALUES (?, ...), ... tail`` for ``rows`` rows."""
    one = f"({marks(len(columns))})"
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES {', '.join([one] * rows)}" + (
        f" {tail}" if tail else ""
    )


def replacing(key: Sequence[str], columns: Sequence[str]) -> str:
    """The ``tail`` of an insert that replaces the row of the same ``key`` when there is one
    (SQLite 3.24 and PostgreSQL both read this form); no two rows of one insert share a key."""
    others = [c for c in columns if c not in key]
    return f"ON CONFLICT ({', '.join(key)}) DO UPDATE SET " + ", ".join(
        f"{c} = excluded.{c}" for c in others
    )


class KeyedRows:
    """Rows of one table, by their key column, held in memory for a page: each read once (all
    the page names in one statement), changed in memory, written once at the page's end."""

    def __init__(self, table: str, key: str, columns: Sequence[str]) -> None:
        self.table = table
        self.key = key
        self.columns = tuple(columns)
        self._rows: dict[Any, dict[str, Any] | None] = {}
        """None: known not to exist."""
        self._dirty: dict[Any, None] = {}

    def reset(self) -> None:
        self._rows = {}
        self._dirty = {}

    def load(self, sql: Sql, keys: Iterable[Any]) -> None:
        """Read the rows of ``keys`` not held yet."""
        wanted = [k for k in dict.fromkeys(keys) if k not in self._rows]
        for chunk in chunks(wanted):
            for row in sql.execute(
                f"SELECT {', '.join(self.columns)} FROM {self.table} "
                f"WHERE {self.key} IN ({marks(len(chunk))})",
                chunk,
            ):
                values = dict(zip(self.columns, row, strict=True))
                self._rows[values[self.key]] = values
            for key in chunk:
                self._rows.setdefault(key, None)

    def get(self, sql: Sql, key: Any) -> dict[str, Any] | None:
        """The row (to read; change it with :meth:`change`), or None."""
        if key not in self._rows:
            self.load(sql, [key])
        return self._rows[key]

    def add(self, key: Any, values: Mapping[str, Any]) -> None:
        """A new row: the columns not given are NULL."""
        self._rows[key] = {**dict.fromkeys(self.columns), **values, self.key: key}
        self._dirty[key] = None

    def change(self, key: Any, values: Mapping[str, Any]) -> None:
        row = self._rows.get(key)
        assert row is not None, f"{self.table}: change of {key!r}, which was not read"
        row.update(values)
        self._dirty[key] = None

    def flush(self, sql: Sql) -> None:
        """Write every row added or changed since the last flush."""
        rows = [self._rows[key] for key in self._dirty]
        self._dirty = {}
        if rows:
            sql.insert(
                self.table,
                self.columns,
                [tuple(row[c] for c in self.columns) for row in rows if row is not None],
                replacing((self.key,), self.columns),
            )
