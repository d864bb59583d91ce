"""The token store: API clients, their bearer tokens (stored hashed) and scopes.

:class:`TokenStore` is the port the HTTP app and the ``clients`` commands use;
:class:`SqlTokenStore` is its adapter over the read models' database (``api.sqlite3``, or the
ledger's PostgreSQL schema): every statement about clients lives in it.

A token is 32 random bytes (``cl_`` + URL-safe base64), shown once when the client is added;
only its SHA-256 is stored (a token this random needs no slow hash), so a copy of the database
lets no one call the API. Revoking keeps the row, so the history of who had access stays.

A token the database confirmed as live in the last :data:`VERIFIED_SECONDS` is taken as live
without asking it again (:meth:`TokenStore.recently_verified`), so a busy client costs one
query a second, not one a request. A revocation or a key registered by another process (the
``clients`` commands) therefore takes effect within that second; in the revoking process at
once. Unknown and revoked tokens are never remembered: they are looked up every time.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import threading
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

from ledger.errors import LedgerError
from projections.database import ProjectionDatabase

TOKEN_PREFIX = "cl_"  # noqa: S105 (a prefix, not a secret)
VERIFIED_SECONDS = 1.0
"""How long a token the database confirmed as live is taken as live without asking again."""
VERIFIED_MAX = 1024
"""How many verified tokens are remembered (the oldest verified is forgotten first)."""


class Scope(StrEnum):
    WRITE_EVENTS = "events:write"
    READ_STATE = "state:read"
    READ_HISTORY = "history:read"
    """Histories, disclosures, exports: what a regulator or the privacy team reads."""
    MANAGE_INCIDENTS = "incidents:manage"
    IDENTIFY_SUBJECTS = "incidents:identify"
    """The people an incident affects, their references and contact data opened, to notify
    them. Never implied by ``admin``: whoever may open a breach's list of people is named."""
    CREATE_EXPORTS = "exports:create"
    """Bundles over HTTP (``POST /v1/exports``)."""
    READ_RECEIPTS = "receipts:read"
    """Consent receipts, each with its subject's own data opened, to hand to that person."""
    ACK_NOTICES = "notices:ack"  # a recipient acknowledges its notices (docs/notices.md)
    ADMIN = "admin"


GRANTED_BY_NAME = frozenset({Scope.IDENTIFY_SUBJECTS})
"""Scopes that ``admin`` does not imply: a client has them only when given them by name."""


class ClientError(LedgerError):
    """A client cannot be added or revoked as asked."""


class AdminTokenError(ClientError):
    """The admin token file's token belongs to a client that is revoked or lacks the admin
    scope: the file must not bring back or widen what someone took away."""

    def __init__(self, owner: str, revoked_at: str | None) -> None:
        self.owner = owner
        self.revoked_at = revoked_at
        super().__init__(
            f"the token belongs to client {owner}, "
            + (f"revoked at {revoked_at}" if revoked_at else "which lacks the admin scope")
        )


@dataclass(frozen=True)
class Client:
    client_id: str
    name: str
    scopes: frozenset[Scope]
    created_at: str
    revoked_at: str | None
    public_key: bytes | None = None
    """The client's Ed25519 key: once set, every append it sends must be signed."""

    def allows(self, scope: Scope) -> bool:
        if self.revoked_at is not None:
            return False
        if scope in self.scopes:
            return True
        return Scope.ADMIN in self.scopes and scope not in GRANTED_BY_NAME


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class TokenStore(ABC):
    """Where clients and their hashed tokens are kept (the port)."""

    @abstractmethod
    def add(self, name: str, scopes: list[Scope]) -> tuple[Client, str]:
        """A new client and its token (the only time the token is seen)."""

    @abstractmethod
    def authenticate(self, token: str) -> Client | None:
        """The client a token belongs to, revoked or not; None for an unknown token."""

    @abstractmethod
    def recently_verified(self, token: str) -> Client | None:
        """The live client of a token confirmed live very recently; None when there is none
        (then ask :meth:`authenticate`). No I/O."""

    @abstractmethod
    def find_by_name(self, name: str) -> Client | None: ...

    @abstractmethod
    def list(self) -> list[Client]: ...

    @abstractmethod
    def set_key(self, name: str, public_key: str) -> Client:
        """Register the client's Ed25519 public key (base64 of 32 bytes)."""

    @abstractmethod
    def revoke(self, name: str) -> Client: ...

    @abstractmethod
    def ensure_admin(self, token: str, name_prefix: str) -> str:
        """Make ``token`` a live admin token; the client's name (``name_prefix`` and the
        start of the token's hash). The clients of earlier tokens with that prefix are
        revoked; a token of a revoked client, or of one without the admin scope, raises
        :class:`AdminTokenError`."""

    @abstractmethod
    def close(self) -> None: ...


class SqlTokenStore(TokenStore):
    """The token store in a SQL database (the read models' own)."""

    def __init__(
        self,
        db: ProjectionDatabase,
        verified_seconds: float = VERIFIED_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.db = db
        self.verified_seconds = verified_seconds
        self._clock = clock
        self._verified: dict[str, tuple[Client, float]] = {}
        """Token hash -> its live client, and when the database said so (oldest first)."""
        self._verified_lock = threading.Lock()
        with db.transaction() as sql:
            db.lock_schema(sql)
            sql.execute(
                "CREATE TABLE IF NOT EXISTS api_clients (client_id TEXT PRIMARY KEY, "
                "name TEXT NOT NULL UNIQUE, token_hash TEXT NOT NULL UNIQUE, "
                "scopes TEXT NOT NULL, created_at TEXT NOT NULL, revoked_at TEXT, public_key TEXT)"
            )
            # Tables from before clients could register keys get the column.
            columns = {
                str(row[0]).lower()
                for row in sql.execute(
                    "SELECT name FROM pragma_table_info('api_clients')"
                    if db.dialect == "sqlite"
                    else "SELECT column_name FROM information_schema.columns "
                    "WHERE table_name = 'api_clients' AND table_schema = current_schema()"
                )
            }
            if "public_key" not in columns:
                sql.execute("ALTER TABLE api_clients ADD COLUMN public_key TEXT")

    def add(self, name: str, scopes: list[Scope]) -> tuple[Client, str]:
        """A new client and its token (the only time the token is seen)."""
        if not name or len(name) > 100 or not name.isprintable():
            raise ClientError("a client name is 1 to 100 printable characters")
        if not scopes:
            raise ClientError("a client needs at least one scope")
        if self.find_by_name(name) is not None:
            raise ClientError(f"a client named {name!r} exists already")
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        client = Client(str(uuid.uuid4()), name, frozenset(scopes), _now(), None)
        with self.db.transaction() as sql:
            sql.execute(
                "INSERT INTO api_clients (client_id, name, token_hash, scopes, created_at) "
                "VALUES (?, ?, ?, ?, ?)",
                (
                    client.client_id,
                    name,
                    hash_token(token),
                    " ".join(sorted(scopes)),
                    client.created_at,
                ),
            )
        return client, token

    def authenticate(self, token: str) -> Client | None:
        """The client a token belongs to, revoked or not; None for an unknown token.

        Asks the database; a live client is remembered for :meth:`recently_verified`.
        """
        digest = hash_token(token)
        asked_at = self._clock()  # the row read is at least this fresh
        rows = self.db.query(
            "SELECT client_id, name, scopes, created_at, revoked_at, public_key FROM api_clients "
            "WHERE token_hash = ?",
            (digest,),
        )
        client = _client(rows[0]) if rows else None
        with self._verified_lock:
            self._verified.pop(digest, None)
            if client is not None and client.revoked_at is None:
                self._verified[digest] = (client, asked_at)
                while len(self._verified) > VERIFIED_MAX:
                    del self._verified[next(iter(self._verified))]
        return client

    def recently_verified(self, token: str) -> Client | None:
        """The live client of a token the database confirmed less than ``verified_seconds``
        ago; None when there is none (then ask :meth:`authenticate`). No I/O."""
        found = self._verified.get(hash_token(token))
        if found is None or self._clock() - found[1] >= self.verified_seconds:
            return None
        return found[0]

    def _forget(self, name: str) -> None:
        """Forget the verified tokens of client ``name`` (revoked, or its key changed)."""
        with self._verified_lock:
            for digest in [d for d, (c, _) in self._verified.items() if c.name == name]:
                del self._verified[digest]

    def find_by_name(self, name: str) -> Client | None:
        rows = self.db.query(
            "SELECT client_id, name, scopes, created_at, revoked_at, public_key FROM api_clients "
            "WHERE name = ?",
            (name,),
        )
        return _client(rows[0]) if rows else None

    def list(self) -> list[Client]:
        rows = self.db.query(
            "SELECT client_id, name, scopes, created_at, revoked_at, public_key FROM api_clients "
            "ORDER BY name"
        )
        return [_client(row) for row in rows]

    def set_key(self, name: str, public_key: str) -> Client:
        """Register the client's Ed25519 public key (base64 of 32 bytes)."""
        try:
            raw = base64.b64decode(public_key, validate=True)
        except ValueError:
            raise ClientError("the public key is not base64") from None
        if len(raw) != 32:
            raise ClientError(f"an Ed25519 public key is 32 bytes, not {len(raw)}")
        if self.find_by_name(name) is None:
            raise ClientError(f"no client named {name!r}")
        with self.db.transaction() as sql:
            sql.execute("UPDATE api_clients SET public_key = ? WHERE name = ?", (public_key, name))
        self._forget(name)
        client = self.find_by_name(name)
        assert client is not None
        return client

    def revoke(self, name: str) -> Client:
        client = self.find_by_name(name)
        if client is None:
            raise ClientError(f"no client named {name!r}")
        if client.revoked_at is None:
            with self.db.transaction() as sql:
                sql.execute("UPDATE api_clients SET revoked_at = ? WHERE name = ?", (_now(), name))
        self._forget(name)
        revoked = self.find_by_name(name)
        assert revoked is not None
        return revoked

    def ensure_admin(self, token: str, name_prefix: str) -> str:
        digest = hash_token(token)
        with self.db.transaction() as sql:
            self.db.lock_schema(sql)
            rows = sql.execute(
                "SELECT name, scopes, revoked_at FROM api_clients WHERE token_hash = ?", (digest,)
            )
            if rows:
                owner, scopes, revoked_at = rows[0]
                if revoked_at is not None or Scope.ADMIN.value not in str(scopes).split():
                    raise AdminTokenError(
                        str(owner), None if revoked_at is None else str(revoked_at)
                    )
                return str(owner)
            now = _now()
            sql.execute(
                "UPDATE api_clients SET revoked_at = ? WHERE revoked_at IS NULL AND name LIKE ?",
                (now, name_prefix + "%"),
            )
            name = name_prefix + digest[:12]
            sql.execute(
                "INSERT INTO api_clients (client_id, name, token_hash, scopes, created_at) "
                "VALUES (?, ?, ?, ?, ?)",
                (str(uuid.uuid4()), name, digest, Scope.ADMIN.value, now),
            )
        return name

    def close(self) -> None:
        self.db.close()


def _client(row: tuple[object, ...]) -> Client:
    client_id, name, scopes, created_at, revoked_at, public_key = row
    return Client(
        str(client_id),
        str(name),
        frozenset(Scope(s) for s in str(scopes).split()),
        str(created_at),
        None if revoked_at is None else str(revoked_at),
        None if public_key is None else base64.b64decode(str(public_key)),
    )


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
