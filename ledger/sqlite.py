"""SQLite storage: the embedded default, one file in the data directory.

WAL journal with ``synchronous=FULL`` (a commit is fsynced before it returns), ``BEGIN
IMMEDIATE`` as the log's write lock (it serialises writers across threads and processes), and
triggers that refuse any UPDATE or DELETE of the log and its claims.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from eventsourcing.persistence import IntegrityError, Notification, StoredEvent

from ledger.errors import StorageError
from ledger.recorder import LedgerRecorder, LogRecord, RecordedClaim
from ledger.signing import Signer
from ledger.subject_keys import KeyStore

SCHEMA = """
CREATE TABLE IF NOT EXISTS ledger_events (
    seq INTEGER PRIMARY KEY,
    originator_id TEXT NOT NULL,
    originator_version INTEGER NOT NULL,
    topic TEXT NOT NULL,
    entry BLOB NOT NULL,
    signature BLOB NOT NULL,
    key_id TEXT NOT NULL,
    UNIQUE (originator_id, originator_version)
);
CREATE TABLE IF NOT EXISTS ledger_claims (
    event_id TEXT PRIMARY KEY,
    digest BLOB NOT NULL,
    seq INTEGER NOT NULL
);
CREATE TRIGGER IF NOT EXISTS ledger_events_no_update BEFORE UPDATE ON ledger_events
BEGIN SELECT RAISE(ABORT, 'ledger_events is append-only'); END;
CREATE TRIGGER IF NOT EXISTS ledger_events_no_delete BEFORE DELETE ON ledger_events
BEGIN SELECT RAISE(ABORT, 'ledger_events is append-only'); END;
CREATE TRIGGER IF NOT EXISTS ledger_claims_no_update BEFORE UPDATE ON ledger_claims
BEGIN SELECT RAISE(ABORT, 'ledger_claims is append-only'); END;
CREATE TRIGGER IF NOT EXISTS ledger_claims_no_delete BEFORE DELETE ON ledger_claims
BEGIN SELECT RAISE(ABORT, 'ledger_claims is append-only'); END;
"""

KEYSTORE_SCHEMA = """
CREATE TABLE IF NOT EXISTS ledger_subject_keys (
    pseudonym TEXT PRIMARY KEY,
    wrapped BLOB NOT NULL,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE TABLE IF NOT EXISTS ledger_secrets (name TEXT PRIMARY KEY, wrapped BLOB NOT NULL);
"""

_COLUMNS = "seq, originator_id, originator_version, topic, entry, signature, key_id"


def connect(path: Path) -> sqlite3.Connection:
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=60)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA busy_timeout=60000")
    return conn


@contextmanager
def _immediate(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    try:
        conn.execute("BEGIN IMMEDIATE")
    except sqlite3.Error as exc:
        raise StorageError(f"cannot start a write transaction: {exc}") from exc
    try:
        yield conn
    except sqlite3.IntegrityError as exc:
        conn.execute("ROLLBACK")
        raise IntegrityError(str(exc)) from exc
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    else:
        conn.execute("COMMIT")


class _SQLiteWrite:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def persist_keys(self, wrapped: Mapping[str, bytes]) -> dict[str, bytes] | None:
        return None  # the key store is its own file, committed first

    def read_head(self, event_ids: Sequence[str]) -> tuple[int, set[str]]:
        row = self.conn.execute("SELECT max(seq) FROM ledger_events").fetchone()
        return int(row[0] or 0), set(_select_claims(self.conn, event_ids))

    def write(self, records: Sequence[LogRecord], claims: Sequence[RecordedClaim]) -> None:
        self.conn.executemany(
            f"INSERT INTO ledger_events ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",  # noqa: S608
            [
                (
                    r.seq,
                    r.originator_id,
                    r.originator_version,
                    r.topic,
                    r.entry,
                    r.signature,
                    r.key_id,
                )
                for r in records
            ],
        )
        self.conn.executemany(
            "INSERT INTO ledger_claims (event_id, digest, seq) VALUES (?, ?, ?)",
            [(c.event_id, c.digest, c.seq) for c in claims],
        )


def _select_claims(conn: sqlite3.Connection, event_ids: Sequence[str]) -> dict[str, RecordedClaim]:
    found: dict[str, RecordedClaim] = {}
    ids = list(event_ids)
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        marks = ",".join("?" * len(chunk))
        for event_id, digest, seq in conn.execute(
            f"SELECT event_id, digest, seq FROM ledger_claims WHERE event_id IN ({marks})",  # noqa: S608
            chunk,
        ):
            found[event_id] = RecordedClaim(event_id, bytes(digest), int(seq))
    return found


def _record(row: Sequence[Any]) -> LogRecord:
    return LogRecord(
        seq=int(row[0]),
        originator_id=str(row[1]),
        originator_version=int(row[2]),
        topic=str(row[3]),
        entry=bytes(row[4]),
        signature=bytes(row[5]),
        key_id=str(row[6]),
    )


class SQLiteLedgerRecorder(LedgerRecorder):
    def __init__(self, path: Path, signer: Signer, key_store: KeyStore, **kwargs: Any) -> None:
        super().__init__(signer, key_store, **kwargs)
        self.path = path
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._connections_lock = threading.Lock()
        self._writer: sqlite3.Connection | None = None
        self._reader().executescript(SCHEMA)

    def _reader(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = connect(self.path)
            self._local.conn = conn
            with self._connections_lock:
                self._connections.append(conn)
        return conn

    @contextmanager
    def _write_transaction(self) -> Iterator[_SQLiteWrite]:
        if self._writer is None:
            self._writer = connect(self.path)
            with self._connections_lock:
                self._connections.append(self._writer)
        with _immediate(self._writer) as conn:
            yield _SQLiteWrite(conn)

    def _close_connections(self) -> None:
        with self._connections_lock:
            for conn in self._connections:
                conn.close()
            self._connections.clear()
        self._local = threading.local()
        self._writer = None

    def select_claims(self, event_ids: Sequence[str]) -> dict[str, RecordedClaim]:
        return _select_claims(self._reader(), event_ids)

    def select_records(self, start: int, limit: int) -> list[LogRecord]:
        rows = self._reader().execute(
            f"SELECT {_COLUMNS} FROM ledger_events WHERE seq >= ? ORDER BY seq LIMIT ?",  # noqa: S608
            (start, limit),
        )
        return [_record(row) for row in rows]

    def select_record_rows(self) -> Iterator[LogRecord]:
        cursor = self._reader().execute(f"SELECT {_COLUMNS} FROM ledger_events ORDER BY rowid")  # noqa: S608
        while rows := cursor.fetchmany(1000):
            yield from (_record(row) for row in rows)

    def select_all_claims(self) -> Iterator[RecordedClaim]:
        cursor = self._reader().execute("SELECT event_id, digest, seq FROM ledger_claims")
        while rows := cursor.fetchmany(1000):
            yield from (RecordedClaim(r[0], bytes(r[1]), int(r[2])) for r in rows)

    def select_events(
        self,
        originator_id: Any,
        *,
        gt: int | None = None,
        lte: int | None = None,
        desc: bool = False,
        limit: int | None = None,
    ) -> Sequence[StoredEvent]:
        sql = "SELECT originator_id, originator_version, topic, entry FROM ledger_events "
        sql += "WHERE originator_id = ?"
        params: list[Any] = [str(originator_id)]
        if gt is not None:
            sql += " AND originator_version > ?"
            params.append(gt)
        if lte is not None:
            sql += " AND originator_version <= ?"
            params.append(lte)
        sql += " ORDER BY originator_version" + (" DESC" if desc else "")
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        return [
            StoredEvent(originator_id=r[0], originator_version=r[1], topic=r[2], state=bytes(r[3]))
            for r in self._reader().execute(sql, params)
        ]

    def select_notifications(
        self,
        start: int | None,
        limit: int,
        stop: int | None = None,
        topics: Sequence[str] = (),
        *,
        inclusive_of_start: bool = True,
    ) -> Sequence[Notification]:
        sql = "SELECT seq, originator_id, originator_version, topic, entry FROM ledger_events "
        sql += "WHERE seq >= ?" if inclusive_of_start else "WHERE seq > ?"
        params: list[Any] = [start or 0]
        if stop is not None:
            sql += " AND seq <= ?"
            params.append(stop)
        if topics:
            sql += f" AND topic IN ({','.join('?' * len(topics))})"
            params.extend(topics)
        sql += " ORDER BY seq LIMIT ?"
        params.append(limit)
        return [
            Notification(
                id=r[0], originator_id=r[1], originator_version=r[2], topic=r[3], state=bytes(r[4])
            )
            for r in self._reader().execute(sql, params)
        ]

    def max_notification_id(self) -> int | None:
        row = self._reader().execute("SELECT max(seq) FROM ledger_events").fetchone()
        return None if row[0] is None else int(row[0])


class SQLiteKeyStore(KeyStore):
    def __init__(self, path: Path) -> None:
        self._conn = connect(path)
        self._lock = threading.Lock()
        self._conn.executescript(KEYSTORE_SCHEMA)

    def persist(self, wrapped: Mapping[str, bytes]) -> dict[str, bytes]:
        with self._lock, _immediate(self._conn) as conn:
            conn.executemany(
                "INSERT OR IGNORE INTO ledger_subject_keys (pseudonym, wrapped) VALUES (?, ?)",
                list(wrapped.items()),
            )
            return self._select(list(wrapped))

    def select(self, pseudonyms: Iterable[str]) -> dict[str, bytes]:
        with self._lock:
            return self._select(list(pseudonyms))

    def _select(self, ids: list[str]) -> dict[str, bytes]:
        found: dict[str, bytes] = {}
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            for pseudonym, wrapped in self._conn.execute(
                "SELECT pseudonym, wrapped FROM ledger_subject_keys "  # noqa: S608
                f"WHERE pseudonym IN ({marks})",
                chunk,
            ):
                found[pseudonym] = bytes(wrapped)
        return found

    def get_secret(self, name: str) -> bytes | None:
        with self._lock:
            row = self._conn.execute(
                "SELECT wrapped FROM ledger_secrets WHERE name = ?", (name,)
            ).fetchone()
        return None if row is None else bytes(row[0])

    def put_secret_if_absent(self, name: str, wrapped: bytes) -> None:
        with self._lock, _immediate(self._conn) as conn:
            conn.execute(
                "INSERT OR IGNORE INTO ledger_secrets (name, wrapped) VALUES (?, ?)",
                (name, wrapped),
            )

    def close(self) -> None:
        self._conn.close()
