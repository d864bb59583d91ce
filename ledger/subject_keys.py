"""Per-subject keys: pseudonyms, sealing personal data, and the wrapped key store.

- The *master key* (32 bytes) comes from configuration: the ``CONSENT_LEDGER_MASTER_KEY``
  environment variable (base64) or a key file (mode 0600). It is never written to a database.
- Each subject has a random 32-byte key, stored *wrapped* (XChaCha20-Poly1305 under the master
  key, the pseudonym as associated data) in a key store kept apart from the event log.
- A subject is named in the log only by a *pseudonym*: a random UUID, one per lifecycle of the
  emitter's reference, joined to the reference only by a row of the key store (keyed by the
  reference's *lookup id*, HMAC-SHA256 under a ledger secret) that erasure deletes.
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
from uuid import UUID, uuid4

from nacl import bindings
from nacl.exceptions import CryptoError

from ledger.errors import KeyMaterialError, SubjectErasedError

V = TypeVar("V")

KEY_BYTES = 32
NONCE_BYTES = bindings.crypto_aead_xchacha20poly1305_ietf_NPUBBYTES
SEALED_PREFIX = "sealed:v1:"
MASTER_KEY_ENV = "CONSENT_LEDGER_MASTER_KEY"
PSEUDONYM_SECRET_NAME = "pseudonym-secret"  # noqa: S105 (a name, not a secret)
MENTION_KEY_NAME = "mention-key"
"""The ledger secret that seals the pseudonyms a fact about many subjects lists
(:mod:`ledger.verifier.mentions`)."""


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


def mention_aad(stream: UUID | str, stream_version: int, path: str) -> bytes:
    """The associated data that binds a sealed mention to one place of one event."""
    return f"consent-ledger/mention/v1|{stream}|{stream_version}|{path}".encode()


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
    """What the key store holds for some references' lookup ids, read in one go."""

    names: dict[str, str]
    """Lookup id -> the pseudonym of the reference's live lifecycle."""
    keys: dict[str, bytes]
    """Pseudonym -> wrapped key, for those live pseudonyms."""
    erased: set[str]
    """Lookup ids whose last lifecycle was erased and that have no live one."""

    @classmethod
    def from_rows(cls, rows: Iterable[Sequence[Any]]) -> Survey:
        """From rows (lookup, pseudonym, wrapped): a live name has a pseudonym (and its
        wrapped key, if stored), an erased reference's row neither."""
        found = cls({}, {}, set())
        for lookup, pseudonym, wrapped in rows:
            if pseudonym is None:
                found.erased.add(str(lookup))
                continue
            found.names[str(lookup)] = str(pseudonym)
            if wrapped:
                found.keys[str(pseudonym)] = bytes(wrapped)
        found.erased.difference_update(found.names)
        return found


class KeyStore(ABC):
    """Where wrapped subject keys, the references' live names and ledger secrets live (apart
    from the event log).

    Three tables: subject keys by pseudonym (a destroyed key leaves a tombstone, an empty
    wrapped key); *names*, lookup id -> pseudonym, one row per live lifecycle, deleted when
    the subject is erased; and *erasures*, lookup id -> how many lifecycles were erased, so
    that facts about an erased reference are refused until a new lifecycle is started. The
    lookup id is a keyed hash of the reference; the pseudonym is random. Nothing but a names
    row joins them, so once it is gone nobody can tell which pseudonym a reference had.
    """

    @abstractmethod
    def survey(self, lookups: Sequence[str]) -> Survey:
        """The live names, their keys, and the erased ones among ``lookups``, in one read."""

    @abstractmethod
    def persist(self, wrapped: Mapping[str, bytes]) -> dict[str, bytes]:
        """Durably store each ``pseudonym -> wrapped key`` not stored yet, in one transaction.

        Returns the wrapped key now stored for each of those pseudonyms: the given one, or the
        one another writer stored first.
        """

    @abstractmethod
    def persist_names(self, names: Mapping[str, str]) -> Survey:
        """Store each new ``lookup -> pseudonym`` whose reference has no live name and was
        never erased, in one transaction; return the survey of those lookups afterwards (the
        name stored, by this writer or another, or the erasure that forbade it)."""

    def persist_subjects(
        self, wrapped: Mapping[str, bytes], names: Mapping[str, str]
    ) -> tuple[dict[str, bytes], Survey | None]:
        """:meth:`persist_names` then :meth:`persist` (a backend may do both in one
        transaction): the keys stored, and the names' survey (None without names)."""
        named = self.persist_names(names) if names else None
        return (self.persist(wrapped) if wrapped else {}), named

    @abstractmethod
    def select(self, pseudonyms: Iterable[str]) -> dict[str, bytes]:
        """The wrapped keys of those pseudonyms that have one."""

    @abstractmethod
    def erased(self, pseudonyms: Iterable[str]) -> set[str]:
        """Those of the pseudonyms whose key was destroyed."""

    @abstractmethod
    def destroy(self, pseudonyms: Iterable[str]) -> None:
        """Destroy the keys (a tombstone stays, so no key is ever made for them again), delete
        the names that pointed at them and count an erasure for each of their lookups."""

    @abstractmethod
    def start_lifecycle(self, lookup: str, pseudonym: str) -> bool:
        """Name the reference's new lifecycle, if it has no live one; False if it has."""

    @abstractmethod
    def holds_format_1(self) -> bool:
        """True for a key store of format 1 (pseudonyms derived from references): subject
        keys, but neither names nor erasures."""

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
    """What sealing and opening need: pseudonyms, subject keys and the mention key."""

    def pseudonym(self, subject_ref: str) -> str: ...

    def keys_for(self, pseudonyms: Iterable[str], *, create: bool) -> dict[str, bytes]: ...

    def seal_mention(
        self, pseudonym: str, stream: UUID | str, stream_version: int, path: str
    ) -> str: ...

    def open_mention(
        self, sealed: str, stream: UUID | str, stream_version: int, path: str
    ) -> str: ...


class SubjectKeys:
    """Pseudonyms, per-subject keys (cached, bounded) and their wrapping by the master key.

    A reference's *lookup id* is a keyed hash of it (HMAC-SHA256 under the pseudonym secret);
    its *pseudonym*, the only name of the subject in the log, is a random UUID made when the
    ledger first meets the reference (or starts a new lifecycle for it), and joined to the
    lookup id only by a row of the key store that erasure deletes.

    A new subject's pseudonym and key are made *pending*: used at once, shared by every batch
    of this process that needs them, and stored durably by the recorder just before the first
    events that use them commit (see :class:`KeySession`), so that new subjects cost no commit
    of their own.
    """

    def __init__(self, store: KeyStore, master_key: bytes, cache_size: int = 100_000) -> None:
        self.store = store
        self._master_key = master_key
        self._cache: OrderedDict[str, bytes] = OrderedDict()
        self._names: OrderedDict[str, str] = OrderedDict()
        self._pending: dict[str, tuple[bytes, bytes]] = {}
        self._pending_names: dict[str, str] = {}
        self._cache_size = cache_size
        self._secret = self._load_secret(PSEUDONYM_SECRET_NAME)
        self._mention_key = self._load_secret(MENTION_KEY_NAME)
        if store.holds_format_1():
            raise KeyMaterialError(
                "this key store is of format 1 (pseudonyms derived from references, which "
                "erasure cannot unlink); this version reads format 2 only: start a new ledger "
                "(docs/verification.md, 'Erasure')"
            )

    def _load_secret(self, name: str) -> bytes:
        aad = f"secret|{name}".encode()
        wrapped = self.store.get_secret(name)
        if wrapped is None:
            self.store.put_secret_if_absent(
                name, encrypt(self._master_key, os.urandom(KEY_BYTES), aad)
            )
            wrapped = self.store.get_secret(name)
            assert wrapped is not None
        try:
            return decrypt(self._master_key, wrapped, aad)
        except SealError:
            raise KeyMaterialError(
                "the master key does not open this ledger's key store: it is not the key "
                "this ledger was created with"
            ) from None

    # -- mentions -----------------------------------------------------------------------------

    def seal_mention(
        self, pseudonym: str, stream: UUID | str, stream_version: int, path: str
    ) -> str:
        """A subject's pseudonym as a fact about many subjects lists it: sealed under the
        mention key, bound to its place (:mod:`ledger.verifier.mentions`)."""
        return seal_text(self._mention_key, pseudonym, mention_aad(stream, stream_version, path))

    def open_mention(self, sealed: str, stream: UUID | str, stream_version: int, path: str) -> str:
        """The pseudonym of a sealed mention (a value not sealed is one already)."""
        if not sealed.startswith(SEALED_PREFIX):
            return sealed
        return open_text(self._mention_key, sealed, mention_aad(stream, stream_version, path))

    def mention_key(self) -> bytes:
        """The key mentions are sealed under, for the worker processes of an export that open
        them (:mod:`ledger.export`); never written anywhere."""
        return self._mention_key

    # -- names --------------------------------------------------------------------------------

    def lookup_id(self, subject_ref: str) -> str:
        """The key store's index of a reference: HMAC-SHA256 under the pseudonym secret, hex.
        Never written to the log."""
        mac = hmac.new(self._secret, b"lookup\0" + subject_ref.encode(), hashlib.sha256)
        return mac.hexdigest()

    def lock_id(self, subject_ref: str) -> UUID:
        """A stable name for in-process locks on a reference's facts (never stored)."""
        mac = hmac.new(self._secret, b"lock\0" + subject_ref.encode(), hashlib.sha256)
        return UUID(bytes=mac.digest()[:16])

    def current(self, subject_ref: str) -> str | None:
        """The pseudonym of the reference's live lifecycle, read from the store (never from a
        cache: another process may have erased it); None if unknown or erased."""
        lookup = self.lookup_id(subject_ref)
        return self.store.survey([lookup]).names.get(lookup)

    def was_erased(self, subject_ref: str) -> bool:
        """True if the reference's last lifecycle was erased and no new one started (all that
        the key store keeps of an erased reference: docs/verification.md, 'Erasure')."""
        lookup = self.lookup_id(subject_ref)
        return lookup in self.store.survey([lookup]).erased

    def pseudonym(self, subject_ref: str) -> str:
        """For reads: the pseudonym of the reference's live lifecycle, or, when the reference is
        unknown or erased, a stand-in that names nothing in the log (the same answer for both,
        so a reader cannot tell an erased reference from one never seen)."""
        live = self.current(subject_ref)
        return live if live is not None else self.nobody(subject_ref)

    def nobody(self, subject_ref: str) -> str:
        """A UUID (version 8, while pseudonyms are version 4) that is no subject's pseudonym."""
        mac = hmac.new(self._secret, b"nobody\0" + subject_ref.encode(), hashlib.sha256)
        raw = bytearray(mac.digest()[:16])
        raw[6] = (raw[6] & 0x0F) | 0x80
        raw[8] = (raw[8] & 0x3F) | 0x80
        return str(UUID(bytes=bytes(raw)))

    def prefetch(self, subject_refs: Iterable[str]) -> frozenset[str]:
        """Read the live names and keys of many references in one go (before a batch is
        handled); return the lookup ids the store knows nothing of at this moment (new
        subjects: their pseudonyms and keys are made without asking again).

        The answer is a hint for one attempt at a batch, not a promise: a name stored or a
        subject erased by another process meanwhile is caught when the batch commits.
        """
        lookups = {self.lookup_id(ref) for ref in subject_refs}
        unknown = sorted(
            lookup
            for lookup in lookups
            if lookup not in self._names and lookup not in self._pending_names
        )
        if not unknown:
            return frozenset()
        found = self.store.survey(unknown)
        self._remember_survey(found)
        return frozenset(
            lookup for lookup in unknown if lookup not in found.names and lookup not in found.erased
        )

    def _remember_survey(self, found: Survey) -> None:
        for lookup, pseudonym in found.names.items():
            _remember(self._names, lookup, pseudonym, self._cache_size)
        for pseudonym, wrapped in found.keys.items():
            self._remember(pseudonym, self._unwrap(pseudonym, wrapped))

    def refresh(self, subject_refs: Iterable[str]) -> None:
        """Forget what is cached of these references' names (another process moved on)."""
        for ref in subject_refs:
            self._names.pop(self.lookup_id(ref), None)

    def next_lifecycle(
        self, subject_ref: str, erasing: Iterable[str] = (), current: str | None = None
    ) -> tuple[str, str]:
        """The lookup id and a new pseudonym for the reference's next lifecycle.

        Allowed only when the current lifecycle was erased, or is being erased: ``erasing``
        holds it (``current``, the pseudonym the batch knows the reference by, may be one the
        batch made itself); the recorder names it with the commit that records it.
        """
        lookup = self.lookup_id(subject_ref)
        if current is not None and current in set(erasing):
            return lookup, str(uuid4())
        self._names.pop(lookup, None)
        found = self.store.survey([lookup])
        live = found.names.get(lookup)
        if live is None and lookup not in found.erased:
            raise LifecycleError("the reference has no lifecycle yet")
        if live is not None and live not in set(erasing):
            raise LifecycleError("the reference's lifecycle was not erased")
        return lookup, str(uuid4())

    def forget(self, pseudonyms: Iterable[str]) -> None:
        """Drop erased subjects' keys and names from memory."""
        gone = set(pseudonyms)
        if not gone:
            return
        for pseudonym in gone:
            self._cache.pop(pseudonym, None)
            self._pending.pop(pseudonym, None)
        for lookup, pseudonym in list(self._names.items()):
            if pseudonym in gone:
                self._names.pop(lookup, None)

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
        """A keyed digest of an event's content, for idempotency. ``canonical`` must hold no
        personal data in the clear (see :meth:`KeySession.blind`): the pseudonym secret is
        kept for as long as the ledger, so a digest of a reference would outlive its erasure.
        """
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
        pending key for each subject without one. ``absent`` names pseudonyms made in this
        process a moment ago (new subjects): they get a pending key without a query."""
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

    def _pending_name(self, lookup: str) -> str:
        """The pseudonym made for a new reference, shared by every batch of this process that
        meets it before it is stored (made by whichever asks first)."""
        return self._pending_names.setdefault(lookup, str(uuid4()))

    def _unwrap(self, pseudonym: str, wrapped: bytes) -> bytes:
        try:
            return decrypt(self._master_key, wrapped, _wrap_aad(pseudonym))
        except SealError:
            raise KeyMaterialError(
                f"the wrapped key of subject {pseudonym} does not open with the master key"
            ) from None

    def _remember(self, pseudonym: str, key: bytes) -> None:
        _remember(self._cache, pseudonym, key, self._cache_size)

    def _settle(
        self,
        new: dict[str, tuple[bytes, bytes]],
        names: Mapping[str, str],
        *,
        stored: bool,
    ) -> None:
        for pseudonym, pending in new.items():
            if self._pending.get(pseudonym) == pending:
                self._pending.pop(pseudonym, None)
            if stored:
                self._remember(pseudonym, pending[0])
        for lookup, pseudonym in names.items():
            if self._pending_names.get(lookup) == pseudonym:
                self._pending_names.pop(lookup, None)
            if stored:
                _remember(self._names, lookup, pseudonym, self._cache_size)


class LifecycleError(ValueError):
    """A new lifecycle was asked for a reference whose current one was not erased."""


class KeySession:
    """The names and keys one batch uses; the new ones travel with its events to the
    recorder."""

    def __init__(self, keys: SubjectKeys, absent: frozenset[str] = frozenset()) -> None:
        self._keys = keys
        self._absent = absent
        """Lookup ids the store knew nothing of when the batch began (see :meth:`prefetch`)."""
        self._new: dict[str, tuple[bytes, bytes]] = {}
        self._pseudonyms: dict[str, str] = {}
        self.new_names: dict[str, str] = {}
        """Lookup id -> pseudonym, for the references this batch meets first."""
        self.fresh: set[str] = set()
        """Pseudonyms made for this batch (new references, new lifecycles): no stream, no key
        of theirs can be stored yet."""
        self.lifecycles: dict[str, str] = {}
        """Lookup id -> the pseudonym of the lifecycle this batch starts."""
        self.sealed_under: set[str] = set()
        """Every subject whose key this batch sealed with."""

    def pseudonym(self, subject_ref: str) -> str:
        """The reference's pseudonym for writing: its live one, or a new one if the ledger
        never met it. Raises :class:`SubjectErasedError` for an erased reference."""
        pseudonym = self._pseudonyms.get(subject_ref)
        if pseudonym is not None:
            return pseudonym
        keys = self._keys
        lookup = keys.lookup_id(subject_ref)
        pseudonym = _recall(keys._names, lookup)
        if pseudonym is None and lookup not in self._absent:
            pseudonym = keys._pending_names.get(lookup)
            if pseudonym is None:
                found = keys.store.survey([lookup])
                keys._remember_survey(found)
                if lookup in found.erased:
                    raise SubjectErasedError([])
                pseudonym = found.names.get(lookup)
        if pseudonym is None:
            pseudonym = keys._pending_name(lookup)
        if keys._pending_names.get(lookup) == pseudonym:
            self.new_names[lookup] = pseudonym
            self.fresh.add(pseudonym)
        self._pseudonyms[subject_ref] = pseudonym
        return pseudonym

    def start_lifecycle(self, subject_ref: str, erasing: Iterable[str]) -> str:
        """From now on in this batch, the reference names its next lifecycle's pseudonym."""
        lookup, pseudonym = self._keys.next_lifecycle(
            subject_ref, erasing, self._pseudonyms.get(subject_ref)
        )
        self.lifecycles[lookup] = pseudonym
        self.fresh.add(pseudonym)
        self._pseudonyms[subject_ref] = pseudonym
        return pseudonym

    def keys_for(self, pseudonyms: Iterable[str], *, create: bool) -> dict[str, bytes]:
        wanted = list(dict.fromkeys(pseudonyms))
        if create:
            self.sealed_under.update(wanted)
        known = {p: self._new[p][0] for p in wanted if p in self._new}
        rest = [p for p in wanted if p not in known]
        return known | self._keys._lookup(
            rest, self._new if create else None, frozenset(self.fresh)
        )

    def seal_mention(
        self, pseudonym: str, stream: UUID | str, stream_version: int, path: str
    ) -> str:
        return self._keys.seal_mention(pseudonym, stream, stream_version, path)

    def open_mention(self, sealed: str, stream: UUID | str, stream_version: int, path: str) -> str:
        return self._keys.open_mention(sealed, stream, stream_version, path)

    def blind(self, pseudonym: str, value: str) -> str:
        """A value of the subject's personal data as an idempotency digest may hold it: keyed
        by the subject's own key, so that it means nothing once the key is destroyed."""
        key = self.keys_for([pseudonym], create=True)[pseudonym]
        return hmac.new(key, b"blind\0" + value.encode(), hashlib.sha256).hexdigest()

    @property
    def new_wrapped_keys(self) -> dict[str, bytes]:
        """Pseudonym -> wrapped key, for the subjects this batch meets first."""
        return {pseudonym: wrapped for pseudonym, (_, wrapped) in self._new.items()}

    def committed(self) -> None:
        """The batch committed: its new names, keys and lifecycles are stored; cache them."""
        self._keys._settle(self._new, self.new_names | self.lifecycles, stored=True)

    def abandoned(self) -> None:
        """The batch failed or lost a race: forget its new names and keys (the stored ones
        win on retry)."""
        self._keys._settle(self._new, self.new_names, stored=False)


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
