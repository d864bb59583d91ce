"""Consent receipts: one consent fact, proven and signed, with its subject's own data opened.

The format is :mod:`ledger.verifier.receipt` (what a person checks offline); this module
gathers what goes in it from the log: the stored entry, body and signature, the subject's
values opened under their key (nobody else's: the only subject a consent fact names), a
signed checkpoint that holds the entry, the RFC 9162 inclusion proof, and the ledger's signed
statement over the whole. Plain values in, plain values out; the entrypoint records the read
(invariant 11) before it answers.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

from ledger.access_records import AccessAction, AccessRecord
from ledger.application import LedgerApplication
from ledger.errors import EventNotFoundError, LedgerError
from ledger.merkle_log import SignedCheckpoint
from ledger.sealing import ERASED
from ledger.verifier.entry import entry_hash, parse_body
from ledger.verifier.merkle import leaf_hash
from ledger.verifier.note import sign_note
from ledger.verifier.receipt import (
    CONSENT_TYPES,
    RECEIPT_FORMAT,
    restate,
    sealed_paths,
    statement_text,
    to_dpv,
    value_at,
)

__all__ = ["ConsentReceipt", "NoCheckpointError", "NotAConsentFactError", "consent_receipt"]


class NotAConsentFactError(LedgerError):
    """The event at ``seq`` is not a consent fact: it has no consent receipt."""

    def __init__(self, seq: int, type_name: str) -> None:
        self.seq = seq
        self.type_name = type_name
        super().__init__(
            f"event {seq} is a {type_name}, not a consent fact ({', '.join(sorted(CONSENT_TYPES))})"
        )


class NoCheckpointError(LedgerError):
    """No signed checkpoint holds the event yet and this process cannot sign one."""


@dataclass(frozen=True)
class ConsentReceipt:
    """A receipt and whose data it opened (for the access record)."""

    seq: int
    receipt: dict[str, Any]
    subject: str
    """The subject's pseudonym."""
    opened: int
    """How many personal-data values were opened (0 once the subject is erased)."""

    @property
    def erased(self) -> bool:
        return self.opened == 0

    def access_record(self, client: str, scope: str, purpose: str | None) -> AccessRecord:
        """The ``personal_data.accessed`` record of handing this receipt to ``client``: the
        subject named when their data was opened, nobody once they are erased."""
        return AccessRecord(
            client=client,
            action=AccessAction.CONSENT_RECEIPT,
            scope=scope,
            purpose=purpose,
            subjects=() if self.erased else (self.subject,),
            count=0 if self.erased else 1,
            details={"seq": self.seq},
        )

    def as_dpv(self) -> dict[str, Any]:
        """The receipt as a W3C DPV JSON-LD document (which carries the receipt)."""
        return to_dpv(self.receipt)


def _checkpoint_holding(app: LedgerApplication, seq: int) -> SignedCheckpoint:
    latest = app.ledger.latest_checkpoint()
    if latest is not None and latest.size >= seq:
        return latest
    if app.checkpointer is None:
        raise NoCheckpointError(f"no signed checkpoint holds event {seq} yet; try again soon")
    signed = app.sign_checkpoint()
    if signed.size < seq:  # pragma: no cover (the event was committed before we asked)
        raise NoCheckpointError(f"no signed checkpoint holds event {seq} yet; try again soon")
    return signed


def consent_receipt(app: LedgerApplication, seq: int) -> ConsentReceipt:
    """The receipt of the consent fact at ``seq``.

    Raises :class:`~ledger.errors.EventNotFoundError` beyond the log,
    :class:`NotAConsentFactError` for any other event, :class:`NoCheckpointError` when no
    checkpoint can be had. An erased subject's values show ``[erased]``: the receipt still
    proves the entry and opens nothing.
    """
    record = app.ledger.get_record(seq)
    if record is None:
        raise EventNotFoundError(seq)
    body = parse_body(record.body)
    if body["type"] not in CONSENT_TYPES:
        raise NotAConsentFactError(seq, body["type"])
    pseudonym = body["data"]["subject"]
    shown = app.decode(record, only_subject=pseudonym).data
    opened = {path: str(value_at(shown, path)) for path in sealed_paths(body["data"])}
    checkpointer = app.checkpointer
    if checkpointer is None:
        raise NoCheckpointError("this ledger was opened without its signing key")
    checkpoint = _checkpoint_holding(app, seq)
    proof = app.ledger.tree().inclusion_proof(seq - 1, checkpoint.size)
    origin = checkpointer.origin
    content: dict[str, Any] = {
        "format": RECEIPT_FORMAT,
        **restate(body, opened, origin, entry_hash(record.entry).hex()),
        "proof": {
            "seq": seq,
            "leaf_index": seq - 1,
            "key_id": record.key_id,
            "entry": _b64(record.entry),
            "signature": _b64(record.signature),
            "body": _b64(record.body),
            "leaf_hash": _b64(leaf_hash(record.entry)),
            "tree_size": checkpoint.size,
            "inclusion_proof": [_b64(h) for h in proof],
            "checkpoint": checkpoint.note,
        },
    }
    text = statement_text(origin, seq, content)
    statement = sign_note(text, origin, checkpointer.signer.signing_key)
    count = sum(1 for value in opened.values() if value != ERASED)
    return ConsentReceipt(seq, {**content, "statement": statement}, pseudonym, count)


def _b64(value: bytes) -> str:
    return base64.b64encode(value).decode()
