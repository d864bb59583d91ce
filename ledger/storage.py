"""The log's storage opened from plain values: the recorder and its key store.

:func:`ledger.config.open_ledger` builds the whole ledger on it; the committer process
(:mod:`ledger.committer`) needs the recorder only, and starts faster for importing nothing
more (no catalogue, no aggregates, no settings): a :class:`StorageSpec` is plain strings and
numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ledger.recorder import LedgerRecorder
from ledger.signing import load_signer


@dataclass(frozen=True)
class StorageSpec:
    """Where the log and its key store are, and the recorder's bounds."""

    keys_dir: Path
    sqlite_path: Path
    database_url: str | None = None
    database_schema: str = "public"
    max_group_events: int = 2000
    max_pending_events: int = 2000

    @property
    def keystore_path(self) -> Path:
        return self.sqlite_path.with_name("keystore.sqlite3")


def open_recorder(spec: StorageSpec) -> LedgerRecorder:
    """The recorder on the storage ``spec`` names, signing with its active key; its key store
    is ``recorder.key_store``."""
    signer = load_signer(spec.keys_dir)
    if spec.database_url is None:
        from ledger.sqlite import SQLiteKeyStore, SQLiteLedgerRecorder

        return SQLiteLedgerRecorder(
            spec.sqlite_path,
            signer,
            SQLiteKeyStore(spec.keystore_path),
            max_group_events=spec.max_group_events,
            max_pending_events=spec.max_pending_events,
        )
    from ledger.postgres import PostgresKeyStore, PostgresLedgerRecorder, create_pool

    pool = create_pool(spec.database_url)
    return PostgresLedgerRecorder(
        pool,
        signer,
        PostgresKeyStore(pool, schema=spec.database_schema),
        schema=spec.database_schema,
        max_group_events=spec.max_group_events,
        max_pending_events=spec.max_pending_events,
    )
