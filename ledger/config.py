"""Ledger settings from the environment, and the one place that wires a ledger together.

===============================  ===========================  ================================
environment variable             default                      meaning
===============================  ===========================  ================================
CONSENT_LEDGER_DATA_DIR          ./consent-ledger-data        keys, master key, SQLite file
CONSENT_LEDGER_DATABASE_URL      (unset: SQLite)              postgresql://... to use PostgreSQL
CONSENT_LEDGER_DATABASE_SCHEMA   public                       PostgreSQL schema for the tables
CONSENT_LEDGER_KEYS_DIR          <data dir>/keys              Ed25519 signing keys
CONSENT_LEDGER_MASTER_KEY        (unset: the key file)        base64 master key (32 bytes)
CONSENT_LEDGER_MASTER_KEY_FILE   <data dir>/master.key        master key file, mode 0600
CONSENT_LEDGER_MINIMUM_AGE       18                           consent below it needs a guardian
CONSENT_LEDGER_BACKDATE_HOURS    24                           older facts are flagged backdated
CONSENT_LEDGER_MAX_BATCH         1000                         events per append
CONSENT_LEDGER_MAX_GROUP_EVENTS  2000                         events per shared commit
CONSENT_LEDGER_ORIGIN            (made up once, then kept)    the log's name in checkpoints
===============================  ===========================  ================================
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from ledger.application import LedgerApplication, Limits
from ledger.errors import KeyMaterialError, LedgerError
from ledger.merkle_log import Checkpointer
from ledger.recorder import LedgerRecorder
from ledger.signing import Keyring, generate_signing_key, load_signer, write_private_file
from ledger.subject_keys import (
    MASTER_KEY_ENV,
    KeyStore,
    SubjectKeys,
    load_master_key,
    new_master_key_text,
)

ENV_PREFIX = "CONSENT_LEDGER_"


class SettingsError(LedgerError):
    """A setting has a value the ledger cannot use; the message names the setting."""


@dataclass(frozen=True)
class Settings:
    data_dir: Path = Path("consent-ledger-data")
    database_url: str | None = None
    database_schema: str = "public"
    keys_dir_override: Path | None = None
    master_key_file_override: Path | None = None
    limits: Limits = field(default_factory=Limits)
    max_group_events: int = 2000
    """At most this many events share one commit (1 turns group commit off)."""
    origin: str | None = None
    """The log's name in its checkpoints; made up once and kept when not configured."""

    @property
    def keys_dir(self) -> Path:
        return self.keys_dir_override or self.data_dir / "keys"

    @property
    def master_key_file(self) -> Path:
        return self.master_key_file_override or self.data_dir / "master.key"

    @property
    def sqlite_path(self) -> Path:
        return self.data_dir / "ledger.sqlite3"

    @property
    def uses_postgres(self) -> bool:
        return self.database_url is not None

    def describe_storage(self) -> str:
        if self.database_url is None:
            return f"SQLite {self.sqlite_path}"
        return f"PostgreSQL (schema {self.database_schema})"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ

        def get(name: str) -> str | None:
            value = env.get(ENV_PREFIX + name)
            return value if value not in (None, "") else None

        def integer(name: str, default: int, low: int, high: int) -> int:
            raw = get(name)
            if raw is None:
                return default
            try:
                value = int(raw)
            except ValueError:
                raise SettingsError(f"{ENV_PREFIX}{name}={raw!r} is not an integer") from None
            if not low <= value <= high:
                raise SettingsError(f"{ENV_PREFIX}{name}={value} is outside {low}..{high}")
            return value

        url = get("DATABASE_URL")
        if url is not None and not re.match(r"^postgres(ql)?://", url):
            raise SettingsError(
                f"{ENV_PREFIX}DATABASE_URL must start with postgresql:// (SQLite needs no URL)"
            )
        schema = get("DATABASE_SCHEMA") or "public"
        if not re.match(r"^[a-z_][a-z0-9_]{0,62}$", schema):
            raise SettingsError(f"{ENV_PREFIX}DATABASE_SCHEMA={schema!r} is not a plain identifier")
        keys_dir = get("KEYS_DIR")
        master_file = get("MASTER_KEY_FILE")
        return cls(
            data_dir=Path(get("DATA_DIR") or "consent-ledger-data"),
            database_url=url,
            database_schema=schema,
            keys_dir_override=Path(keys_dir) if keys_dir else None,
            master_key_file_override=Path(master_file) if master_file else None,
            max_group_events=integer("MAX_GROUP_EVENTS", 2000, 1, 100_000),
            origin=get("ORIGIN"),
            limits=Limits(
                max_batch=integer("MAX_BATCH", 1000, 1, 100_000),
                minimum_age=integer("MINIMUM_AGE", 18, 0, 21),
                backdate_tolerance=timedelta(hours=integer("BACKDATE_HOURS", 24, 0, 24 * 3650)),
            ),
        )


def generate_keys(settings: Settings, *, rotate: bool = False) -> list[str]:
    """Create what a new ledger needs: a signing key and, unless configured, a master key.

    With ``rotate``, add a new signing key and make it the active one (old public keys stay).
    Returns what was created, one line each.
    """
    created: list[str] = []
    if rotate or not (settings.keys_dir / "active").exists():
        key_id = generate_signing_key(settings.keys_dir)
        created.append(f"signing key {key_id} in {settings.keys_dir}")
    if MASTER_KEY_ENV not in os.environ and not settings.master_key_file.exists():
        write_private_file(settings.master_key_file, new_master_key_text())
        created.append(f"master key {settings.master_key_file}")
    return created


def open_ledger(settings: Settings, *, create_keys: bool | None = None) -> LedgerApplication:
    """A ready ledger on the configured storage.

    On the embedded default (SQLite) a first start creates the data directory and keys; with
    PostgreSQL, keys must exist first (``consent-ledger keygen``), so that several processes
    never invent different keys.
    """
    if create_keys is None:
        create_keys = not settings.uses_postgres
    if create_keys:
        generate_keys(settings)
    signer = load_signer(settings.keys_dir)
    master_key = load_master_key(settings.master_key_file)
    recorder: LedgerRecorder
    store: KeyStore
    if settings.database_url is None:
        from ledger.sqlite import SQLiteKeyStore, SQLiteLedgerRecorder

        store = SQLiteKeyStore(settings.sqlite_path.with_name("keystore.sqlite3"))
        recorder = SQLiteLedgerRecorder(
            settings.sqlite_path, signer, store, max_group_events=settings.max_group_events
        )
    else:
        from ledger.postgres import PostgresKeyStore, PostgresLedgerRecorder, create_pool

        pool = create_pool(settings.database_url)
        store = PostgresKeyStore(pool, schema=settings.database_schema)
        recorder = PostgresLedgerRecorder(
            pool,
            signer,
            store,
            schema=settings.database_schema,
            max_group_events=settings.max_group_events,
        )
    try:
        subject_keys = SubjectKeys(store, master_key)
        recorder.build_tree()  # a log from before the tree was kept gets its nodes once
        checkpointer = Checkpointer(signer, recorder.origin(settings.origin))
    except LedgerError:
        recorder.close()
        raise
    return LedgerApplication(recorder, subject_keys, settings.limits, checkpointer=checkpointer)


def load_keyring(settings: Settings) -> Keyring:
    keyring = Keyring.from_directory(settings.keys_dir)
    if not keyring.public_keys:
        raise KeyMaterialError(f"no public keys in {settings.keys_dir}")
    return keyring
