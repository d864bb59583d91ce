"""PostgreSQL storage (psycopg 3, pooled), for when a database URL is configured.

``LOCK TABLE ... IN EXCLUSIVE MODE`` is the log's write lock: it serialises writers across
processes (readers are not blocked), so the sequence number read under it is gapless. A
trigger refuses UPDATE, DELETE and TRUNCATE of every table of the log (events, claims, Merkle
nodes, checkpoints, meta; meta's checkpoint counters may only count up). Each commit also
notifies the channel ``<schema>_ledger_events`` for followers.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg
from eventsourcing.persistence import IntegrityError
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import ConnectionPool, PoolTimeout

from ledger.errors import FORMAT_1_LOG, StorageError
from ledger.log_reads import LogRecord, RecordedClaim
from ledger.recorder import Head, LedgerRecorder
from ledger.signing import Signer
from ledger.subject_keys import KeyStore, Survey

SCHEMA_LOCK_ID = 0x6C6564676572  # "ledger": serialises schema creation across processes
TREE_LOCK_ID = 0x74726565  # "tree": one checkpoint signer or tree builder at a time

SCHEMA = """
CREATE TABLE IF NOT EXISTS {s}.ledger_events (
    seq bigint PRIMARY KEY,
    originator_id text NOT NULL,
    originator_version bigint NOT NULL,
    topic text NOT NULL,
    entry bytea NOT NULL,
    body bytea NOT NULL,
    signature bytea NOT NULL,
    key_id text NOT NULL,
    UNIQUE (originator_id, originator_version)
);
CREATE TABLE IF NOT EXISTS {s}.ledger_claims (
    event_id text PRIMARY KEY,
    digest bytea NOT NULL,
    seq bigint NOT NULL
);
CREATE OR REPLACE FUNCTION {s}.ledger_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION '% is append-only', TG_TABLE_NAME; END $$;
CREATE OR REPLACE TRIGGER ledger_events_append_only
    BEFORE UPDATE OR DELETE ON {s}.ledger_events
    FOR EACH ROW EXECUTE FUNCTION {s}.ledger_refuse_change();
CREATE OR REPLACE TRIGGER ledger_events_no_truncate
    BEFORE TRUNCATE ON {s}.ledger_events
    FOR EACH STATEMENT EXECUTE FUNCTION {s}.ledger_refuse_change();
CREATE OR REPLACE TRIGGER ledger_claims_append_only
    BEFORE UPDATE OR DELETE ON {s}.ledger_claims
    FOR EACH ROW EXECUTE FUNCTION {s}.ledger_refuse_change();
CREATE TABLE IF NOT EXISTS {s}.ledger_merkle_nodes (
    level smallint NOT NULL,
    idx bigint NOT NULL,
    hash bytea NOT NULL,
    PRIMARY KEY (level, idx)
);
CREATE TABLE IF NOT EXISTS {s}.ledger_checkpoints (
    size bigint PRIMARY KEY,
    root bytea NOT NULL,
    note text NOT NULL,
    key_id text NOT NULL,
    signed_at text NOT NULL
);
CREATE TABLE IF NOT EXISTS {s}.ledger_meta (name text PRIMARY KEY, value text NOT NULL);
CREATE OR REPLACE TRIGGER ledger_merkle_nodes_append_only
    BEFORE UPDATE OR DELETE ON {s}.ledger_merkle_nodes
    FOR EACH ROW EXECUTE FUNCTION {s}.ledger_refuse_change();
CREATE OR REPLACE TRIGGER ledger_checkpoints_append_only
    BEFORE UPDATE OR DELETE ON {s}.ledger_checkpoints
    FOR EACH ROW EXECUTE FUNCTION {s}.ledger_refuse_change();
CREATE OR REPLACE TRIGGER ledger_claims_no_truncate
    BEFORE TRUNCATE ON {s}.ledger_claims
    FOR EACH STATEMENT EXECUTE FUNCTION {s}.ledger_refuse_change();
CREATE OR REPLACE TRIGGER ledger_merkle_nodes_no_truncate
    BEFORE TRUNCATE ON {s}.ledger_merkle_nodes
    FOR EACH STATEMENT EXECUTE FUNCTION {s}.ledger_refuse_change();
CREATE OR REPLACE TRIGGER ledger_checkpoints_no_truncate
    BEFORE TRUNCATE ON {s}.ledger_checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION {s}.ledger_refuse_change();
CREATE OR REPLACE TRIGGER ledger_meta_no_truncate
    BEFORE TRUNCATE ON {s}.ledger_meta
    FOR EACH STATEMENT EXECUTE FUNCTION {s}.ledger_refuse_change();
CREATE OR REPLACE TRIGGER ledger_meta_no_delete
    BEFORE DELETE ON {s}.ledger_meta
    FOR EACH ROW EXECUTE FUNCTION {s}.ledger_refuse_change();
-- How many checkpoints were signed, and the largest size: counted by the database on every
-- insert, so that verify-log names checkpoints that were removed (ledger/integrity.py).
INSERT INTO {s}.ledger_meta (name, value)
    SELECT 'checkpoints_signed', count(*)::text FROM {s}.ledger_checkpoints
    ON CONFLICT (name) DO NOTHING;
INSERT INTO {s}.ledger_meta (name, value)
    SELECT 'checkpoint_largest', coalesce(max(size), 0)::text FROM {s}.ledger_checkpoints
    ON CONFLICT (name) DO NOTHING;
CREATE OR REPLACE FUNCTION {s}.ledger_meta_counts_up() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.name = OLD.name AND OLD.name IN ('checkpoints_signed', 'checkpoint_largest')
        AND NEW.value::bigint >= OLD.value::bigint THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION '% is append-only (its checkpoint counters only count up)', TG_TABLE_NAME;
END $$;
CREATE OR REPLACE TRIGGER ledger_meta_append_only
    BEFORE UPDATE ON {s}.ledger_meta
    FOR EACH ROW EXECUTE FUNCTION {s}.ledger_meta_counts_up();
CREATE OR REPLACE FUNCTION {s}.ledger_count_checkpoint() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE {s}.ledger_meta SET value = (value::bigint + 1)::text
        WHERE name = 'checkpoints_signed';
    UPDATE {s}.ledger_meta SET value = NEW.size::text
        WHERE name = 'checkpoint_largest' AND value::bigint < NEW.size;
    RETURN NULL;
END $$;
CREATE OR REPLACE TRIGGER ledger_checkpoints_counted
    AFTER INSERT ON {s}.ledger_checkpoints
    FOR EACH ROW EXECUTE FUNCTION {s}.ledger_count_checkpoint();
CREATE TABLE IF NOT EXISTS {s}.ledger_subject_keys (
    pseudonym text PRIMARY KEY,
    wrapped bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS {s}.ledger_secrets (name text PRIMARY KEY, wrapped bytea NOT NULL);
CREATE TABLE IF NOT EXISTS {s}.ledger_subject_names (
    lookup text PRIMARY KEY,
    pseudonym text NOT NULL UNIQUE
);
CREATE TABLE IF NOT EXISTS {s}.ledger_subject_erasures (
    lookup text PRIMARY KEY,
    erasures integer NOT NULL
);
"""

_COLUMNS = sql.SQL(", ").join(
    sql.Identifier(name)
    for name in (
        "seq",
        "originator_id",
        "originator_version",
        "topic",
        "entry",
        "body",
        "signature",
        "key_id",
    )
)


def create_pool(url: str, max_size: int = 20) -> ConnectionPool:
    # Try one connection first: a clear error at once, not a pool retrying in the background.
    try:
        psycopg.connect(url, connect_timeout=5).close()
    except psycopg.Error as exc:
        raise StorageError(f"cannot connect to PostgreSQL {describe(url)}: {exc}") from None
    try:
        # Autocommit: a read is one round trip; writes open explicit transactions.
        pool = ConnectionPool(
            url, min_size=1, max_size=max_size, open=False, kwargs={"autocommit": True}
        )
        pool.open(wait=True, timeout=10)
    except (psycopg.Error, PoolTimeout) as exc:
        raise StorageError(f"cannot connect to PostgreSQL {describe(url)}: {exc}") from exc
    return pool


def describe(url: str) -> str:
    """Where a URL points, without its password."""
    try:
        info = conninfo_to_dict(url)
    except psycopg.Error:
        return "(unreadable URL)"
    return f"at {info.get('host', 'localhost')}:{info.get('port', 5432)}/{info.get('dbname', '')}"


def create_schema(pool: ConnectionPool, schema: str) -> None:
    statements = SCHEMA.replace("{s}", sql.Identifier(schema).as_string())
    with pool.connection() as conn, conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK_ID,))
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
        conn.execute(statements.encode())
        body = conn.execute(
            "SELECT 1 FROM information_schema.columns WHERE table_schema = %s "
            "AND table_name = 'ledger_events' AND column_name = 'body'",
            (schema,),
        ).fetchone()
        if body is None:
            raise StorageError(FORMAT_1_LOG.format(where=f"schema {schema}"))


class _PostgresWrite:
    """The write transaction's statements, in pipeline mode: BEGIN, LOCK, the new keys and the
    head are one round trip, the write and COMMIT another (a third reads the tree's right edge
    when another writer appended since this recorder's last commit)."""

    def __init__(self, conn: psycopg.Connection[Any], recorder: PostgresLedgerRecorder) -> None:
        self.conn = conn
        self.recorder = recorder

    def read_head(
        self,
        event_ids: Sequence[str],
        pseudonyms: Sequence[str],
        new_keys: Mapping[str, bytes],
        new_names: Mapping[str, str],
    ) -> Head:
        # Pipelined: BEGIN, LOCK, the name and key inserts and this read go in one round trip.
        named: psycopg.Cursor[Any] | None = None
        if new_names:
            lookups = sorted(new_names)  # one order for every writer: no deadlock
            named = self.conn.execute(
                self.recorder.persist_names_statement,
                (lookups, [new_names[lookup] for lookup in lookups], lookups, lookups),
            )
        stored: psycopg.Cursor[Any] | None = None
        if new_keys:
            items = sorted(new_keys.items())
            stored = self.conn.execute(
                self.recorder.persist_keys_statement,
                ([p for p, _ in items], [w for _, w in items], [p for p, _ in items]),
            )
        head = self.conn.execute(
            self.recorder.read_head_statement, (list(event_ids), list(pseudonyms))
        )
        row = head.fetchone()
        assert row is not None
        stored_keys = {} if stored is None else {r[0]: bytes(r[1]) for r in stored.fetchall()}
        survey = None if named is None else Survey.from_rows(named.fetchall())
        return Head(int(row[0] or 0), set(row[1]), set(row[2]), stored_keys, survey)

    def read_nodes(self, keys: Sequence[tuple[int, int]]) -> dict[tuple[int, int], bytes]:
        return _read_nodes(self.conn, self.recorder, keys)

    def finish_subjects(self, erased: Sequence[str], lifecycles: Mapping[str, str]) -> bool:
        tables = KeyTables.of(self.recorder.schema)
        if erased:
            destroy_keys(self.conn, tables, list(erased))
            self.recorder.vacuum_after_commit = True
        name_lifecycles(self.conn, tables, lifecycles)
        return True

    def write(
        self,
        records: Sequence[LogRecord],
        claims: Sequence[RecordedClaim],
        nodes: Sequence[tuple[int, int, bytes]],
    ) -> None:
        self.conn.execute(
            self.recorder.write_statement,
            (
                [r.seq for r in records],
                [r.originator_id for r in records],
                [r.originator_version for r in records],
                [r.topic for r in records],
                [r.entry for r in records],
                [r.body for r in records],
                [r.signature for r in records],
                [r.key_id for r in records],
                [c.event_id for c in claims],
                [c.digest for c in claims],
                [c.seq for c in claims],
                [n[0] for n in nodes],
                [n[1] for n in nodes],
                [n[2] for n in nodes],
            ),
        )


def _read_nodes(
    conn: psycopg.Connection[Any],
    recorder: PostgresLedgerRecorder,
    keys: Sequence[tuple[int, int]],
) -> dict[tuple[int, int], bytes]:
    if not keys:
        return {}
    rows = conn.execute(
        recorder.read_nodes_statement, ([k[0] for k in keys], [k[1] for k in keys])
    ).fetchall()
    return {(int(r[0]), int(r[1])): bytes(r[2]) for r in rows}


class _PostgresTree:
    def __init__(self, conn: psycopg.Connection[Any], recorder: PostgresLedgerRecorder) -> None:
        self.conn = conn
        self.recorder = recorder
        self.nodes = sql.Identifier(recorder.schema, "ledger_merkle_nodes")
        self.checkpoints = sql.Identifier(recorder.schema, "ledger_checkpoints")
        self.meta = sql.Identifier(recorder.schema, "ledger_meta")

    def _one(self, query: sql.Composed, params: Sequence[Any] = ()) -> Any:
        row = self.conn.execute(query, params).fetchone()
        return None if row is None else row[0]

    def head(self) -> int:
        return int(self._one(sql.SQL("SELECT max(seq) FROM {}").format(self.recorder.table)) or 0)

    def tree_size(self) -> int:
        top = self._one(sql.SQL("SELECT max(idx) FROM {} WHERE level = 0").format(self.nodes))
        return 0 if top is None else int(top) + 1

    def entries(self, first_seq: int, limit: int) -> list[tuple[int, bytes]]:
        rows = self.conn.execute(
            sql.SQL("SELECT seq, entry FROM {} WHERE seq >= %s ORDER BY seq LIMIT %s").format(
                self.recorder.table
            ),
            (first_seq, limit),
        ).fetchall()
        return [(int(r[0]), bytes(r[1])) for r in rows]

    def read_nodes(self, keys: Sequence[tuple[int, int]]) -> dict[tuple[int, int], bytes]:
        return _read_nodes(self.conn, self.recorder, keys)

    def insert_nodes(self, nodes: Sequence[tuple[int, int, bytes]]) -> None:
        with self.conn.cursor() as cur:
            cur.executemany(
                sql.SQL("INSERT INTO {} (level, idx, hash) VALUES (%s, %s, %s)").format(self.nodes),
                list(nodes),
            )

    def last_checkpoint(self) -> tuple[int, bytes, str] | None:
        row = self.conn.execute(
            sql.SQL("SELECT size, root, note FROM {} ORDER BY size DESC LIMIT 1").format(
                self.checkpoints
            )
        ).fetchone()
        return None if row is None else (int(row[0]), bytes(row[1]), str(row[2]))

    def insert_checkpoint(self, size: int, root: bytes, note: str, key_id: str, at: str) -> None:
        self.conn.execute(
            sql.SQL(
                "INSERT INTO {} (size, root, note, key_id, signed_at) VALUES (%s, %s, %s, %s, %s)"
            ).format(self.checkpoints),
            (size, root, note, key_id, at),
        )

    def get_meta(self, name: str) -> str | None:
        value = self._one(
            sql.SQL("SELECT value FROM {} WHERE name = %s").format(self.meta), (name,)
        )
        return None if value is None else str(value)

    def put_meta(self, name: str, value: str) -> None:
        self.conn.execute(
            sql.SQL("INSERT INTO {} (name, value) VALUES (%s, %s)").format(self.meta),
            (name, value),
        )


class PostgresLedgerRecorder(LedgerRecorder):
    def __init__(
        self,
        pool: ConnectionPool,
        signer: Signer,
        key_store: KeyStore,
        schema: str = "public",
        **kwargs: Any,
    ) -> None:
        super().__init__(signer, key_store, **kwargs)
        self.pool = pool
        self.schema = schema
        self.table = sql.Identifier(schema, "ledger_events")
        self.claims_sql = sql.Identifier(schema, "ledger_claims")
        self.keys_table = sql.Identifier(schema, "ledger_subject_keys")
        self.vacuum_after_commit = False
        self.events_table = f'"{schema}".ledger_events'
        self.claims_table = f'"{schema}".ledger_claims'
        self.checkpoints_table = f'"{schema}".ledger_checkpoints'
        self.channel = f"{schema}_ledger_events"
        self.read_head_statement = (
            sql.SQL(
                "SELECT (SELECT max(seq) FROM {events}), "
                "ARRAY(SELECT event_id FROM {claims} WHERE event_id = ANY(%b::text[])), "
                "ARRAY(SELECT pseudonym FROM {keys} WHERE pseudonym = ANY(%b::text[]) "
                "AND length(wrapped) = 0)"
            )
            .format(events=self.table, claims=self.claims_sql, keys=self.keys_table)
            .as_bytes(None)
        )
        self.read_nodes_statement = (
            sql.SQL(
                "SELECT n.level, n.idx, n.hash FROM {nodes} n "
                "JOIN unnest(%b::smallint[], %b::bigint[]) AS k(level, idx) "
                "ON n.level = k.level AND n.idx = k.idx"
            )
            .format(nodes=sql.Identifier(schema, "ledger_merkle_nodes"))
            .as_bytes(None)
        )
        # Inserted rows come back from the CTE; rows stored before come from the table (the
        # statement's snapshot does not see its own inserts). A key another writer is storing
        # right now is in neither: the unit then fails and retries with the stored key.
        self.persist_keys_statement = (
            sql.SQL(
                "WITH ins AS (INSERT INTO {keys} (pseudonym, wrapped) "
                "SELECT * FROM unnest(%b::text[], %b::bytea[]) "
                "ON CONFLICT DO NOTHING RETURNING pseudonym, wrapped) "
                "SELECT pseudonym, wrapped FROM ins UNION ALL "
                "SELECT pseudonym, wrapped FROM {keys} WHERE pseudonym = ANY(%b::text[]) "
                "AND length(wrapped) > 0"
            )
            .format(keys=sql.Identifier(schema, "ledger_subject_keys"))
            .as_bytes(None)
        )
        # New names, as persist_keys_statement stores keys: those inserted now, with those
        # stored before and the erasures that forbid one (a reference erased is never named
        # again but by a new lifecycle).
        key_tables = KeyTables.of(schema)
        self.persist_names_statement = (
            sql.SQL(
                "WITH ins AS (INSERT INTO {names} (lookup, pseudonym) "
                "SELECT l, p FROM unnest(%b::text[], %b::text[]) AS t(l, p) "
                "WHERE NOT EXISTS (SELECT 1 FROM {erasures} e WHERE e.lookup = t.l) "
                "ON CONFLICT DO NOTHING RETURNING lookup, pseudonym) "
                "SELECT lookup, pseudonym, NULL::bytea FROM ins UNION ALL "
                "SELECT lookup, pseudonym, NULL::bytea FROM {names} WHERE lookup = ANY(%b::text[]) "
                "UNION ALL SELECT lookup, NULL, NULL::bytea FROM {erasures} "
                "WHERE lookup = ANY(%b::text[])"
            )
            .format(names=key_tables.names, erasures=key_tables.erasures)
            .as_bytes(None)
        )
        self.write_statement = (
            sql.SQL(
                "WITH e AS (INSERT INTO {events} ({columns}) SELECT * FROM unnest("
                "%b::bigint[], %b::text[], %b::bigint[], %b::text[], %b::bytea[], %b::bytea[], "
                "%b::bytea[], %b::text[]) RETURNING 1), "
                "c AS (INSERT INTO {claims} (event_id, digest, seq) SELECT * FROM unnest("
                "%b::text[], %b::bytea[], %b::bigint[]) RETURNING 1), "
                "n AS (INSERT INTO {nodes} (level, idx, hash) SELECT * FROM unnest("
                "%b::smallint[], %b::bigint[], %b::bytea[]) RETURNING 1) "
                "SELECT pg_notify({channel}, ''), (SELECT count(*) FROM e), "
                "(SELECT count(*) FROM c), (SELECT count(*) FROM n)"
            )
            .format(
                events=self.table,
                columns=_COLUMNS,
                claims=self.claims_sql,
                nodes=sql.Identifier(schema, "ledger_merkle_nodes"),
                channel=sql.Literal(self.channel),
            )
            .as_bytes(None)
        )
        self.lock_statement = (
            sql.SQL("LOCK TABLE {} IN EXCLUSIVE MODE").format(self.table).as_bytes(None)
        )
        create_schema(pool, schema)

    @contextmanager
    def _write_transaction(self) -> Iterator[_PostgresWrite]:
        try:
            with self.pool.connection() as conn, conn.pipeline(), conn.transaction():
                conn.execute(self.lock_statement)
                yield _PostgresWrite(conn, self)
        except psycopg.errors.UniqueViolation as exc:
            raise IntegrityError(str(exc)) from exc
        except psycopg.Error as exc:
            raise StorageError(f"PostgreSQL refused the append: {exc}") from exc
        if self.vacuum_after_commit:
            self.vacuum_after_commit = False
            vacuum_keys(self.pool, KeyTables.of(self.schema))

    @contextmanager
    def _tree_transaction(self) -> Iterator[_PostgresTree]:
        # One signer or builder at a time; SHARE mode holds off appends (EXCLUSIVE) so the
        # head and the nodes read are of one tree, without blocking readers.
        try:
            with self.pool.connection() as conn, conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (TREE_LOCK_ID,))
                conn.execute(sql.SQL("LOCK TABLE {} IN SHARE MODE").format(self.table))
                yield _PostgresTree(conn, self)
        except psycopg.Error as exc:
            raise StorageError(f"PostgreSQL refused the tree update: {exc}") from exc

    def select_nodes(self, keys: Sequence[tuple[int, int]]) -> dict[tuple[int, int], bytes]:
        with self.pool.connection() as conn:
            return _read_nodes(conn, self, keys)

    def _close_connections(self) -> None:
        self.pool.close()

    def _select(self, query: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        with self.pool.connection() as conn:
            rows: list[tuple[Any, ...]] = conn.execute(
                query.replace("?", "%s").encode(), params
            ).fetchall()
        return rows

    def select_record_rows(self) -> Iterator[LogRecord]:
        query = sql.SQL("SELECT {} FROM {} ORDER BY ctid").format(_COLUMNS, self.table)
        with self.pool.connection() as conn, conn.transaction(), conn.cursor(name="rows") as cur:
            cur.execute(query)
            while rows := cur.fetchmany(1000):
                yield from (LogRecord.from_row(r) for r in rows)

    def select_all_claims(self) -> Iterator[RecordedClaim]:
        query = sql.SQL("SELECT event_id, digest, seq FROM {}").format(self.claims_sql)
        with self.pool.connection() as conn, conn.transaction(), conn.cursor(name="claims") as cur:
            cur.execute(query)
            while rows := cur.fetchmany(1000):
                yield from (RecordedClaim(r[0], bytes(r[1]), int(r[2])) for r in rows)


@dataclass(frozen=True)
class KeyTables:
    """The key store's tables in a schema."""

    keys: sql.Identifier
    names: sql.Identifier
    erasures: sql.Identifier

    @classmethod
    def of(cls, schema: str) -> KeyTables:
        return cls(
            sql.Identifier(schema, "ledger_subject_keys"),
            sql.Identifier(schema, "ledger_subject_names"),
            sql.Identifier(schema, "ledger_subject_erasures"),
        )


class PostgresKeyStore(KeyStore):
    def __init__(self, pool: ConnectionPool, schema: str = "public") -> None:
        self.pool = pool
        self.tables = KeyTables.of(schema)
        self.keys = self.tables.keys
        self.secrets_table = sql.Identifier(schema, "ledger_secrets")
        self.survey_statement = (
            sql.SQL(
                "SELECT n.lookup, n.pseudonym, k.wrapped FROM {names} n "
                "LEFT JOIN {keys} k ON k.pseudonym = n.pseudonym "
                "WHERE n.lookup = ANY(%b::text[]) UNION ALL "
                "SELECT lookup, NULL, NULL FROM {erasures} WHERE lookup = ANY(%b::text[])"
            )
            .format(names=self.tables.names, keys=self.keys, erasures=self.tables.erasures)
            .as_bytes(None)
        )
        self.select_statement = (
            sql.SQL(
                "SELECT pseudonym, wrapped FROM {} WHERE pseudonym = ANY(%b::text[]) "
                "AND length(wrapped) > 0"
            )
            .format(self.keys)
            .as_bytes(None)
        )

    def survey(self, lookups: Sequence[str]) -> Survey:
        with self.pool.connection() as conn:
            rows = conn.execute(self.survey_statement, (list(lookups), list(lookups))).fetchall()
        return Survey.from_rows(rows)

    def persist(self, wrapped: Mapping[str, bytes]) -> dict[str, bytes]:
        with self.pool.connection() as conn, conn.transaction():
            with conn.cursor() as cur:
                cur.executemany(
                    sql.SQL(
                        "INSERT INTO {} (pseudonym, wrapped) VALUES (%s, %s) ON CONFLICT DO NOTHING"
                    ).format(self.keys),
                    sorted(wrapped.items()),  # one order for every writer: no deadlock
                )
            return self._select(conn, list(wrapped))

    def persist_names(self, names: Mapping[str, str]) -> Survey:
        lookups = sorted(names)  # one order for every writer: no deadlock
        with self.pool.connection() as conn, conn.transaction():
            conn.execute(
                sql.SQL(
                    "INSERT INTO {names} (lookup, pseudonym) "
                    "SELECT l, p FROM unnest(%s::text[], %s::text[]) AS t(l, p) "
                    "WHERE NOT EXISTS (SELECT 1 FROM {erasures} e WHERE e.lookup = t.l) "
                    "ON CONFLICT DO NOTHING"
                ).format(names=self.tables.names, erasures=self.tables.erasures),
                (lookups, [names[lookup] for lookup in lookups]),
            )
            rows = conn.execute(self.survey_statement, (lookups, lookups)).fetchall()
        return Survey.from_rows(rows)

    def select(self, pseudonyms: Iterable[str]) -> dict[str, bytes]:
        with self.pool.connection() as conn:
            return self._select(conn, list(pseudonyms))

    def _select(self, conn: psycopg.Connection[Any], pseudonyms: list[str]) -> dict[str, bytes]:
        rows = conn.execute(self.select_statement, (pseudonyms,)).fetchall()
        return {r[0]: bytes(r[1]) for r in rows}

    def erased(self, pseudonyms: Iterable[str]) -> set[str]:
        with self.pool.connection() as conn:
            return erased_keys(conn, self.keys, list(pseudonyms))

    def destroy(self, pseudonyms: Iterable[str]) -> None:
        with self.pool.connection() as conn, conn.transaction():
            destroy_keys(conn, self.tables, sorted(set(pseudonyms)))
        vacuum_keys(self.pool, self.tables)

    def start_lifecycle(self, lookup: str, pseudonym: str) -> bool:
        with self.pool.connection() as conn, conn.transaction():
            return name_lifecycles(conn, self.tables, {lookup: pseudonym})

    def holds_format_1(self) -> bool:
        with self.pool.connection() as conn:
            row = conn.execute(
                sql.SQL(
                    "SELECT EXISTS (SELECT 1 FROM {keys}) AND NOT EXISTS (SELECT 1 FROM {names}) "
                    "AND NOT EXISTS (SELECT 1 FROM {erasures})"
                ).format(keys=self.keys, names=self.tables.names, erasures=self.tables.erasures)
            ).fetchone()
        return bool(row and row[0])

    def wrapped_keys(self) -> Iterable[tuple[str, bytes]]:
        with self.pool.connection() as conn:
            rows = conn.execute(
                sql.SQL("SELECT pseudonym, wrapped FROM {} WHERE length(wrapped) > 0").format(
                    self.keys
                )
            ).fetchall()
        return [(str(r[0]), bytes(r[1])) for r in rows]

    def secrets(self) -> dict[str, bytes]:
        with self.pool.connection() as conn:
            rows = conn.execute(
                sql.SQL("SELECT name, wrapped FROM {}").format(self.secrets_table)
            ).fetchall()
        return {str(r[0]): bytes(r[1]) for r in rows}

    def replace_wrapped(self, keys: Mapping[str, bytes], secrets: Mapping[str, bytes]) -> None:
        with self.pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
            cur.executemany(
                sql.SQL("UPDATE {} SET wrapped = %s WHERE pseudonym = %s").format(self.keys),
                [(w, p) for p, w in sorted(keys.items())],
            )
            cur.executemany(
                sql.SQL("UPDATE {} SET wrapped = %s WHERE name = %s").format(self.secrets_table),
                [(w, n) for n, w in sorted(secrets.items())],
            )
        vacuum_keys(self.pool, self.tables)

    def get_secret(self, name: str) -> bytes | None:
        with self.pool.connection() as conn:
            row = conn.execute(
                sql.SQL("SELECT wrapped FROM {} WHERE name = %s").format(self.secrets_table),
                (name,),
            ).fetchone()
        return None if row is None else bytes(row[0])

    def put_secret_if_absent(self, name: str, wrapped: bytes) -> None:
        with self.pool.connection() as conn, conn.transaction():
            conn.execute(
                sql.SQL(
                    "INSERT INTO {} (name, wrapped) VALUES (%s, %s) ON CONFLICT DO NOTHING"
                ).format(self.secrets_table),
                (name, wrapped),
            )

    def close(self) -> None:
        """The pool belongs to the recorder, which closes it."""


def erased_keys(
    conn: psycopg.Connection[Any], keys: sql.Identifier, pseudonyms: list[str]
) -> set[str]:
    """Those of the pseudonyms whose key was destroyed (a tombstone: an empty wrapped key)."""
    if not pseudonyms:
        return set()
    rows = conn.execute(
        sql.SQL(
            "SELECT pseudonym FROM {} WHERE pseudonym = ANY(%s) AND length(wrapped) = 0"
        ).format(keys),
        (pseudonyms,),
    ).fetchall()
    return {str(r[0]) for r in rows}


def destroy_keys(conn: psycopg.Connection[Any], tables: KeyTables, pseudonyms: list[str]) -> None:
    """In the caller's transaction: replace the keys with tombstones, delete the names that
    pointed at them, and count an erasure for each of their lookup ids."""
    conn.execute(
        sql.SQL("DELETE FROM {} WHERE pseudonym = ANY(%s)").format(tables.keys), (pseudonyms,)
    )
    conn.execute(
        sql.SQL("INSERT INTO {} (pseudonym, wrapped) SELECT unnest(%s::text[]), ''::bytea").format(
            tables.keys
        ),
        (pseudonyms,),
    )
    conn.execute(
        sql.SQL(
            "WITH gone AS (DELETE FROM {names} WHERE pseudonym = ANY(%s) RETURNING lookup) "
            "INSERT INTO {erasures} (lookup, erasures) SELECT lookup, 1 FROM gone "
            "ON CONFLICT (lookup) DO UPDATE SET erasures = {erasures}.erasures + 1"
        ).format(names=tables.names, erasures=tables.erasures),
        (pseudonyms,),
    )


def name_lifecycles(
    conn: psycopg.Connection[Any], tables: KeyTables, lifecycles: Mapping[str, str]
) -> bool:
    """In the caller's transaction: name new lifecycles of references with no live one;
    False if one had a live name (another writer started it)."""
    if not lifecycles:
        return True
    lookups = sorted(lifecycles)
    row = conn.execute(
        sql.SQL(
            "WITH n AS (INSERT INTO {} (lookup, pseudonym) "
            "SELECT * FROM unnest(%s::text[], %s::text[]) ON CONFLICT DO NOTHING RETURNING 1) "
            "SELECT count(*) FROM n"
        ).format(tables.names),
        (lookups, [lifecycles[lookup] for lookup in lookups]),
    ).fetchone()
    return row is not None and int(row[0]) == len(lookups)


def vacuum_keys(pool: ConnectionPool, tables: KeyTables) -> None:
    """Reclaim the dead rows that still hold destroyed keys, deleted names or replaced keys
    (best effort)."""
    try:
        with pool.connection() as conn:
            for table in (tables.keys, tables.names):
                conn.execute(sql.SQL("VACUUM {}").format(table))
    except psycopg.Error:
        pass  # the next autovacuum does it; docs/operations.md says what backups keep
