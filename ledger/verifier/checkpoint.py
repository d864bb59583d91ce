"""C2SP tlog-checkpoint: the signed statement of a log's size and root hash.

The checkpoint is the text of a signed note::

    <origin>
    <tree size, decimal>
    <root hash, base64>
    [extension lines]

:func:`open_checkpoint` verifies the note's signature first, then parses, then checks the
origin: nothing is read from an unverified checkpoint.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Sequence
from dataclasses import dataclass

from ledger.verifier.note import Verifier, open_note

HASH_SIZE = 32


class CheckpointError(ValueError):
    """The checkpoint is malformed, or is not from the expected log."""


@dataclass(frozen=True)
class Checkpoint:
    origin: str
    size: int
    root_hash: bytes
    extensions: tuple[str, ...] = ()

    def text(self) -> str:
        """The note text of this checkpoint."""
        check_origin(self.origin)
        if self.size < 0:
            raise CheckpointError(f"tree size {self.size} is negative")
        if len(self.root_hash) != HASH_SIZE:
            raise CheckpointError(f"root hash is {len(self.root_hash)} bytes, not {HASH_SIZE}")
        lines = [self.origin, str(self.size), base64.b64encode(self.root_hash).decode()]
        return "\n".join([*lines, *self.extensions]) + "\n"


def check_origin(origin: str) -> None:
    # The origin is a non-empty line, conventionally a schema-less URL.
    if not origin or "\n" in origin or origin != origin.strip():
        raise CheckpointError(f"origin {origin!r} must be a non-empty line without edge spaces")


def parse_checkpoint(text: str) -> Checkpoint:
    """Parse the text of a checkpoint (already verified: see :func:`open_checkpoint`)."""
    lines = text.split("\n")
    # The text ends in a newline, so the last piece is empty; the body has at least 3 lines.
    if len(lines) < 4 or lines[-1] != "":
        raise CheckpointError(
            "a checkpoint has origin, size and root hash lines, each ending in a newline"
        )
    origin, size_text, root_text, *extensions = lines[:-1]
    check_origin(origin)
    # The size is decimal, without sign or leading zeros.
    if not re.fullmatch(r"0|[1-9][0-9]{0,19}", size_text):
        raise CheckpointError(f"tree size {size_text!r} is not a decimal number")
    try:
        root_hash = base64.b64decode(root_text, validate=True)
    except (binascii.Error, ValueError):
        raise CheckpointError(f"root hash {root_text!r} is not base64") from None
    if len(root_hash) != HASH_SIZE:
        raise CheckpointError(f"root hash is {len(root_hash)} bytes, not {HASH_SIZE}")
    if any(not line for line in extensions):
        raise CheckpointError("a checkpoint has no empty extension lines")
    return Checkpoint(origin, int(size_text), root_hash, tuple(extensions))


def open_checkpoint(signed_note: str, origin: str, verifiers: Sequence[Verifier]) -> Checkpoint:
    """Verify the signed note, then parse it, then check it is the expected log's."""
    note = open_note(signed_note, verifiers)
    checkpoint = parse_checkpoint(note.text)
    if checkpoint.origin != origin:
        raise CheckpointError(f"checkpoint of {checkpoint.origin!r}, expected {origin!r}")
    return checkpoint
