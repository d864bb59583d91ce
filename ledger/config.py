"""Ledger settings from the environment, and the one place that wires a ledger together.

Every setting, with its default and its command-line flag, is in ``docs/configuration.md``;
``tests/unit/ledger/test_config_docs.py`` keeps that table and :data:`VARIABLES` in step.

Each value is checked when it is read (:class:`Environment`): a bad one stops start-up with a
:class:`SettingsError` whose message names the environment variable, and never repeats the
value of a secret (the master key) or a database URL (it may hold a password).
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

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

VARIABLES = (
    "DATA_DIR",
    "DATABASE_URL",
    "DATABASE_SCHEMA",
    "KEYS_DIR",
    "MASTER_KEY",
    "MASTER_KEY_FILE",
    "MINIMUM_AGE",
    "BACKDATE_HOURS",
    "MAX_BATCH",
    "MAX_GROUP_EVENTS",
    "ORIGIN",
)
"""The variables :meth:`Settings.from_env` reads (without the ``CONSENT_LEDGER_`` prefix)."""

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


class SettingsError(LedgerError):
    """A setting has a value the ledger cannot use; the message names the setting."""


class Environment:
    """Typed, checked reads of ``CONSENT_LEDGER_*`` variables; an empty value counts as unset.

    Every method raises :class:`SettingsError` naming the variable when its value is unusable.
    """

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self.environ = os.environ if environ is None else environ

    @staticmethod
    def name(name: str) -> str:
        return ENV_PREFIX + name

    def text(self, name: str) -> str | None:
        value = self.environ.get(ENV_PREFIX + name)
        return value if value not in (None, "") else None

    def integer(self, name: str, default: int, low: int, high: int) -> int:
        raw = self.text(name)
        if raw is None:
            return default
        try:
            value = int(raw.strip())
        except ValueError:
            raise SettingsError(f"{ENV_PREFIX}{name}={raw!r} is not an integer") from None
        if not low <= value <= high:
            raise SettingsError(f"{ENV_PREFIX}{name}={value} is outside {low}..{high}")
        return value

    def number(self, name: str, default: float, low: float, high: float) -> float:
        raw = self.text(name)
        if raw is None:
            return default
        try:
            value = float(raw.strip())
        except ValueError:
            raise SettingsError(f"{ENV_PREFIX}{name}={raw!r} is not a number") from None
        if not low <= value <= high:  # also refuses nan
            raise SettingsError(f"{ENV_PREFIX}{name}={raw!r} is outside {low:g}..{high:g}")
        return value

    def flag(self, name: str, default: bool) -> bool:
        raw = self.text(name)
        if raw is None:
            return default
        if raw.strip().lower() in _TRUE:
            return True
        if raw.strip().lower() in _FALSE:
            return False
        raise SettingsError(f"{ENV_PREFIX}{name}={raw!r} is not true or false (or 1 or 0)")

    def choice(self, name: str, default: str, choices: tuple[str, ...]) -> str:
        raw = self.text(name)
        if raw is None:
            return default
        if raw.strip().lower() not in choices:
            raise SettingsError(f"{ENV_PREFIX}{name}={raw!r} is not one of {', '.join(choices)}")
        return raw.strip().lower()

    def directory(self, name: str) -> Path | None:
        """A directory: it may not exist yet, but what exists must be a readable directory."""
        raw = self.text(name)
        if raw is None:
            return None
        path = Path(raw)
        if path.exists() and not path.is_dir():
            raise SettingsError(f"{ENV_PREFIX}{name}={raw} is not a directory")
        if path.is_dir() and not os.access(path, os.R_OK | os.X_OK):
            raise SettingsError(f"{ENV_PREFIX}{name}={raw} is not readable by this user")
        return path

    def file(self, name: str, *, must_exist: bool = False) -> Path | None:
        """A file: when it exists (or must), a regular file this user can read."""
        raw = self.text(name)
        if raw is None:
            return None
        path = Path(raw)
        if not path.exists():
            if must_exist:
                raise SettingsError(f"{ENV_PREFIX}{name}={raw}: no such file")
            return path
        if not path.is_file():
            raise SettingsError(f"{ENV_PREFIX}{name}={raw} is not a regular file")
        if not os.access(path, os.R_OK):
            raise SettingsError(f"{ENV_PREFIX}{name}={raw} is not readable by this user")
        return path


def check_database_url(url: str, setting: str = ENV_PREFIX + "DATABASE_URL") -> str:
    """A PostgreSQL URL, or :class:`SettingsError`; the URL itself is never repeated."""
    if not re.match(r"^postgres(ql)?://", url):
        raise SettingsError(f"{setting} must start with postgresql:// (SQLite needs no URL)")
    if any(c.isspace() for c in url):
        raise SettingsError(f"{setting} contains white space")
    try:
        urlsplit(url).port  # noqa: B018 (reading it checks it)
    except ValueError:
        raise SettingsError(f"{setting} has a port that is not a number 0..65535") from None
    return url


def check_schema(schema: str, setting: str = ENV_PREFIX + "DATABASE_SCHEMA") -> str:
    if not re.match(r"^[a-z_][a-z0-9_]{0,62}$", schema):
        raise SettingsError(f"{setting}={schema!r} is not a plain identifier")
    return schema


def _check_master_key(env: Environment) -> None:
    """The master key given as a value: base64 of 32 bytes (the value never appears)."""
    raw = env.environ.get(MASTER_KEY_ENV)
    if raw is None:
        return
    try:
        size = len(base64.b64decode(raw.strip(), validate=True))
    except (binascii.Error, ValueError):
        raise SettingsError(f"{MASTER_KEY_ENV} is not base64 (its value is not shown)") from None
    if size != 32:
        raise SettingsError(f"{MASTER_KEY_ENV} holds {size} bytes; a master key is 32")


def _check_origin(origin: str | None) -> str | None:
    if origin is not None and (
        origin != origin.strip() or not origin.isprintable() or len(origin) > 255
    ):
        raise SettingsError(
            f"{ENV_PREFIX}ORIGIN={origin!r} must be one line of at most 255 printable "
            "characters, no edge spaces (like ledger.example.org/consents)"
        )
    return origin


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
        """The ``CONSENT_LEDGER_*`` settings; a bad one raises :class:`SettingsError`."""
        env = Environment(environ)
        url = env.text("DATABASE_URL")
        if url is not None:
            check_database_url(url)
        _check_master_key(env)
        return cls(
            data_dir=env.directory("DATA_DIR") or Path("consent-ledger-data"),
            database_url=url,
            database_schema=check_schema(env.text("DATABASE_SCHEMA") or "public"),
            keys_dir_override=env.directory("KEYS_DIR"),
            master_key_file_override=env.file("MASTER_KEY_FILE"),
            max_group_events=env.integer("MAX_GROUP_EVENTS", 2000, 1, 100_000),
            origin=_check_origin(env.text("ORIGIN")),
            limits=Limits(
                max_batch=env.integer("MAX_BATCH", 1000, 1, 100_000),
                minimum_age=env.integer("MINIMUM_AGE", 18, 0, 21),
                backdate_tolerance=timedelta(hours=env.integer("BACKDATE_HOURS", 24, 0, 24 * 3650)),
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
