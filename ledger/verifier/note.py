"""C2SP signed notes with Ed25519 signatures: sign, verify, and the key encodings.

A note is UTF-8 text ending in a newline. A signed note is the text, a blank line, then one
line per signature: ``— <key name> <base64(key hash || signature)>``. The key hash is the first
4 bytes of SHA-256(name || 0x0A || 0x01 || public key); the signature is Ed25519 over the text.
A verifier key is written ``<name>+<hex key hash>+<base64(0x01 || public key)>``.

Standard library and PyNaCl only. Verify before parse: :func:`open_note` returns the text only
once a signature by a known key checks out.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

ED25519 = 0x01
SIGNATURE_PREFIX = "\u2014 "  # an em dash and a space
MAX_SIGNATURES = 100


class NoteError(ValueError):
    """The note, a signature line or a key is malformed."""


class UnverifiedNoteError(NoteError):
    """No signature by a known key verifies: the text must not be trusted."""


@dataclass(frozen=True)
class Verifier:
    name: str
    key_hash: bytes
    public_key: bytes

    def verify(self, text: bytes, signature: bytes) -> bool:
        try:
            VerifyKey(self.public_key).verify(text, signature)
        except (BadSignatureError, ValueError):
            return False
        return True


@dataclass(frozen=True)
class Note:
    text: str
    verified_by: tuple[str, ...]
    """Names of the known keys whose signatures verified."""


def check_key_name(name: str) -> None:
    # A key name is non-empty, without whitespace and without '+'.
    if not name or "+" in name or any(c.isspace() for c in name) or not name.isprintable():
        raise NoteError(f"invalid key name {name!r}: non-empty, no spaces, no '+'")


def key_hash(name: str, public_key: bytes) -> bytes:
    check_key_name(name)
    return hashlib.sha256(name.encode() + b"\n" + bytes([ED25519]) + public_key).digest()[:4]


def format_verifier_key(name: str, public_key: bytes) -> str:
    encoded = base64.b64encode(bytes([ED25519]) + public_key).decode()
    return f"{name}+{key_hash(name, public_key).hex()}+{encoded}"


def parse_verifier_key(text: str) -> Verifier:
    name, hash_hex, encoded = _split_key(text.strip(), 3, "verifier key")
    raw = _b64(encoded, "verifier key")
    # The key is an algorithm byte, then the key: Ed25519 is 0x01 and 32 bytes.
    if len(raw) != 33 or raw[0] != ED25519:
        raise NoteError(f"verifier key {name}: not an Ed25519 key (algorithm byte, 32 bytes)")
    public_key = raw[1:]
    expected = key_hash(name, public_key)
    if hash_hex != expected.hex():
        raise NoteError(f"verifier key {name}: key hash {hash_hex} should be {expected.hex()}")
    return Verifier(name, expected, public_key)


def parse_signer_key(text: str) -> tuple[str, SigningKey]:
    """A Go-style private key: ``PRIVATE+KEY+<name>+<hex hash>+<base64(0x01 || seed)>``."""
    parts = text.strip().split("+", 4)  # the base64 key itself may contain '+'
    if len(parts) != 5 or parts[:2] != ["PRIVATE", "KEY"]:
        raise NoteError("a signer key reads PRIVATE+KEY+<name>+<hash>+<key>")
    name, hash_hex, encoded = parts[2:]
    raw = _b64(encoded, "signer key")
    if len(raw) != 33 or raw[0] != ED25519:
        raise NoteError(f"signer key {name}: not an Ed25519 key")
    signing_key = SigningKey(raw[1:])
    if key_hash(name, bytes(signing_key.verify_key)).hex() != hash_hex:
        raise NoteError(f"signer key {name}: the key hash does not match the key")
    return name, signing_key


def sign_note(text: str, name: str, signing_key: SigningKey) -> str:
    """The signed note: ``text`` (ending in a newline), a blank line, one signature line."""
    _check_text(text)
    public_key = bytes(signing_key.verify_key)
    signature = signing_key.sign(text.encode()).signature
    encoded = base64.b64encode(key_hash(name, public_key) + signature).decode()
    return f"{text}\n{SIGNATURE_PREFIX}{name} {encoded}\n"


def open_note(signed: str, verifiers: Sequence[Verifier]) -> Note:
    """The note's text, once a signature by one of ``verifiers`` verifies.

    Signatures by unknown keys are skipped; a signature by a known key that does not verify is
    an error (someone altered the text or the signature).
    """
    # The text ends at the last blank line; signature lines follow it, each ending in '\n'.
    if not signed.endswith("\n"):
        raise NoteError("a signed note ends with a newline")
    split = signed.rfind("\n\n")
    if split < 0:
        raise NoteError("a signed note has a blank line before its signatures")
    text, block = signed[: split + 1], signed[split + 2 :]
    _check_text(text)
    lines = block.splitlines()
    if not lines:
        raise NoteError("a signed note carries at least one signature")
    if len(lines) > MAX_SIGNATURES:
        raise NoteError(f"more than {MAX_SIGNATURES} signatures")
    known = {(v.name, v.key_hash): v for v in verifiers}
    verified: list[str] = []
    for line in lines:
        if not line.startswith(SIGNATURE_PREFIX):
            raise NoteError(f"signature line {line!r} does not start with an em dash and a space")
        name, _, encoded = line[len(SIGNATURE_PREFIX) :].partition(" ")
        check_key_name(name)
        raw = _b64(encoded, "signature")
        if len(raw) < 5:
            raise NoteError(f"signature by {name} is too short")
        verifier = known.get((name, raw[:4]))
        if verifier is None:
            continue  # a key we do not know: neither trusted nor an error
        if not verifier.verify(text.encode(), raw[4:]):
            raise UnverifiedNoteError(f"the signature by {name} does not verify")
        verified.append(name)
    if not verified:
        names = ", ".join(sorted({v.name for v in verifiers})) or "none"
        raise UnverifiedNoteError(f"no signature by a known key (known: {names})")
    return Note(text=text, verified_by=tuple(verified))


def _check_text(text: str) -> None:
    # The text is non-empty, ends in a newline, has no blank line at its end, no control chars
    # other than newline.
    if not text.endswith("\n") or text == "\n":
        raise NoteError("note text must be non-empty and end with a newline")
    if text.endswith("\n\n"):
        raise NoteError("note text must not end with a blank line")
    if any(ord(c) < 0x20 and c != "\n" for c in text):
        raise NoteError("note text must not contain control characters")


def _split_key(text: str, parts: int, what: str) -> list[str]:
    pieces = text.split("+", parts - 1)  # the base64 key itself may contain '+'
    if len(pieces) != parts:
        raise NoteError(f"{what} {text!r} should have {parts} '+'-separated parts")
    return pieces


def _b64(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise NoteError(f"{what} is not valid base64") from None
