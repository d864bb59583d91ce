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
import contextlib
import hashlib
import hmac
import os
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar
from uuid import UUID

from nacl import bindings
from nacl.exceptions import CryptoError

from ledger.errors import KeyMaterialError, SubjectErasedError

V = TypeVar("V")

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


@dataclass(frozen=True)
class Survey:
    """What the key store holds for some subjects, read in one go before a batch."""

    generations: dict[str, int]
    """The lifecycle number of each base pseudonym that has started a new one."""
    keys: dict[str, bytes]
    """The live wrapped keys of those pseudonyms that have one."""
    erased: set[str]
    """Those of the pseudonyms whose key was destroyed."""

    @classmethod
    def from_rows(cls, rows: Iterable[Sequence[Any]]) -> Survey:
        """From rows (name, generation, wrapped): a lifecycle row has no wrapped key, a key
        row no generation, and a tombstone an empty wrapped key."""
        found = cls({}, {}, set())
        for name, generation, wrapped in rows:
            if wrapped is None:
                found.generations[str(name)] = int(generation)
            elif wrapped:
                found.keys[str(name)] = bytes(wrapped)
            else:
                found.erased.add(str(name))
        return found


class KeyStore(ABC):
    """Where wrapped subject keys and ledger secrets live (apart from the event log)."""

    def survey(self, bases: Sequence[str]) -> Survey:
        """The lifecycles of ``bases`` and the keys of their first lifecycles (whose
        pseudonyms are the bases themselves). Backends answer it in one read."""
        return Survey(self.generations(bases), self.select(bases), self.erased(bases))

    @abstractmethod
    def persist(self, wrapped: Mapping[str, bytes]) -> dict[str, bytes]:
        """Durably store each ``pseudonym -> wrapped key`` not stored yet, in one transaction.

        Returns the wrapped key now stored for each of those pseudonyms: the given one, or the
        one another writer stored first.
        """

    @abstractmethod
    def select(self, pseudonyms: Iterable[str]) -> dict[str, bytes]:
        """The wrapped keys of those pseudonyms that have one."""

    @abstractmethod
    def erased(self, pseudonyms: Iterable[str]) -> set[str]:
        """Those of the pseudonyms whose key was destroyed."""

    @abstractmethod
    def destroy(self, pseudonyms: Iterable[str]) -> None:
        """Destroy the keys (a tombstone stays, so no key is ever made for them again)."""

    @abstractmethod
    def generations(self, bases: Iterable[str]) -> dict[str, int]:
        """The lifecycle number of each base pseudonym that has started a new one."""

    @abstractmethod
    def start_generation(self, base: str, generation: int) -> bool:
        """Record lifecycle ``generation`` of ``base`` if it is the next; False if not."""

    @abstractmethod
    def wrapped_keys(self) -> Iterable[tuple[str, bytes]]:
        """Every live wrapped key (for re-wrapping under a new master key)."""

    @abstractmethod
    def replace_wrapped(self, keys: Mapping[str, bytes], secrets: Mapping[str, bytes]) -> None:
        """Replace wrapped keys and secrets in one transaction (master key rotation)."""

    @abstractmethod
    def secrets(self) -> dict[str, bytes]:
        """Every wrapped ledger secret, by name."""

    @abstractmethod
    def get_secret(self, name: str) -> bytes | None:
        """A wrapped ledger secret, or None."""

    @abstractmethod
    def put_secret_if_absent(self, name: str, wrapped: bytes) -> None:
        """Store a wrapped ledger secret unless one of that name exists."""

    @abstractmethod
    def close(self) -> None: ...


class KeySource(Protocol):
    """What sealing and opening need: pseudonyms and subject keys."""

    def pseudonym(self, subject_ref: str) -> str: ...

    def keys_for(self, pseudonyms: Iterable[str], *, create: bool) -> dict[str, bytes]: ...


class SubjectKeys:
    """Pseudonyms, per-subject keys (cached, bounded) and their wrapping by the master key.

    A new subject's key is made *pending*: it is used to seal at once, shared by every batch of
    this process that needs it, and stored durably by the recorder just before the first events
    sealed under it commit (see :class:`KeySession`), so that new subjects cost no commit of
    their own.
    """

    def __init__(self, store: KeyStore, master_key: bytes, cache_size: int = 100_000) -> None:
        self.store = store
        self._master_key = master_key
        self._cache: OrderedDict[str, bytes] = OrderedDict()
        self._generations: OrderedDict[str, int] = OrderedDict()
        self._pending: dict[str, tuple[bytes, bytes]] = {}
        self._cache_size = cache_size
        self._secret = self._load_secret()

    def _load_secret(self) -> bytes:
        aad = f"secret|{PSEUDONYM_SECRET_NAME}".encode()
        wrapped = self.store.get_secret(PSEUDONYM_SECRET_NAME)
        if wrapped is None:
            self.store.put_secret_if_absent(
                PSEUDONYM_SECRET_NAME, encrypt(self._master_key, os.urandom(KEY_BYTES), aad)
            )
            wrapped = self.store.get_secret(PSEUDONYM_SECRET_NAME)
            assert wrapped is not None
        try:
            return decrypt(self._master_key, wrapped, aad)
        except SealError:
            raise KeyMaterialError(
                "the master key does not open this ledger's key store: it is not the key "
                "this ledger was created with"
            ) from None

    def pseudonym(self, subject_ref: str) -> str:
        """The subject's name in the log: a UUID that reveals nothing without the secret.

        Each lifecycle of a reference has its own: the first is the *base* pseudonym; after an
        erasure, a new lifecycle (:meth:`next_lifecycle`) derives the next one.
        """
        base = self._derive(subject_ref, 0)
        generation = self._generation(base)
        return base if generation == 0 else self._derive(subject_ref, generation)

    def _derive(self, subject_ref: str, generation: int) -> str:
        message = b"pseudonym\0" + subject_ref.encode()
        if generation:
            message += b"\0" + str(generation).encode()
        mac = hmac.new(self._secret, message, hashlib.sha256)
        return str(UUID(bytes=mac.digest()[:16]))

    def _generation(self, base: str) -> int:
        cached = _recall(self._generations, base)
        if cached is not None:
            return cached
        generation = self.store.generations([base]).get(base, 0)
        self._remember_generations({base: generation})
        return generation

    def _remember_generations(self, generations: Mapping[str, int]) -> None:
        for base, generation in generations.items():
            _remember(self._generations, base, generation, self._cache_size)

    def prefetch(self, subject_refs: Iterable[str]) -> frozenset[str]:
        """Read the lifecycles and keys of many references in one go (before a batch is
        handled); return the pseudonyms the store knows nothing of at this moment: first
        lifecycles without a key or a tombstone, so subjects never recorded.

        The answer is a hint for one attempt at a batch, not a promise: a key stored or
        destroyed by another process meanwhile is caught when the batch commits.
        """
        bases = {self._derive(ref, 0) for ref in subject_refs}
        unknown = sorted(
            b for b in bases if self._generations.get(b, 0) == 0 and b not in self._cache
        )
        if not unknown:
            return frozenset()
        found = self.store.survey(unknown)
        self._remember_generations({b: found.generations.get(b, 0) for b in unknown})
        for pseudonym, wrapped in found.keys.items():
            self._remember(pseudonym, self._unwrap(pseudonym, wrapped))
        return frozenset(
            b
            for b in unknown
            if b not in found.generations and b not in found.keys and b not in found.erased
        )

    def refresh(self, subject_refs: Iterable[str]) -> None:
        """Forget what is cached of these references' lifecycles (another process moved on)."""
        for ref in subject_refs:
            self._generations.pop(self._derive(ref, 0), None)

    def next_lifecycle(self, subject_ref: str, erasing: Iterable[str] = ()) -> tuple[str, str, int]:
        """The base pseudonym, and the pseudonym and number of the reference's next lifecycle.

        Allowed only when the current lifecycle was erased (or is being erased: ``erasing``);
        the recorder stores the new number with the commit that records it.
        """
        self.refresh([subject_ref])
        base = self._derive(subject_ref, 0)
        generation = self._generation(base)
        current = base if generation == 0 else self._derive(subject_ref, generation)
        if current not in set(erasing) and not self.store.erased([current]):
            raise LifecycleError(current)
        return base, self._derive(subject_ref, generation + 1), generation + 1

    def forget(self, pseudonyms: Iterable[str]) -> None:
        """Drop erased subjects' keys from memory."""
        for pseudonym in pseudonyms:
            self._cache.pop(pseudonym, None)
            self._pending.pop(pseudonym, None)

    def rotate_master_key(self, new_master_key: bytes) -> int:
        """Re-wrap every subject key and secret under a new master key, in one transaction.

        The log is not touched. Returns the number of subject keys re-wrapped.
        """
        if len(new_master_key) != KEY_BYTES:
            raise KeyMaterialError(f"a master key is {KEY_BYTES} bytes")
        keys = {
            pseudonym: encrypt(
                new_master_key, self._unwrap(pseudonym, wrapped), _wrap_aad(pseudonym)
            )
            for pseudonym, wrapped in self.store.wrapped_keys()
        }
        secrets = {}
        for name, wrapped in self.store.secrets().items():
            aad = f"secret|{name}".encode()
            try:
                plain = decrypt(self._master_key, wrapped, aad)
            except SealError:
                raise KeyMaterialError(f"secret {name} does not open with the master key") from None
            secrets[name] = encrypt(new_master_key, plain, aad)
        self.store.replace_wrapped(keys, secrets)
        self._master_key = new_master_key
        return len(keys)

    def digest(self, canonical: bytes) -> bytes:
        """A keyed digest of an event's content, for idempotency (no plaintext dictionary)."""
        return hmac.new(self._secret, b"content\0" + canonical, hashlib.sha256).digest()

    def session(self, absent: frozenset[str] = frozenset()) -> KeySession:
        return KeySession(self, absent)

    def keys_for(self, pseudonyms: Iterable[str], *, create: bool) -> dict[str, bytes]:
        """Stored subject keys by pseudonym, for reading (``create`` must be off).

        Read from the store each time, never from the cache: a key another process destroyed
        must not open anything here.
        """
        if create:
            raise ValueError("new subject keys are made in a KeySession, which stores them")
        stored = self.store.select(list(dict.fromkeys(pseudonyms)))
        return {
            pseudonym: self._unwrap(pseudonym, wrapped) for pseudonym, wrapped in stored.items()
        }

    def _lookup(
        self,
        wanted: list[str],
        new: dict[str, tuple[bytes, bytes]] | None,
        absent: frozenset[str] = frozenset(),
    ) -> dict[str, bytes]:
        """Keys for ``wanted``: from the cache, else the store; with ``new`` (sealing), a
        pending key for each subject without one. ``absent`` names subjects the store had
        nothing of a moment ago (:meth:`prefetch`): they get a pending key without a query."""
        found: dict[str, bytes] = {}
        for pseudonym in wanted:
            key = _recall(self._cache, pseudonym)
            if key is not None:
                found[pseudonym] = key
        missing = [p for p in wanted if p not in found]
        if missing:
            asked = [p for p in missing if new is None or p not in absent]
            stored = self.store.select(asked) if asked else {}
            for pseudonym, wrapped in stored.items():
                found[pseudonym] = self._unwrap(pseudonym, wrapped)
            if new is not None:  # never a key for an erased subject
                unknown = [p for p in asked if p not in stored]
                erased = self.store.erased(unknown) if unknown else set()
                if erased:
                    raise SubjectErasedError(sorted(erased))
            for pseudonym in stored:
                self._remember(pseudonym, found[pseudonym])
            if new is not None:
                for pseudonym in missing:
                    if pseudonym not in found:
                        found[pseudonym] = self._pending_key(pseudonym, new)
        return found

    def _pending_key(self, pseudonym: str, new: dict[str, tuple[bytes, bytes]]) -> bytes:
        """The key made for a new subject, shared by every batch of this process that needs
        it before it is stored (made by whichever asks first)."""
        pending = self._pending.get(pseudonym)
        if pending is None:
            key = os.urandom(KEY_BYTES)
            made = (key, encrypt(self._master_key, key, _wrap_aad(pseudonym)))
            pending = self._pending.setdefault(pseudonym, made)  # atomic: one key per subject
        new[pseudonym] = pending
        return pending[0]

    def _unwrap(self, pseudonym: str, wrapped: bytes) -> bytes:
        try:
            return decrypt(self._master_key, wrapped, _wrap_aad(pseudonym))
        except SealError:
            raise KeyMaterialError(
                f"the wrapped key of subject {pseudonym} does not open with the master key"
            ) from None

    def _remember(self, pseudonym: str, key: bytes) -> None:
        _remember(self._cache, pseudonym, key, self._cache_size)

    def _settle(self, new: dict[str, tuple[bytes, bytes]], *, stored: bool) -> None:
        for pseudonym, pending in new.items():
            if self._pending.get(pseudonym) == pending:
                self._pending.pop(pseudonym, None)
            if stored:
                self._remember(pseudonym, pending[0])


class LifecycleError(ValueError):
    """A new lifecycle was asked for a subject whose current one was not erased."""

    def __init__(self, pseudonym: str) -> None:
        super().__init__(f"subject {pseudonym} was not erased: its lifecycle goes on")
        self.pseudonym = pseudonym


class KeySession:
    """The keys one batch uses; the new ones travel with its events to the recorder."""

    def __init__(self, keys: SubjectKeys, absent: frozenset[str] = frozenset()) -> None:
        self._keys = keys
        self._absent = absent
        """Subjects the store knew nothing of when the batch began (see :meth:`prefetch`)."""
        self._new: dict[str, tuple[bytes, bytes]] = {}
        self._pseudonyms: dict[str, str] = {}
        self.lifecycles: dict[str, int] = {}
        """Base pseudonym -> the lifecycle this batch starts."""
        self.sealed_under: set[str] = set()
        """Every subject whose key this batch sealed with."""

    def pseudonym(self, subject_ref: str) -> str:
        pseudonym = self._pseudonyms.get(subject_ref)
        if pseudonym is None:
            pseudonym = self._pseudonyms[subject_ref] = self._keys.pseudonym(subject_ref)
        return pseudonym

    def start_lifecycle(self, subject_ref: str, erasing: Iterable[str]) -> str:
        """From now on in this batch, the reference names its next lifecycle's pseudonym."""
        base, pseudonym, generation = self._keys.next_lifecycle(subject_ref, erasing)
        self.lifecycles[base] = generation
        self._pseudonyms[subject_ref] = pseudonym
        return pseudonym

    def keys_for(self, pseudonyms: Iterable[str], *, create: bool) -> dict[str, bytes]:
        wanted = list(dict.fromkeys(pseudonyms))
        if create:
            self.sealed_under.update(wanted)
        known = {p: self._new[p][0] for p in wanted if p in self._new}
        rest = [p for p in wanted if p not in known]
        return known | self._keys._lookup(rest, self._new if create else None, self._absent)

    @property
    def new_wrapped_keys(self) -> dict[str, bytes]:
        """Pseudonym -> wrapped key, for the subjects this batch meets first."""
        return {pseudonym: wrapped for pseudonym, (_, wrapped) in self._new.items()}

    def committed(self) -> None:
        """The batch committed: its new keys and lifecycles are stored; cache them."""
        self._keys._settle(self._new, stored=True)
        self._keys._remember_generations(self.lifecycles)

    def abandoned(self) -> None:
        """The batch lost a race: forget its new keys, the stored ones win on retry."""
        self._keys._settle(self._new, stored=False)


def _recall(cache: OrderedDict[str, V], name: str) -> V | None:
    """A cached value, marked as used, without a lock.

    Each OrderedDict operation is atomic in CPython, so the caches need no lock: one lock,
    taken by every append to read and update them, made the threads queue on it whenever its
    holder waited for the GIL (most request threads' time in the profiles of
    docs/performance.md). An entry evicted between the read and the mark is not marked. Only
    a new subject's pending key must be one whoever asks first: ``dict.setdefault`` is atomic.
    """
    value = cache.get(name)
    if value is not None:
        with contextlib.suppress(KeyError):
            cache.move_to_end(name)
    return value


def _remember(cache: OrderedDict[str, V], name: str, value: V, size: int) -> None:
    """Cache a value, evicting the least recently used beyond ``size`` (without a lock: two
    writers evicting at once may drop one entry too many, which only costs a read)."""
    cache[name] = value
    with contextlib.suppress(KeyError):
        cache.move_to_end(name)
    while len(cache) > size:
        with contextlib.suppress(KeyError):
            cache.popitem(last=False)


def _wrap_aad(pseudonym: str) -> bytes:
    return f"subject-key|{pseudonym}".encode()
