"""What the ledger's Python clients answer and raise (``api.client`` re-exports all of it).

The answers are frozen dataclasses read from the API's JSON by :func:`from_body`, which takes
the fields a class names and leaves any others: a newer server that adds a field does not
break an older client.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, TypeVar

Answer = TypeVar("Answer")


class LedgerAPIError(Exception):
    """The API answered with a problem (RFC 9457): status, title, detail, field errors."""

    def __init__(self, status: int, problem: Mapping[str, Any]) -> None:
        self.status = status
        self.title = str(problem.get("title", ""))
        self.detail = str(problem.get("detail", ""))
        self.errors: list[dict[str, Any]] = list(problem.get("errors") or [])
        self.problem = dict(problem)
        super().__init__(f"{status} {self.title}: {self.detail}")


class ReceiptCheckError(Exception):
    """A receipt does not check out against the log; the message says which part failed."""


class NotYetCoveredError(ReceiptCheckError):
    """The receipt's event is in the log but no signed checkpoint covers it yet: ask again
    after the next checkpoint (the signer signs every half second while events arrive)."""


def from_body(kind: type[Answer], body: Mapping[str, Any]) -> Answer:
    """``kind`` (a dataclass) from the JSON object ``body``: its fields, the others left."""
    names = {f.name for f in fields(kind)}  # type: ignore[arg-type]
    return kind(**{name: value for name, value in body.items() if name in names})


@dataclass(frozen=True)
class Receipt:
    """The ledger's word that an event is recorded: its place, hash and signature."""

    seq: int
    leaf_index: int
    event_id: str
    event_hash: str
    signature: str
    key_id: str
    recorded_at: str
    duplicate: bool


@dataclass(frozen=True)
class Decision:
    """May the purpose be used for the subject? ``answer`` tells ``yes`` (valid consent),
    ``no`` (``status`` says why) and ``not_required`` (``legal_basis`` is another than
    consent) apart; ``allowed`` is true for both ``yes`` and ``not_required``."""

    subject: str
    purpose: str
    allowed: bool
    status: str | None
    dpv_status: str | None
    decided_by_seq: int | None
    policy_version: str | None
    since: str | None
    answer: str | None = None
    """``yes``, ``no`` or ``not_required`` (None from a server older than the three)."""
    legal_basis: str | None = None


@dataclass(frozen=True)
class InclusionProof:
    """Leaf ``index`` is in the tree of ``size`` leaves: the audit path, hashes bottom-up.

    Check with ``ledger.verifier.merkle.verify_inclusion(index, size, leaf_hash, proof, root)``
    against the root of a checkpoint you verified (``checkpoint``, when the API chose the size).
    """

    index: int
    size: int
    leaf_hash: bytes
    proof: list[bytes]
    checkpoint: str | None
    """The signed note of the latest checkpoint, when no size was asked for."""


@dataclass(frozen=True)
class ConsistencyProof:
    """The tree of ``size1`` leaves is a prefix of that of ``size2``: RFC 9162 hashes.

    Empty when ``size1`` is 0 or equals ``size2``. Check with
    ``ledger.verifier.merkle.verify_consistency(size1, size2, proof, root1, root2)``.
    """

    size1: int
    size2: int
    proof: list[bytes]
    checkpoint: str | None
    """The signed note of the latest checkpoint, when no ``to`` size was asked for."""


@dataclass(frozen=True)
class LogEntry:
    """One leaf: the signed entry bytes (the leaf input), the body it commits to, signature."""

    index: int
    entry: bytes
    body: bytes
    signature: bytes
    key_id: str


@dataclass(frozen=True)
class ReceiptCheck:
    """What ``check_receipt`` established, each against a trusted key."""

    seq: int
    leaf_index: int
    checkpoint_size: int
    """The signed checkpoint whose tree the event is proven to be in."""
    checkpoint: str
    """Its signed note: keep it, and later ask for a consistency proof from its size."""
