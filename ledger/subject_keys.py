"""Per-subject keys: pseudonyms, sealing personal data, and the wrapped key store.

- The *master key* (32 bytes) comes from configuration: the ``CONSENT_LEDGER_MASTER_KEY``
  environment variable (base64) or a key file (mode 0600). It is never written to a database.
- Each subject has a random 32-byte key, stored *wrapped* (XChaCha20-Poly1305 under the master
  key, the pseudonym as associated data) in a key store kept apart from the event log.
- A subject is named in the log only by a *pseudonym*: HMAC-SHA256 of the emitter's reference
  under a ledger secret (itself wrapped in the key store), cut to a UUID.
- A personal-data value is *sealed*: XChaCha20-Poly1305 under the subject key, with the event's
  identity (stream, stream version, field path) as associated data, so a ciphertext moved to
  another event or field no longer opens. Sealed values read ``sealed:v1:<base64 nonce|ct>``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import threading
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Iterable
from pathlib import Path
from uuid import UUID

from nacl import bindings
from nacl.exceptions import CryptoError

from ledger.errors import KeyMaterialError

KEY_BYTES = 32
NONCE_BYTES = bindings.crypto_aead_xchacha20poly1305_ietf_NPUBBYTES
SEALED_PREFIX = "sealed:v1:"
MASTER_KEY_ENV = "CONSENT_LEDGER_MASTER_KEY"
PSEUDONYM_SECRET_NAME = "pseudonym-secret"  # noqa: S105 (a name, not a secret)


class SealError(ValueError):
    """A sealed value does not open: wrong key, wrong event or field, or altered bytes."""


def encrypt(key: bytes, plaintext: bytes, aad: bytes) -> bytes:
    nonce = os.urandom(NONCE_BYTES)
    return nonce + bindings.crypto_aead_xchacha20poly1305_ietf_encrypt(plaintext, aad, nonce, key)


def decrypt(key: bytes, sealed: bytes, aad: bytes) -> bytes:
    if len(sealed) < NONCE_BYTES + 16:
        raise SealError("sealed value is too short")
    nonce, ciphertext = sealed[:NONCE_BYTES], sealed[NONCE_BYTES:]
    try:
        return bytes(
            bindings.crypto_aead_xchacha20poly1305_ietf_decrypt(ciphertext, aad, nonce, key)
        )
    except CryptoError:
        raise SealError("sealed value does not open with this key and event identity") from None


def event_aad(stream: UUID | str, stream_version: int, path: str) -> bytes:
    """The associated data that binds a sealed value to one field of one event."""
    return f"consent-ledger/pd/v1|{stream}|{stream_version}|{path}".encode()


def seal_text(key: bytes, plaintext: str, aad: bytes) -> str:
    return SEALED_PREFIX + base64.b64encode(encrypt(key, plaintext.encode(), aad)).decode()


def open_text(key: bytes, sealed: str, aad: bytes) -> str:
    if not sealed.startswith(SEALED_PREFIX):
        raise SealError("value is not sealed")
    try:
        raw = base64.b64decode(sealed[len(SEALED_PREFIX) :], validate=True)
    except ValueError:
        raise SealError("sealed value is not base64") from None
    return decrypt(key, raw, aad).decode()


def load_master_key(key_file: Path, environ: dict[str, str] | None = None) -> bytes:
    """The master key from the environment, else from ``key_file``; loud when unusable."""
    env = os.environ if environ is None else environ
    value = env.get(MASTER_KEY_ENV)
    source = f"${MASTER_KEY_ENV}"
    if value is None:
        if not key_file.is_file():
            raise KeyMaterialError(
                f"no master key: set {MASTER_KEY_ENV} or create {key_file} "
                "('consent-ledger keygen' does)"
            )
        mode = key_file.stat().st_mode & 0o777
        if mode & 0o077:
            raise KeyMaterialError(
                f"{key_file} is readable by others (mode {mode:o}); run: chmod 600 {key_file}"
            )
        value = key_file.read_text().strip()
        source = str(key_file)
    try:
        key = base64.b64decode(value, validate=True)
    except ValueError:
        raise KeyMaterialError(f"the master key in {source} is not base64") from None
    if len(key) != KEY_BYTES:
        raise KeyMaterialError(
            f"the master key in {source} is {len(key)} bytes; it must be {KEY_BYTES}"
        )
    return key


def new_master_key_text() -> bytes:
    return base64.b64encode(os.urandom(KEY_BYTES)) + b"\n"


class KeyStore(ABC):
    """Where wrapped subject keys and ledger secrets live (apart from the event log)."""

    @abstractmethod
    def insert_missing(self, wrapped: dict[str, bytes]) -> None:
        """Store each ``pseudonym -> wrapped key`` that is not stored yet; keep existing ones."""

    @abstractmethod
    def select(self, pseudonyms: Iterable[str]) -> dict[str, bytes]:
        """The wrapped keys of those pseudonyms that have one."""

    @abstractmethod
    def get_secret(self, name: str) -> bytes | None:
        """A wrapped ledger secret, or None."""

    @abstractmethod
    def put_secret_if_absent(self, name: str, wrapped: bytes) -> None:
        """Store a wrapped ledger secret unless one of that name exists."""


class SubjectKeys:
    """Pseudonyms, per-subject keys (cached, bounded) and their wrapping by the master key."""

    def __init__(self, store: KeyStore, master_key: bytes, cache_size: int = 100_000) -> None:
        self._store = store
        self._master_key = master_key
        self._cache: OrderedDict[str, bytes] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()
        self._secret = self._load_secret()

    def _load_secret(self) -> bytes:
        aad = f"secret|{PSEUDONYM_SECRET_NAME}".encode()
        wrapped = self._store.get_secret(PSEUDONYM_SECRET_NAME)
        if wrapped is None:
            self._store.put_secret_if_absent(
                PSEUDONYM_SECRET_NAME, encrypt(self._master_key, os.urandom(KEY_BYTES), aad)
            )
            wrapped = self._store.get_secret(PSEUDONYM_SECRET_NAME)
            assert wrapped is not None
        try:
            return decrypt(self._master_key, wrapped, aad)
        except SealError:
            raise KeyMaterialError(
                "the master key does not open this ledger's key store: it is not the key "
                "this ledger was created with"
            ) from None

    def pseudonym(self, subject_ref: str) -> str:
        """The subject's name in the log: a UUID that reveals nothing without the secret."""
        mac = hmac.new(self._secret, b"pseudonym\0" + subject_ref.encode(), hashlib.sha256)
        return str(UUID(bytes=mac.digest()[:16]))

    def digest(self, canonical: bytes) -> bytes:
        """A keyed digest of an event's content, for idempotency (no plaintext dictionary)."""
        return hmac.new(self._secret, b"content\0" + canonical, hashlib.sha256).digest()

    def keys_for(self, pseudonyms: Iterable[str], *, create: bool) -> dict[str, bytes]:
        """Subject keys by pseudonym; with ``create``, make the missing ones first."""
        wanted = list(dict.fromkeys(pseudonyms))
        found: dict[str, bytes] = {}
        with self._lock:
            for pseudonym in wanted:
                key = self._cache.get(pseudonym)
                if key is not None:
                    self._cache.move_to_end(pseudonym)
                    found[pseudonym] = key
        missing = [p for p in wanted if p not in found]
        if missing and create:
            self._store.insert_missing(
                {p: encrypt(self._master_key, os.urandom(KEY_BYTES), _wrap_aad(p)) for p in missing}
            )
        if missing:
            for pseudonym, wrapped in self._store.select(missing).items():
                try:
                    found[pseudonym] = decrypt(self._master_key, wrapped, _wrap_aad(pseudonym))
                except SealError:
                    raise KeyMaterialError(
                        f"the wrapped key of subject {pseudonym} does not open with the master key"
                    ) from None
            with self._lock:
                for pseudonym in missing:
                    if pseudonym in found:
                        self._cache[pseudonym] = found[pseudonym]
                while len(self._cache) > self._cache_size:
                    self._cache.popitem(last=False)
        return found


def _wrap_aad(pseudonym: str) -> bytes:
    return f"subject-key|{pseudonym}".encode()
