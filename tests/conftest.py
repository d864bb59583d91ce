"""Fixtures: every storage test runs on SQLite and on PostgreSQL.

PostgreSQL is the server at ``CONSENT_LEDGER_TEST_PG`` (default 127.0.0.1:5432, database
``test``); each test gets its own schema, dropped afterwards. When the server does not answer,
PostgreSQL tests fail under CI (``CI`` set) and are skipped, with the reason, elsewhere.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from uuid import uuid4

import psycopg
import pytest

from ledger.application import LedgerApplication
from ledger.config import Settings, generate_keys, open_ledger
from projections.read_models import ReadModels

PG_URL = os.environ.get("CONSENT_LEDGER_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
_pg_answer: str | None = None


def require_postgres() -> None:
    global _pg_answer
    if _pg_answer is None:
        try:
            psycopg.connect(PG_URL, connect_timeout=3).close()
            _pg_answer = ""
        except psycopg.Error as exc:
            _pg_answer = f"PostgreSQL at {PG_URL} does not answer: {exc}"
    if _pg_answer:
        if os.environ.get("CI"):
            pytest.fail(_pg_answer + " (CI needs it: .ci/run starts it)")
        pytest.skip(_pg_answer)


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("CONSENT_LEDGER_") and name != "CONSENT_LEDGER_TEST_PG":
            monkeypatch.delenv(name)


@pytest.fixture(params=["sqlite", "postgres"])
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Settings]:
    data_dir = tmp_path / "data"
    if request.param == "sqlite":
        result = Settings(data_dir=data_dir)
        generate_keys(result)
        yield result
        return
    require_postgres()
    schema = f"test_{uuid4().hex[:12]}"
    result = Settings(data_dir=data_dir, database_url=PG_URL, database_schema=schema)
    generate_keys(result)
    try:
        yield result
    finally:
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture
def ledger(settings: Settings) -> Iterator[LedgerApplication]:
    app = open_ledger(settings)
    try:
        yield app
    finally:
        app.close()


@pytest.fixture
def models(ledger: LedgerApplication, settings: Settings) -> Iterator[ReadModels]:
    """The read models of ``ledger``, in this process (``models.runner.catch_up()`` to follow)."""
    read_models = ReadModels(ledger, settings)
    try:
        yield read_models
    finally:
        read_models.close()


class RawDatabase:
    """Direct SQL on the ledger's database, as someone with database access could."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.postgres = settings.database_url is not None

    @contextmanager
    def connect(self) -> Iterator[Any]:
        if self.postgres:
            assert self.settings.database_url is not None
            with psycopg.connect(self.settings.database_url, autocommit=True) as conn:
                conn.execute(f'SET search_path TO "{self.settings.database_schema}"')
                yield conn
        else:
            lite = sqlite3.connect(self.settings.sqlite_path, isolation_level=None)
            try:
                yield lite
            finally:
                lite.close()

    def execute(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        if self.postgres:
            sql = sql.replace("?", "%s")
        with self.connect() as conn:
            cursor = conn.execute(sql, params)
            try:
                return [tuple(row) for row in cursor.fetchall()]
            except (sqlite3.Error, psycopg.ProgrammingError):
                return []

    def drop_append_only_guards(self) -> None:
        """What an attacker with database access does first."""
        for table in ("events", "claims", "merkle_nodes", "checkpoints"):
            if self.postgres:
                self.execute(f"ALTER TABLE ledger_{table} DISABLE TRIGGER USER")
            else:
                for change in ("update", "delete"):
                    self.execute(f"DROP TRIGGER ledger_{table}_no_{change}")


@pytest.fixture
def raw_db(settings: Settings) -> RawDatabase:
    return RawDatabase(settings)
