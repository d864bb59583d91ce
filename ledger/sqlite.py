"""SQLite storage: the embedded default, one file in the data directory.

WAL journal with ``synchronous=FULL`` (a commit is fsynced before it returns), ``BEGIN
IMMEDIATE`` as the log's write lock (it serialises writers across threads and processes), and
triggers that refuse any UPDATE or DELETE of the log's tables (events, claims, Merkle nodes,
checkpoints, meta; meta's checkpoint counters may only count up).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from eventsourcing.persistence import IntegrityError

from ledger.errors import FORMAT_1_LOG, StorageError
from ledger.log_reads import RECORD_COLUMNS, LogRecord, RecordedClaim
from ledger.recorder import Head, LedgerRecorder
from ledger.signing import Signer
from ledger.subject_keys import KeyStore, Survey

SCHEMA = """
CREATE TABLE IF NOT EXISTS ledger_events (
    seq INTEGER PRIMARY KEY,
    originator_id TEXT NOT NULL,
    originator_version INTEGER NOT NULL,
    topic TEXT NOT NULL,
    entry BLOB NOT NULL,
    body BLOB NOT NULL,
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
CREATE TABLE IF NOT EXISTS ledger_merkle_nodes (
    level INTEGER NOT NULL,
    idx INTEGER NOT NULL,
    hash BLOB NOT NULL,
    PRIMARY KEY (level, idx)
);
CREATE TABLE IF NOT EXISTS ledger_checkpoints (
    size INTEGER PRIMARY KEY,
    root BLOB NOT NULL,
    note TEXT NOT NULL,
    key_id TEXT NOT NULL,
    signed_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS ledger_meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TRIGGER IF NOT EXISTS ledger_merkle_nodes_no_update BEFORE UPDATE ON ledger_merkle_nodes
BEGIN SELECT RAISE(ABORT, 'ledger_merkle_nodes is append-only'); END;
CREATE TRIGGER IF NOT EXISTS ledger_merkle_nodes_no_delete BEFORE DELETE ON ledger_merkle_nodes
BEGIN SELECT RAISE(ABORT, 'ledger_merkle_nodes is append-only'); END;
CREATE TRIGGER IF NOT EXISTS ledger_checkpoints_no_update BEFORE UPDATE ON ledger_checkpoints
BEGIN SELECT RAISE(ABORT, 'ledger_checkpoints is append-only'); END;
CREATE TRIGGER IF NOT EXISTS ledger_checkpoints_no_delete BEFORE DELETE ON ledger_checkpoints
BEGIN SELECT RAISE(ABORT, 'ledger_checkpoints is append-only'); END;
CREATE TRIGGER IF NOT EXISTS ledger_meta_no_delete BEFORE DELETE ON ledger_meta
BEGIN SELECT RAISE(ABORT, 'ledger_meta is append-only'); END;
-- How many checkpoints were signed, and the largest size: counted by the database on every
-- insert, so that verify-log names checkpoints that were removed (ledger/integrity.py).
INSERT OR IGNORE INTO ledger_meta (name, value)
    SELECT 'checkpoints_signed', count(*) FROM ledger_checkpoints;
INSERT OR IGNORE INTO ledger_meta (name, value)
    SELECT 'checkpoint_largest', coalesce(max(size), 0) FROM ledger_checkpoints;
CREATE TRIGGER IF NOT EXISTS ledger_meta_no_update BEFORE UPDATE ON ledger_meta
WHEN NOT (NEW.name = OLD.name AND OLD.name IN ('checkpoints_signed', 'checkpoint_largest')
    AND CAST(NEW.value AS INTEGER) >= CAST(OLD.value AS INTEGER))
BEGIN SELECT RAISE(ABORT, 'ledger_meta is append-only (its checkpoint counters only count up)');
END;
CREATE TRIGGER IF NOT EXISTS ledger_checkpoints_counted AFTER INSERT ON ledger_checkpoints
BEGIN
    UPDATE ledger_meta SET value = CAST(value AS INTEGER) + 1 WHERE name = 'checkpoints_signed';
    UPDATE ledger_meta SET value = NEW.size
        WHERE name = 'checkpoint_largest' AND CAST(value AS INTEGER) < NEW.size;
END;
"""

KEYSTORE_SCHEMA = """
CREATE TABLE IF NOT EXISTS ledger_subject_keys (
    pseudonym TEXT PRIMARY KEY,
    wrapped BLOB NOT NULL,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE TABLE IF NOT EXISTS ledger_secrets (name TEXT PRIMARY KEY, wrapped BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS ledger_subject_names (
    lookup TEXT PRIMARY KEY,
    pseudonym TEXT NOT NULL UNIQUE
);
CREATE TABLE IF NOT EXISTS ledger_subject_erasures (
    lookup TEXT PRIMARY KEY,
    erasures INTEGER NOT NULL
);
"""

_SURVEY = (
    "SELECT n.lookup, n.pseudonym, k.wrapped FROM ledger_subject_names n "
    "LEFT JOIN ledger_subject_keys k ON k.pseudonym = n.pseudonym WHERE n.lookup IN ({0}) "
    "UNION ALL SELECT lookup, NULL, NULL FROM ledger_subject_erasures WHERE lookup IN ({0})"
)


def connect(path: Path) -> sqlite3.Connection:
    path.parent.mkdir(parents=True, exist_ok=True)
    # The file is made here, readable by its owner only (0600, like the keys); SQLite gives its
    # -wal and -shm files the database file's permissions.
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
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

    def finish_subjects(self, erased: Sequence[str], lifecycles: Mapping[str, str]) -> bool:
        return False  # the key store is its own file

    def read_head(
        self,
        event_ids: Sequence[str],
        pseudonyms: Sequence[str],
        new_keys: Mapping[str, bytes],
        new_names: Mapping[str, str],
    ) -> Head:
        row = self.conn.execute("SELECT max(seq) FROM ledger_events").fetchone()
        # The key store is a file of its own: the recorder asks it, and stores new keys in it.
        return Head(int(row[0] or 0), set(_select_claims(self.conn, event_ids)), None, None)

    def read_nodes(self, keys: Sequence[tuple[int, int]]) -> dict[tuple[int, int], bytes]:
        return _read_nodes(self.conn, keys)

    def write(
        self,
        records: Sequence[LogRecord],
        claims: Sequence[RecordedClaim],
        nodes: Sequence[tuple[int, int, bytes]],
    ) -> None:
        self.conn.executemany(
            "INSERT INTO ledger_merkle_nodes (level, idx, hash) VALUES (?, ?, ?)", nodes
        )
        self.conn.executemany(
            f"INSERT INTO ledger_events ({RECORD_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",  # noqa: S608
            [
                (
                    r.seq,
                    r.originator_id,
                    r.originator_version,
                    r.topic,
                    r.entry,
                    r.body,
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


class _SQLiteTree:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def head(self) -> int:
        return int(self.conn.execute("SELECT max(seq) FROM ledger_events").fetchone()[0] or 0)

    def tree_size(self) -> int:
        row = self.conn.execute("SELECT max(idx) FROM ledger_merkle_nodes WHERE level = 0")
        top = row.fetchone()[0]
        return 0 if top is None else int(top) + 1

    def entries(self, first_seq: int, limit: int) -> list[tuple[int, bytes]]:
        rows = self.conn.execute(
            "SELECT seq, entry FROM ledger_events WHERE seq >= ? ORDER BY seq LIMIT ?",
            (first_seq, limit),
        )
        return [(int(r[0]), bytes(r[1])) for r in rows]

    def read_nodes(self, keys: Sequence[tuple[int, int]]) -> dict[tuple[int, int], bytes]:
        return _read_nodes(self.conn, keys)

    def insert_nodes(self, nodes: Sequence[tuple[int, int, bytes]]) -> None:
        self.conn.executemany(
            "INSERT INTO ledger_merkle_nodes (level, idx, hash) VALUES (?, ?, ?)", nodes
        )

    def last_checkpoint(self) -> tuple[int, bytes, str] | None:
        row = self.conn.execute(
            "SELECT size, root, note FROM ledger_checkpoints ORDER BY size DESC LIMIT 1"
        ).fetchone()
        return None if row is None else (int(row[0]), bytes(row[1]), str(row[2]))

    def insert_checkpoint(self, size: int, root: bytes, note: str, key_id: str, at: str) -> None:
        self.conn.execute(
            "INSERT INTO ledger_checkpoints (size, root, note, key_id, signed_at) "
            "VALUES (?, ?, ?, ?, ?)",
            (size, root, note, key_id, at),
        )

    def get_meta(self, name: str) -> str | None:
        row = self.conn.execute("SELECT value FROM ledger_meta WHERE name = ?", (name,)).fetchone()
        return None if row is None else str(row[0])

    def put_meta(self, name: str, value: str) -> None:
        self.conn.execute("INSERT INTO ledger_meta (name, value) VALUES (?, ?)", (name, value))


def _read_nodes(
    conn: sqlite3.Connection, keys: Sequence[tuple[int, int]]
) -> dict[tuple[int, int], bytes]:
    """Stored nodes by (level, index): one query per 400 keys (a commit reads the right edge).

    Each level is its own ``level = ? AND idx IN (...)`` arm of a UNION ALL, so every arm is an
    index search: SQLite plans ``(level, idx) IN (VALUES ...)`` as a scan of the whole table,
    which made each append cost time in proportion to the log.
    """
    found: dict[tuple[int, int], bytes] = {}
    for start in range(0, len(keys), 400):
        by_level: dict[int, list[int]] = {}
        for level, index in keys[start : start + 400]:
            by_level.setdefault(level, []).append(index)
        arms = [
            "SELECT level, idx, hash FROM ledger_merkle_nodes "  # noqa: S608
            f"WHERE level = ? AND idx IN ({', '.join('?' * len(indexes))})"
            for indexes in by_level.values()
        ]
        params = [part for level, indexes in by_level.items() for part in (level, *indexes)]
        for level, index, value in conn.execute(" UNION ALL ".join(arms), params):
            found[(int(level), int(index))] = bytes(value)
    return found


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


class SQLiteLedgerRecorder(LedgerRecorder):
    def __init__(self, path: Path, signer: Signer, key_store: KeyStore, **kwargs: Any) -> None:
        super().__init__(signer, key_store, **kwargs)
        self.path = path
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._connections_lock = threading.Lock()
        self._writer: sqlite3.Connection | None = None
        self._reader().executescript(SCHEMA)
        columns = {row[1] for row in self._reader().execute("PRAGMA table_info(ledger_events)")}
        if "body" not in columns:
            raise StorageError(FORMAT_1_LOG.format(where=path))

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

    @contextmanager
    def _tree_transaction(self) -> Iterator[_SQLiteTree]:
        # A connection of the calling thread; BEGIN IMMEDIATE holds off the committer.
        with _immediate(self._reader()) as conn:
            yield _SQLiteTree(conn)

    def select_nodes(self, keys: Sequence[tuple[int, int]]) -> dict[tuple[int, int], bytes]:
        return _read_nodes(self._reader(), keys)

    def _close_connections(self) -> None:
        with self._connections_lock:
            for conn in self._connections:
                conn.close()
            self._connections.clear()
        self._local = threading.local()
        self._writer = None

    def _select(self, query: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        return self._reader().execute(query, params).fetchall()

    def select_record_rows(self) -> Iterator[LogRecord]:
        query = f"SELECT {RECORD_COLUMNS} FROM ledger_events ORDER BY rowid"  # noqa: S608
        cursor = self._reader().execute(query)
        while rows := cursor.fetchmany(1000):
            yield from (LogRecord.from_row(row) for row in rows)

    def select_all_claims(self) -> Iterator[RecordedClaim]:
        cursor = self._reader().execute("SELECT event_id, digest, seq FROM ledger_claims")
        while rows := cursor.fetchmany(1000):
            yield from (RecordedClaim(r[0], bytes(r[1]), int(r[2])) for r in rows)


class SQLiteKeyStore(KeyStore):
    def __init__(self, path: Path) -> None:
        self._conn = connect(path)
        # A destroyed key's bytes are overwritten with zeros, not left in free pages.
        self._conn.execute("PRAGMA secure_delete=ON")
        self._lock = threading.Lock()
        self._conn.executescript(KEYSTORE_SCHEMA)

    def persist(self, wrapped: Mapping[str, bytes]) -> dict[str, bytes]:
        with self._lock, _immediate(self._conn) as conn:
            conn.executemany(
                "INSERT OR IGNORE INTO ledger_subject_keys (pseudonym, wrapped) VALUES (?, ?)",
                list(wrapped.items()),
            )
            return self._select(list(wrapped))

    def persist_subjects(
        self, wrapped: Mapping[str, bytes], names: Mapping[str, str]
    ) -> tuple[dict[str, bytes], Survey | None]:
        lookups = sorted(names)
        with self._lock, _immediate(self._conn) as conn:  # one commit, one fsync
            conn.executemany(
                "INSERT OR IGNORE INTO ledger_subject_names (lookup, pseudonym) SELECT ?, ? "
                "WHERE NOT EXISTS (SELECT 1 FROM ledger_subject_erasures WHERE lookup = ?)",
                [(lookup, names[lookup], lookup) for lookup in lookups],
            )
            conn.executemany(
                "INSERT OR IGNORE INTO ledger_subject_keys (pseudonym, wrapped) VALUES (?, ?)",
                list(wrapped.items()),
            )
            named = Survey.from_rows(self._rows_in(_SURVEY, lookups, times=2)) if names else None
            return self._select(list(wrapped)), named

    def select(self, pseudonyms: Iterable[str]) -> dict[str, bytes]:
        with self._lock:
            return self._select(list(pseudonyms))

    def _select(self, ids: list[str]) -> dict[str, bytes]:
        rows = self._rows_in(
            "SELECT pseudonym, wrapped FROM ledger_subject_keys WHERE length(wrapped) > 0 "
            "AND pseudonym IN ({})",
            ids,
        )
        return {str(pseudonym): bytes(wrapped) for pseudonym, wrapped in rows}

    def _rows_in(self, query: str, ids: list[str], times: int = 1) -> list[tuple[Any, ...]]:
        """Rows of ``query`` whose ``IN ({})`` (each of ``times``) takes ``ids``, 400 at a
        time."""
        rows: list[tuple[Any, ...]] = []
        for start in range(0, len(ids), 400):
            chunk = ids[start : start + 400]
            rows += self._conn.execute(query.format(",".join("?" * len(chunk))), chunk * times)
        return rows

    def survey(self, lookups: Sequence[str]) -> Survey:
        with self._lock:
            return Survey.from_rows(self._rows_in(_SURVEY, list(lookups), times=2))

    def persist_names(self, names: Mapping[str, str]) -> Survey:
        lookups = sorted(names)
        with self._lock, _immediate(self._conn) as conn:
            conn.executemany(
                "INSERT OR IGNORE INTO ledger_subject_names (lookup, pseudonym) SELECT ?, ? "
                "WHERE NOT EXISTS (SELECT 1 FROM ledger_subject_erasures WHERE lookup = ?)",
                [(lookup, names[lookup], lookup) for lookup in lookups],
            )
            return Survey.from_rows(self._rows_in(_SURVEY, lookups, times=2))

    def erased(self, pseudonyms: Iterable[str]) -> set[str]:
        with self._lock:
            rows = self._rows_in(
                "SELECT pseudonym FROM ledger_subject_keys WHERE length(wrapped) = 0 "
                "AND pseudonym IN ({})",
                list(pseudonyms),
            )
        return {str(row[0]) for row in rows}

    def destroy(self, pseudonyms: Iterable[str]) -> None:
        ids = sorted(set(pseudonyms))
        with self._lock:
            with _immediate(self._conn) as conn:
                conn.executemany(
                    "DELETE FROM ledger_subject_keys WHERE pseudonym = ?", [(p,) for p in ids]
                )
                conn.executemany(
                    "INSERT INTO ledger_subject_keys (pseudonym, wrapped) VALUES (?, x'')",
                    [(p,) for p in ids],
                )
                gone = self._rows_in(
                    "SELECT lookup FROM ledger_subject_names WHERE pseudonym IN ({})", ids
                )
                conn.executemany(
                    "DELETE FROM ledger_subject_names WHERE pseudonym = ?", [(p,) for p in ids]
                )
                conn.executemany(
                    "INSERT INTO ledger_subject_erasures (lookup, erasures) VALUES (?, 1) "
                    "ON CONFLICT (lookup) DO UPDATE SET erasures = erasures + 1",
                    [(row[0],) for row in gone],
                )
            self._truncate_wal()

    def _truncate_wal(self) -> None:
        """After a commit: old pages (destroyed or re-wrapped keys, deleted names) leave the
        write-ahead log too. Best effort: the change is committed whatever happens here."""
        with contextlib.suppress(sqlite3.Error):  # the next checkpoint does it
            self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def start_lifecycle(self, lookup: str, pseudonym: str) -> bool:
        with self._lock, _immediate(self._conn) as conn:
            cursor = conn.execute(
                "INSERT OR IGNORE INTO ledger_subject_names (lookup, pseudonym) VALUES (?, ?)",
                (lookup, pseudonym),
            )
            return cursor.rowcount == 1

    def holds_format_1(self) -> bool:
        with self._lock:
            row = self._conn.execute(
                "SELECT EXISTS (SELECT 1 FROM ledger_subject_keys) "
                "AND NOT EXISTS (SELECT 1 FROM ledger_subject_names) "
                "AND NOT EXISTS (SELECT 1 FROM ledger_subject_erasures)"
            ).fetchone()
        return bool(row[0])

    def wrapped_keys(self) -> Iterable[tuple[str, bytes]]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT pseudonym, wrapped FROM ledger_subject_keys WHERE length(wrapped) > 0"
            ).fetchall()
        return [(str(r[0]), bytes(r[1])) for r in rows]

    def secrets(self) -> dict[str, bytes]:
        with self._lock:
            rows = self._conn.execute("SELECT name, wrapped FROM ledger_secrets").fetchall()
        return {str(r[0]): bytes(r[1]) for r in rows}

    def replace_wrapped(self, keys: Mapping[str, bytes], secrets: Mapping[str, bytes]) -> None:
        with self._lock:
            with _immediate(self._conn) as conn:
                conn.executemany(
                    "UPDATE ledger_subject_keys SET wrapped = ? WHERE pseudonym = ?",
                    [(w, p) for p, w in keys.items()],
                )
                conn.executemany(
                    "UPDATE ledger_secrets SET wrapped = ? WHERE name = ?",
                    [(w, n) for n, w in secrets.items()],
                )
            self._truncate_wal()

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
