"""Ledger settings from the environment, and the one place that wires a ledger together.

Every setting, with its default and its command-line flag, is in ``docs/configuration.md``.
Each is declared once, in a :class:`SettingGroup` of the layer that uses it
(:data:`LEDGER_SETTINGS` here, ``projections.read_models.READ_MODEL_SETTINGS``,
``api.http.app.SERVER_SETTINGS``), and read by the one parser, :class:`Environment`; the tables in
``docs/configuration.md`` are generated from the groups (``python -m api.bootstrap --docs``),
and ``tests/unit/ledger/test_config_docs.py`` fails when they differ.

Each value is checked when it is read (:class:`Environment`): a bad one stops start-up with a
:class:`SettingsError` whose message names the environment variable, and never repeats the
value of a secret (the master key) or a database URL (it may hold a password).
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ledger.application import LedgerApplication, Limits
from ledger.committer import CommitterAddress, CommitterLink
from ledger.errors import KeyMaterialError, LedgerError
from ledger.merkle_log import Checkpointer
from ledger.signing import Keyring, generate_signing_key, write_private_file
from ledger.storage import StorageSpec, open_recorder
from ledger.subject_keys import (
    MASTER_KEY_ENV,
    SubjectKeys,
    load_master_key,
    new_master_key_text,
)

ENV_PREFIX = "CONSENT_LEDGER_"

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

    def whole(self, name: str, default: int, low: int, high: int) -> int:
        """Digits only, no sign or spaces (the read models' settings have always been so)."""
        raw = self.text(name) or str(default)
        if not raw.isdigit() or not low <= int(raw) <= high:
            raise SettingsError(f"{ENV_PREFIX}{name}={raw!r} must be a whole number {low}..{high}")
        return int(raw)

    def read(self, setting: Setting) -> Any:
        """The checked value of one declared setting (its default when unset)."""
        name, kind = setting.env, setting.kind
        value: Any
        if kind == "integer":
            value = self.integer(name, setting.default, setting.low, setting.high)
        elif kind == "whole":
            value = self.whole(name, setting.default, setting.low, setting.high)
        elif kind == "flag":
            value = self.flag(name, setting.default)
        elif kind == "choice":
            value = self.choice(name, setting.default, setting.choices)
        elif kind == "text":
            value = self.text(name)
        elif kind == "directory":
            value = self.directory(name)
        elif kind in ("file", "existing_file"):
            value = self.file(name, must_exist=kind == "existing_file")
        elif kind == "secret":  # as given, even empty: it is checked, never kept
            value = self.environ.get(ENV_PREFIX + name)
        else:
            raise ValueError(f"{setting.variable}: no reader for kind {kind!r}")
        if value is None and kind != "secret":
            value = setting.default
        if setting.check is not None:
            value = setting.check(value)
        return None if kind == "secret" else value

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


def _check_master_key(raw: str | None) -> None:
    """The master key given as a value: base64 of 32 bytes (the value never appears)."""
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


Check = Callable[[Any], Any]


@dataclass(frozen=True)
class Setting:
    """One ``CONSENT_LEDGER_*`` variable: how it is read and checked, and its docs table row.

    ``kind`` names the :class:`Environment` reader (``integer``, ``whole``, ``flag``,
    ``choice``, ``text``, ``directory``, ``file``, ``existing_file``, or ``secret``: checked
    but never kept); an unset variable takes ``default``; ``check`` runs on the value (the
    default included) and may raise :class:`SettingsError`.
    """

    env: str
    """The variable, without the ``CONSENT_LEDGER_`` prefix."""
    field: str
    """The attribute of the group's settings object it fills (empty: checked, not kept)."""
    kind: str
    default: Any
    help: str
    """Its "what it does" cell in docs/configuration.md."""
    low: int = 0
    high: int = 0
    choices: tuple[str, ...] = ()
    check: Check | None = None
    flag: str = ""
    """The command-line flag that wins over the variable, if any (docs only)."""
    shown_default: str | None = None
    """The default cell in the docs when ``default`` itself would not say it."""

    @property
    def variable(self) -> str:
        return ENV_PREFIX + self.env

    def text(self, value: Any) -> str | None:
        """``value`` as this variable would hold it (None: leave it unset)."""
        if value is None:
            return None
        if isinstance(value, bool):
            return "true" if value else "false"
        return str(value)

    def default_cell(self) -> str:
        if self.shown_default is not None:
            return self.shown_default
        if self.default is None:
            return "unset"
        return f"`{self.text(self.default)}`"


@dataclass(frozen=True)
class SettingGroup:
    """The settings one layer reads; each layer declares its own, all read by one parser."""

    title: str
    """Its heading in docs/configuration.md."""
    settings: tuple[Setting, ...]

    @property
    def variables(self) -> tuple[str, ...]:
        return tuple(s.env for s in self.settings)

    def read(self, environ: Mapping[str, str] | None = None) -> dict[str, Any]:
        """Every setting's checked value by field; the first bad one raises SettingsError."""
        env = Environment(environ)
        values: dict[str, Any] = {}
        for setting in self.settings:
            value = env.read(setting)
            if setting.field:
                values[setting.field] = value
        return values

    def environment(self, settings: object) -> dict[str, str]:
        """A settings object of this group as the variables :meth:`read` takes back."""
        values = {s.variable: s.text(getattr(settings, s.field)) for s in self.settings if s.field}
        return {name: value for name, value in values.items() if value is not None}

    def markdown(self) -> str:
        """This group's table in docs/configuration.md, heading first."""
        lines = [
            f"### {self.title}",
            "",
            "| environment variable | flag | default | what it does |",
            "|---|---|---|---|",
        ]
        for s in self.settings:
            flag = f" `{s.flag}` " if s.flag else " "
            lines.append(f"| `{s.variable}` |{flag}| {s.default_cell()} | {s.help} |")
        return "\n".join(lines) + "\n"


def markdown_tables(groups: Sequence[SettingGroup]) -> str:
    """The settings tables of docs/configuration.md, generated from the declarations."""
    return "\n".join(group.markdown() for group in groups)


def _optional(check: Check) -> Check:
    return lambda value: None if value is None else check(value)


LEDGER_SETTINGS = SettingGroup(
    "The ledger (every command)",
    (
        Setting(
            "DATA_DIR",
            "data_dir",
            "directory",
            Path("consent-ledger-data"),
            "SQLite files; with no key paths set, the keys and master key too. Must be a "
            "directory if it exists",
            flag="--data-dir",
            shown_default="`./consent-ledger-data`",
        ),
        Setting(
            "DATABASE_URL",
            "database_url",
            "text",
            None,
            "`postgresql://user@host:port/db` to use PostgreSQL. Put no password here: use "
            "`PGPASSFILE` (below)",
            check=_optional(lambda url: check_database_url(url)),
            flag="--database-url",
            shown_default="unset: SQLite",
        ),
        Setting(
            "DATABASE_SCHEMA",
            "database_schema",
            "text",
            "public",
            "PostgreSQL schema for the ledger's tables, the read models and the API clients "
            "(a plain lower-case identifier)",
            check=lambda schema: check_schema(schema),
        ),
        Setting(
            "KEYS_DIR",
            "keys_dir_override",
            "directory",
            None,
            "Ed25519 signing keys: `<key id>.key` (mode 0600), `<key id>.pub`, `active`. Must "
            "be a readable directory if it exists",
            shown_default="`<data dir>/keys`",
        ),
        Setting(
            "MASTER_KEY",
            "",
            "secret",
            None,
            "the master key itself, base64 of 32 bytes; wins over the file. Prefer the file: "
            "variables leak into process listings and crash reports",
            check=lambda raw: _check_master_key(raw),
        ),
        Setting(
            "MASTER_KEY_FILE",
            "master_key_file_override",
            "file",
            None,
            "the master key file, mode 0600 (a secret file in compose). Must be a readable "
            "regular file if it exists",
            shown_default="`<data dir>/master.key`",
        ),
        Setting(
            "MINIMUM_AGE",
            "minimum_age",
            "integer",
            18,
            "below this attested age a subject is a minor: their own consent is refused, a "
            "guardian's is valid only under a policy version with `guardian_consent_allowed` "
            "(0..21; a policy version can set its own age)",
            low=0,
            high=21,
        ),
        Setting(
            "BACKDATE_HOURS",
            "backdate_hours",
            "integer",
            24,
            "facts older than this when recorded are flagged `backdated` (0..87600)",
            low=0,
            high=24 * 3650,
        ),
        Setting(
            "MAX_BATCH",
            "max_batch",
            "integer",
            1000,
            "events per append request (1..100000)",
            low=1,
            high=100_000,
        ),
        Setting(
            "MAX_GROUP_EVENTS",
            "max_group_events",
            "integer",
            2000,
            "at most this many events share one commit; `1` turns group commit off (1..100000)",
            low=1,
            high=100_000,
        ),
        Setting(
            "MAX_PENDING_EVENTS",
            "max_pending_events",
            "integer",
            2000,
            "events in flight (admitted, not yet committed) a process admits; past it an append "
            "is refused at once, `503` with `Retry-After` over HTTP (a larger batch alone is "
            "admitted) (1..1000000)",
            low=1,
            high=1_000_000,
        ),
        Setting(
            "ORIGIN",
            "origin",
            "text",
            None,
            "the log's name in its checkpoints, like `ledger.example.org/consents`; fixed at "
            "the first start",
            check=lambda origin: _check_origin(origin),
            shown_default="made up once, then kept",
        ),
    ),
)

VARIABLES = LEDGER_SETTINGS.variables
"""The variables :meth:`Settings.from_env` reads (without the ``CONSENT_LEDGER_`` prefix)."""


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
    max_pending_events: int = 2000
    """At most this many events in flight in a process; past it appends are refused at once."""
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

    def storage(self) -> StorageSpec:
        """Where the log and its key store are, as plain values (:mod:`ledger.storage`)."""
        return StorageSpec(
            keys_dir=self.keys_dir,
            sqlite_path=self.sqlite_path,
            database_url=self.database_url,
            database_schema=self.database_schema,
            max_group_events=self.max_group_events,
            max_pending_events=self.max_pending_events,
        )

    def describe_storage(self) -> str:
        if self.database_url is None:
            return f"SQLite {self.sqlite_path}"
        return f"PostgreSQL (schema {self.database_schema})"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """The ``CONSENT_LEDGER_*`` settings; a bad one raises :class:`SettingsError`."""
        values = LEDGER_SETTINGS.read(environ)
        limits = Limits(
            max_batch=values.pop("max_batch"),
            minimum_age=values.pop("minimum_age"),
            backdate_tolerance=timedelta(hours=values.pop("backdate_hours")),
        )
        return cls(limits=limits, **values)


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


def open_ledger(
    settings: Settings,
    *,
    create_keys: bool | None = None,
    committer: CommitterAddress | None = None,
) -> LedgerApplication:
    """A ready ledger on the configured storage.

    On the embedded default (SQLite) a first start creates the data directory and keys; with
    PostgreSQL, keys must exist first (``consent-ledger keygen``), so that several processes
    never invent different keys. With ``committer``, appends are committed by that committer
    process (:mod:`ledger.committer`) instead of in this one.
    """
    if create_keys is None:
        create_keys = not settings.uses_postgres
    if create_keys:
        generate_keys(settings)
    master_key = load_master_key(settings.master_key_file)
    recorder = open_recorder(settings.storage())
    store = recorder.key_store
    if committer is not None:
        recorder.link = CommitterLink(committer)
    try:
        subject_keys = SubjectKeys(store, master_key)
        recorder.build_tree()  # a log from before the tree was kept gets its nodes once
        checkpointer = Checkpointer(recorder.signer, recorder.origin(settings.origin))
    except LedgerError:
        recorder.close()
        raise
    return LedgerApplication(recorder, subject_keys, settings.limits, checkpointer=checkpointer)


def load_keyring(settings: Settings) -> Keyring:
    keyring = Keyring.from_directory(settings.keys_dir)
    if not keyring.public_keys:
        raise KeyMaterialError(f"no public keys in {settings.keys_dir}")
    return keyring
