"""A projection database on the same backend as the ledger under test."""

from __future__ import annotations

from ledger.config import Settings
from projections.database import ProjectionDatabase
from projections.postgres import PostgresProjectionDatabase
from projections.sqlite import SQLiteProjectionDatabase


def projection_database(settings: Settings) -> ProjectionDatabase:
    if settings.database_url is None:
        return SQLiteProjectionDatabase(settings.data_dir / "projections.sqlite3")
    return PostgresProjectionDatabase(settings.database_url, settings.database_schema)
