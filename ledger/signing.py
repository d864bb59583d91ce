"""The ledger's Ed25519 keys: generation, the key directory, signing and the public keyring.

Key directory layout (``<data dir>/keys`` by default)::

    <key id>.key   the private seed, base64, mode 0600
    <key id>.pub   the public key, base64
    active         the key id that signs new entries

Rotation writes a new pair and moves ``active``; older ``.pub`` files stay, so every entry
ever signed still verifies.
"""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass, field
from pathlib import Path

from nacl.bindings import crypto_sign, crypto_sign_seed_keypair
from nacl.signing import SigningKey

from ledger.errors import KeyMaterialError
from ledger.verifier.entry import key_id_for, signature_is_valid


@dataclass(frozen=True)
class Signer:
    """Signs entry bytes with the active key."""

    key_id: str
    signing_key: SigningKey
    _secret: bytes = field(init=False, repr=False, compare=False)
    """libsodium's 64-byte secret key (seed and public key), made once."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "_secret", crypto_sign_seed_keypair(bytes(self.signing_key))[1])

    def sign(self, data: bytes) -> bytes:
        """The Ed25519 signature of ``data``: libsodium's, without :meth:`SigningKey.sign`'s
        signed-message object (the committer signs every entry, in its serial part)."""
        return crypto_sign(data, self._secret)[:64]

    @property
    def public_key(self) -> bytes:
        return bytes(self.signing_key.verify_key)


class Keyring:
    """Public keys by key id: what verification trusts."""

    def __init__(self, public_keys: dict[str, bytes]) -> None:
        self.public_keys = dict(public_keys)

    def verify(self, key_id: str, data: bytes, signature: bytes) -> bool:
        public_key = self.public_keys.get(key_id)
        return public_key is not None and signature_is_valid(data, signature, public_key)

    @classmethod
    def from_directory(cls, keys_dir: Path) -> Keyring:
        keys: dict[str, bytes] = {}
        if keys_dir.is_dir():
            for path in sorted(keys_dir.glob("*.pub")):
                public_key = _read_b64(path, 32)
                key_id = key_id_for(public_key)
                if key_id != path.stem:
                    raise KeyMaterialError(
                        f"{path}: holds the key with id {key_id}, not {path.stem}"
                    )
                keys[key_id] = public_key
        return cls(keys)


def write_private_file(path: Path, content: bytes) -> None:
    """Create ``path`` with mode 0600 from the start (never world-readable, even briefly)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, content)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def generate_signing_key(keys_dir: Path) -> str:
    """Create a new key pair in ``keys_dir``, make it the active one, return its key id."""
    signing_key = SigningKey.generate()
    public_key = bytes(signing_key.verify_key)
    key_id = key_id_for(public_key)
    write_private_file(keys_dir / f"{key_id}.key", base64.b64encode(bytes(signing_key)) + b"\n")
    (keys_dir / f"{key_id}.pub").write_bytes(base64.b64encode(public_key) + b"\n")
    write_private_file(keys_dir / "active", key_id.encode() + b"\n")
    return key_id


def load_signer(keys_dir: Path) -> Signer:
    """The active signing key; :class:`KeyMaterialError` when it is missing or damaged."""
    active = keys_dir / "active"
    if not active.is_file():
        raise KeyMaterialError(
            f"no active signing key in {keys_dir}: run 'consent-ledger keygen' first"
        )
    key_id = active.read_text().strip()
    key_path = keys_dir / f"{key_id}.key"
    if not key_path.is_file():
        raise KeyMaterialError(f"the active key {key_id} has no private key file {key_path}")
    mode = key_path.stat().st_mode & 0o777
    if mode & 0o077:
        raise KeyMaterialError(
            f"{key_path} is readable by others (mode {mode:o}); run: chmod 600 {key_path}"
        )
    signing_key = SigningKey(_read_b64(key_path, 32))
    if key_id_for(bytes(signing_key.verify_key)) != key_id:
        raise KeyMaterialError(f"{key_path} does not hold the key with id {key_id}")
    return Signer(key_id=key_id, signing_key=signing_key)


def _read_b64(path: Path, size: int) -> bytes:
    try:
        raw = base64.b64decode(path.read_bytes().strip(), validate=True)
    except (OSError, ValueError) as exc:
        raise KeyMaterialError(f"{path}: not a readable base64 key ({exc})") from None
    if len(raw) != size:
        raise KeyMaterialError(f"{path}: a key of {len(raw)} bytes, expected {size}")
    return raw
