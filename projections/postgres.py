"""Read models on PostgreSQL: ``proj_*`` tables in the ledger's schema."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool

from ledger.postgres import SCHEMA_LOCK_ID as LEDGER_SCHEMA_LOCK_ID
from projections.database import ProjectionDatabase, Row, Sql

SCHEMA_LOCK_ID = 0x70726F6A  # "proj": serialises creating and dropping read-model tables


def _pg(query: str) -> bytes:
    return query.replace("?", "%s").encode()


class _PostgresSql:
    def __init__(
        self, conn: psycopg.Connection[Any], column_types: dict[str, dict[str, str]]
    ) -> None:
        self.conn = conn
        self.column_types = column_types
        """Table -> column -> SQL type, shared by the database's connections."""

    def execute(self, query: str, params: Sequence[Any] = ()) -> list[Row]:
        cursor = self.conn.execute(_pg(query), params)
        return cursor.fetchall() if cursor.description else []

    def executemany(self, query: str, rows: Iterable[Sequence[Any]]) -> None:
        with self.conn.cursor() as cursor:
            cursor.executemany(_pg(query), list(rows))

    def insert(
        self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]], tail: str = ""
    ) -> None:
        # The server runs one statement, not one a row (pipelined single-row statements still
        # cost it a statement each). Plain rows go by COPY, the cheapest way in for both sides;
        # an ON CONFLICT needs an INSERT: one binary array parameter a column, so the text is
        # the same every time (psycopg converts and prepares it once).
        if not rows:
            return
        names = ", ".join(columns)
        if not tail:
            with (
                self.conn.cursor() as cursor,
                cursor.copy(f"COPY {table} ({names}) FROM STDIN".encode()) as copy,
            ):
                for row in rows:
                    copy.write_row(row)
            return
        types = self._types(table)
        arrays = ", ".join(f"%b::{types[c]}[]" for c in columns)
        self.conn.execute(
            f"INSERT INTO {table} ({names}) SELECT * FROM unnest({arrays}) {tail}".encode(),
            [list(values) for values in zip(*rows, strict=True)],
        )

    def _types(self, table: str) -> dict[str, str]:
        types = self.column_types.get(table)
        if types is None:
            rows = self.conn.execute(
                "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute "
                "WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped",
                (table,),
            ).fetchall()
            types = self.column_types[table] = {str(name): str(kind) for name, kind in rows}
        return types


class PostgresProjectionDatabase(ProjectionDatabase):
    dialect = "postgres"

    def __init__(self, url: str, schema: str, max_size: int = 8) -> None:
        self.url = url
        self.schema = schema
        self._column_types: dict[str, dict[str, str]] = {}
        self.pool = ConnectionPool(
            url,
            min_size=1,
            max_size=max_size,
            open=False,
            # Read models are derived from the log: a commit need not wait for its WAL to reach
            # the disk (a transaction stays whole, rows and position together; a server crash
            # may only take the last pages back, which are applied again).
            kwargs={
                "autocommit": True,
                "options": f"-c search_path={schema} -c synchronous_commit=off",
            },
        )
        self.pool.open(wait=True, timeout=10)
        with self.transaction() as sql:
            self.lock_schema(sql)
            # The ledger creates the same schema under its own lock: take it too, or two
            # processes starting at once both try, and one fails (PostgreSQL's CREATE SCHEMA
            # IF NOT EXISTS is not safe against a concurrent one).
            sql.execute("SELECT pg_advisory_xact_lock(?)", (LEDGER_SCHEMA_LOCK_ID,))
            sql.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')

    @contextmanager
    def _connection(self) -> Iterator[psycopg.Connection[Any]]:
        with self.pool.connection() as conn:
            yield conn

    @contextmanager
    def transaction(self) -> Iterator[_PostgresSql]:
        with self._connection() as conn, conn.transaction():
            yield _PostgresSql(conn, self._column_types)

    @contextmanager
    def reading(self) -> Iterator[_PostgresSql]:
        with self._connection() as conn:
            yield _PostgresSql(conn, self._column_types)

    def lock_schema(self, sql: Sql) -> None:
        sql.execute("SELECT pg_advisory_xact_lock(?)", (SCHEMA_LOCK_ID,))

    def table_names(self) -> list[str]:
        rows = self.query(
            "SELECT table_name FROM information_schema.tables "
            "WHERE table_schema = ? AND left(table_name, 5) = 'proj_' ORDER BY table_name",
            (self.schema,),
        )
        return [str(r[0]) for r in rows]

    def close(self) -> None:
        self.pool.close()
