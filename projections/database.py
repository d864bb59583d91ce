"""Where read models live, and the small SQL surface projections write through.

Queries are written once, in portable SQL with ``?`` parameters; timestamps are stored as
UTC text (``2026-03-01T00:00:00.000000Z``), which sorts as time does, and flags as integers.
Backends: :mod:`projections.sqlite` (a file of its own beside the ledger's, so projection
writes never wait for the log's write lock) and :mod:`projections.postgres` (tables in the
ledger's schema).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol

Row = tuple[Any, ...]


class Sql(Protocol):
    """One connection, inside a transaction or not."""

    def execute(self, query: str, params: Sequence[Any] = ()) -> list[Row]:
        """Run one statement; the rows it returns (none for writes)."""
        ...

    def executemany(self, query: str, rows: Iterable[Sequence[Any]]) -> None: ...


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
