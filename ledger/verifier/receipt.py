"""A consent receipt: one consent fact, proven, with its subject's own data opened, that the
person can keep and check offline without trusting the controller.

The receipt is one JSON object (format :data:`RECEIPT_FORMAT`)::

    format      "consent-ledger-consent-receipt/1"
    record      the ISO/IEC TS 27560 consent record, every field restated from the body
                (and ``personal_data``: the subject's own values, opened, by path)
    kantara     the Kantara Consent Receipt v1.1 fields that map, restated likewise
    gaps        the mandatory fields of either standard the ledger cannot fill, and why
    proof       seq, leaf_index, key_id, entry, signature, body (base64, the exact bytes),
                leaf_hash, tree_size, inclusion_proof (RFC 9162), checkpoint (a C2SP note)
    statement   a C2SP signed note by the ledger's key over the SHA-256 of everything above

:func:`restate` is the one definition of what ``record``, ``kantara`` and ``gaps`` hold: the
ledger builds receipts with it and :func:`check_receipt` recomputes it, so a receipt never
says more than its signed body (the opened values excepted, which only the statement covers:
the entry's signature covers their ciphertext). :func:`to_dpv` renders the same receipt as a
W3C DPV JSON-LD document that carries the receipt, so that form is checked the same way.

Standard library and PyNaCl only: a person runs this without the server.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ledger.verifier.checkpoint import Checkpoint, CheckpointError, open_checkpoint
from ledger.verifier.entry import (
    EntryError,
    entry_hash,
    key_id_for,
    parse_body,
    parse_entry,
    signature_is_valid,
)
from ledger.verifier.mentions import SEALED_PREFIX
from ledger.verifier.merkle import MerkleError, leaf_hash, verify_consistency, verify_inclusion
from ledger.verifier.note import NoteError, Verifier, open_note

RECEIPT_FORMAT = "consent-ledger-consent-receipt/1"
SCHEMA_VERSION = "ISO/IEC TS 27560:2023"
KANTARA_VERSION = "KI-CR-v1.1.0"
STATEMENT_LINE = "consent receipt"
"""The statement note's first line is ``<origin> consent receipt``: a key name holds no space,
so the note can never be read as a checkpoint of any log."""
DPV_STATUS = {
    "consent.given": "dpv:ConsentGiven",
    "consent.refused": "dpv:ConsentRefused",
    "consent.withdrawn": "dpv:ConsentWithdrawn",
    "consent.renewal_requested": "dpv:ConsentRequested",
}
"""The consent facts a receipt is made for, and the DPV consent status each records."""
CONSENT_TYPES = frozenset(DPV_STATUS)
TOP_KEYS = ("format", "record", "kantara", "gaps", "proof", "statement")
PROOF_KEYS = (
    "seq",
    "leaf_index",
    "key_id",
    "entry",
    "signature",
    "body",
    "leaf_hash",
    "tree_size",
    "inclusion_proof",
    "checkpoint",
)
GAPS = {
    "jurisdiction": "Kantara (MUST): the ledger records no jurisdiction with a consent fact",
    "language": "Kantara (MUST): the ledger records no language of the notice shown",
    "policyUrl": "Kantara (MUST): the policy's URL is in its policy.version_published event "
    "(named by record.notice.policy_version), which this receipt does not carry",
    "sensitive": "Kantara (MUST): the ledger records no sensitive-data flag per purpose",
    "pii_controller.name": "27560 and Kantara (piiControllers): the ledger knows its "
    "controller only by its log's origin (record.pii_controller.log_origin); name, address "
    "and contact are not recorded",
    "purpose.description": "27560 (purpose): purpose names, descriptions and retention are in "
    "the policy version's event, which this receipt does not carry",
    "consentType": "Kantara: explicit or implicit is not recorded; collectionMethod says how",
}
"""The mandatory fields of ISO/IEC TS 27560 and Kantara v1.1 this receipt leaves out, and why
(docs/verification.md, "Checking a consent receipt")."""
JSONLD_CONTEXT = {
    "dpv": "https://w3id.org/dpv#",
    "dct": "http://purl.org/dc/terms/",
    "xsd": "http://www.w3.org/2001/XMLSchema#",
    "ledger": "urn:consent-ledger:vocab:",
}
RECEIPT_KEY = "ledger:receipt"


class ReceiptError(ValueError):
    """The receipt fails a check; ``check`` names which, the message says what."""

    def __init__(self, check: str, message: str) -> None:
        super().__init__(f"{check}: {message}")
        self.check = check
        self.message = message


@dataclass
class ReceiptReport:
    """What :func:`check_receipt` established, one line a check, in order."""

    seq: int = 0
    type: str = ""
    origin: str = ""
    tree_size: int = 0
    checked: list[str] = field(default_factory=list)


# -- the one definition of the receipt's content -------------------------------------------------


def canonical(value: Any) -> bytes:
    """The bytes the statement's digest covers: JSON, keys sorted, no spaces, UTF-8."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def sealed_paths(data: Mapping[str, Any], prefix: str = "") -> list[str]:
    """Every path in ``data`` holding a sealed value (``a.b``, ``list[0].c``), in order."""
    found: list[str] = []

    def walk(value: Any, path: str) -> None:
        if isinstance(value, str) and value.startswith(SEALED_PREFIX):
            found.append(path)
        elif isinstance(value, Mapping):
            for key in sorted(value):
                walk(value[key], f"{path}.{key}" if path else key)
        elif isinstance(value, list):
            for index, item in enumerate(value):
                walk(item, f"{path}[{index}]")

    walk(data, prefix)
    return found


def value_at(data: Any, path: str) -> Any:
    """The value at a path :func:`sealed_paths` gave (None if it is not there)."""
    node = data
    for part in path.split("."):
        name, _, rest = part.partition("[")
        node = node.get(name) if isinstance(node, Mapping) else None
        for index in rest.rstrip("]").split("][") if rest else []:
            position = int(index)
            node = node[position] if isinstance(node, list) and position < len(node) else None
    return node


def _epoch(text: str) -> int:
    return int(datetime.fromisoformat(text).timestamp())


def restate(
    body: Mapping[str, Any], personal_data: Mapping[str, str], origin: str, record_id: str
) -> dict[str, Any]:
    """``record``, ``kantara`` and ``gaps`` of the receipt of the consent fact ``body``, with
    ``personal_data`` (the subject's own values, opened, by sealed path) and the log's
    ``origin``; ``record_id`` is the entry's hash (hex)."""
    kind = body["type"]
    data = body["data"]
    evidence = data.get("evidence") or {}
    renewal = kind == "consent.renewal_requested"
    by = "pii_controller" if renewal else "guardian" if "guardian" in data else "pii_principal"
    principal = personal_data.get("subject_ref")
    notice = {"policy_version": data.get("policy_version")}
    for name in ("notice_id", "form_id", "notice_digest"):
        if evidence.get(name) is not None:
            notice[name] = evidence[name]
    event: dict[str, Any] = {
        "type": kind,
        "event_id": body["event_id"],
        "time": body["occurred_at"],
        "recorded_at": body["recorded_at"],
        "backdated": body["backdated"],
        "by": by,
    }
    if renewal:
        event["channel"] = data.get("channel")
        event["reason"] = data.get("reason")
        event["respond_by"] = data.get("respond_by")
    else:
        event["collection_method"] = data.get("collection_method")
    if kind == "consent.given":
        event["expires_at"] = data.get("expires_at")
    purposes = list(data.get("purposes", []))
    record = {
        "schema_version": SCHEMA_VERSION,
        "record_id": record_id,
        "pii_principal_id": principal,
        "pii_principal_pseudonym": data.get("subject"),
        "pii_controller": {"log_origin": origin},
        "consent_status": DPV_STATUS[kind],
        "event": event,
        "notice": notice,
        "processing": {"purposes": purposes, "legal_basis": "dpv:Consent"},
        "personal_data": dict(personal_data),
    }
    termination = data.get("expires_at")
    kantara = {
        "version": KANTARA_VERSION,
        "consentReceiptID": record_id,
        "consentTimestamp": _epoch(body["occurred_at"]),
        "collectionMethod": event.get("collection_method", event.get("channel")),
        "piiPrincipalId": principal,
        "piiControllers": [{"piiController": origin}],
        "services": [
            {
                "service": origin,
                "purposes": [
                    {"purpose": p, **({"termination": termination} if termination else {})}
                    for p in purposes
                ],
            }
        ],
    }
    return {"record": record, "kantara": kantara, "gaps": dict(GAPS)}


def statement_text(origin: str, seq: int, content: Mapping[str, Any]) -> str:
    """The text the ledger signs for a receipt: its origin, the seq, and the SHA-256 of the
    receipt's canonical JSON without the statement."""
    digest = hashlib.sha256(canonical(content)).digest()
    return f"{origin} {STATEMENT_LINE}\n{seq}\n{base64.b64encode(digest).decode()}\n"


def to_dpv(receipt: Mapping[str, Any]) -> dict[str, Any]:
    """The receipt as a W3C DPV JSON-LD document: the consent record in DPV terms, and the
    receipt itself (as a JSON literal) so that the document is checked as the receipt is."""
    record = receipt["record"]
    event = record["event"]
    subject: dict[str, Any] = {"@type": "dpv:DataSubject"}
    if record["pii_principal_id"] is not None:
        subject["dct:identifier"] = record["pii_principal_id"]
    subject["ledger:pseudonym"] = record["pii_principal_pseudonym"]
    notice: dict[str, Any] = {
        "@type": "dpv:ConsentNotice",
        "dct:hasVersion": record["notice"]["policy_version"],
    }
    if "notice_id" in record["notice"]:
        notice["dct:identifier"] = record["notice"]["notice_id"]
    document: dict[str, Any] = {
        "@context": dict(JSONLD_CONTEXT),
        "@id": f"urn:consent-ledger:receipt:{record['record_id']}",
        "@type": "dpv:ConsentRecord",
        "dct:conformsTo": record["schema_version"],
        "dct:identifier": record["record_id"],
        "dpv:hasConsentStatus": {"@id": record["consent_status"]},
        "dpv:hasDataSubject": subject,
        "dpv:hasDataController": {
            "@type": "dpv:DataController",
            "dct:identifier": record["pii_controller"]["log_origin"],
        },
        "dpv:hasPurpose": [
            {"@type": "dpv:Purpose", "dct:identifier": p} for p in record["processing"]["purposes"]
        ],
        "dpv:hasLegalBasis": {"@id": record["processing"]["legal_basis"]},
        "dpv:hasNotice": notice,
        "dpv:isIndicatedAtTime": {"@value": event["time"], "@type": "xsd:dateTime"},
        "dct:created": {"@value": event["recorded_at"], "@type": "xsd:dateTime"},
    }
    by = {"pii_principal": "dpv:DataSubject", "guardian": "dpv:GuardianOfDataSubject"}
    if event["by"] in by:
        document["dpv:isIndicatedBy"] = {"@id": by[event["by"]]}
    if event.get("expires_at"):
        document["ledger:expiresAt"] = {"@value": event["expires_at"], "@type": "xsd:dateTime"}
    document[RECEIPT_KEY] = {"@type": "@json", "@value": dict(receipt)}
    return document


# -- checking ---------------------------------------------------------------------------------


def _no_repeats(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        raise ValueError(f"a key is repeated in an object: {sorted(keys)}")
    return dict(pairs)


def load_receipt(raw: bytes) -> dict[str, Any]:
    """A receipt or its DPV JSON-LD form, parsed strictly (UTF-8, no repeated keys)."""
    try:
        value = json.loads(raw.decode(), object_pairs_hook=_no_repeats)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ReceiptError("format", f"not UTF-8 JSON without repeated keys: {exc}") from None
    if not isinstance(value, dict):
        raise ReceiptError("format", "a receipt is a JSON object")
    return value


def _b64(check: str, value: object) -> bytes:
    """Strict base64: the only encoding of its bytes (no other trailing bits, no spaces)."""
    if not isinstance(value, str):
        raise ReceiptError(check, "is not a base64 string")
    try:
        decoded = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ReceiptError(check, "is not base64") from None
    if base64.b64encode(decoded).decode() != value:
        raise ReceiptError(check, "is not in canonical base64")
    return decoded


def _int(check: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ReceiptError(check, f"{value!r} is not a whole number")
    return value


def _first_difference(held: Any, expected: Any, path: str) -> str | None:
    """The first path at which ``held`` differs from ``expected`` (None when equal)."""
    if isinstance(held, dict) and isinstance(expected, dict):
        for key in sorted(set(held) | set(expected)):
            if key not in held:
                return f"{path}.{key} (missing)"
            if key not in expected:
                return f"{path}.{key} (not expected)"
            found = _first_difference(held[key], expected[key], f"{path}.{key}")
            if found:
                return found
        return None
    if isinstance(held, list) and isinstance(expected, list):
        if len(held) != len(expected):
            return f"{path} (length {len(held)}, expected {len(expected)})"
        for index, (a, b) in enumerate(zip(held, expected, strict=True)):
            found = _first_difference(a, b, f"{path}[{index}]")
            if found:
                return found
        return None
    if type(held) is not type(expected) or held != expected:
        return path
    return None


def _canonical_signatures(check: str, note: str) -> None:
    """Each signature line's base64 is the only encoding of its bytes: base64 leaves padding
    bits free, and a receipt edited in them must not check out as the same receipt."""
    _, _, block = note.rpartition("\n\n")
    for line in block.splitlines():
        _, _, encoded = line.rpartition(" ")
        _b64(check, encoded)


def _open_checkpoint(note: object, trusted: Sequence[Verifier]) -> Checkpoint:
    if not isinstance(note, str):
        raise ReceiptError("checkpoint", "is not a signed note's text")
    _canonical_signatures("checkpoint", note)
    problems = []
    for origin in sorted({v.name for v in trusted}):
        try:
            return open_checkpoint(note, origin, trusted)
        except (NoteError, CheckpointError) as exc:
            problems.append(str(exc))
    raise ReceiptError("checkpoint", f"not signed by a trusted key ({'; '.join(problems)})")


def _guarded(check: str, step: Callable[[], Any]) -> Any:
    try:
        return step()
    except ReceiptError:
        raise
    except (EntryError, MerkleError, NoteError, CheckpointError, KeyError, TypeError) as exc:
        raise ReceiptError(check, str(exc) or type(exc).__name__) from None
    except ValueError as exc:
        raise ReceiptError(check, str(exc)) from None


def check_receipt(document: Mapping[str, Any], trusted: Sequence[Verifier]) -> ReceiptReport:
    """Check a receipt (or its DPV JSON-LD form) against the verifier keys ``trusted``;
    raise :class:`ReceiptError` naming the first check that fails."""
    if "@context" in document:
        return _check_dpv(document, trusted)
    report = ReceiptReport()
    if sorted(document) != sorted(TOP_KEYS):
        raise ReceiptError("format", f"keys are {sorted(document)}, expected {sorted(TOP_KEYS)}")
    if document["format"] != RECEIPT_FORMAT:
        raise ReceiptError("format", f"{document['format']!r} is not {RECEIPT_FORMAT!r}")
    proof = document["proof"]
    if not isinstance(proof, dict) or sorted(proof) != sorted(PROOF_KEYS):
        shown = sorted(proof) if isinstance(proof, dict) else type(proof).__name__
        raise ReceiptError("proof", f"keys are {shown}, expected {sorted(PROOF_KEYS)}")

    checkpoint = _open_checkpoint(proof["checkpoint"], trusted)
    report.origin = checkpoint.origin
    report.checked.append(
        f"checkpoint: {checkpoint.origin}, size {checkpoint.size}, signed by a trusted key"
    )

    entry_bytes = _b64("entry", proof["entry"])
    entry = _guarded("entry", lambda: parse_entry(entry_bytes))
    seq = _int("proof.seq", proof["seq"])
    if entry.seq != seq:
        raise ReceiptError("entry", f"the entry is at seq {entry.seq}, the receipt says {seq}")
    if _int("proof.leaf_index", proof["leaf_index"]) != seq - 1:
        raise ReceiptError("proof.leaf_index", f"leaf {proof['leaf_index']} is not seq {seq} - 1")
    if proof["key_id"] != entry.key_id:
        raise ReceiptError("proof.key_id", f"the entry names key {entry.key_id}")
    report.seq = seq
    report.checked.append(f"entry: seq {seq}, key id {entry.key_id}")

    keys = {key_id_for(v.public_key): v.public_key for v in trusted}
    public_key = keys.get(entry.key_id)
    if public_key is None:
        raise ReceiptError("signature", f"no trusted key has key id {entry.key_id}")
    if not signature_is_valid(entry_bytes, _b64("signature", proof["signature"]), public_key):
        raise ReceiptError("signature", "the entry's signature does not verify")
    report.checked.append("signature: the entry is signed by the ledger's trusted key")

    body_bytes = _b64("body", proof["body"])
    if hashlib.sha256(body_bytes).digest() != entry.body_sha256:
        raise ReceiptError("body", "its SHA-256 is not the one the signed entry holds")
    body = _guarded("body", lambda: parse_body(body_bytes))
    report.type = body["type"]
    report.checked.append(f"body: the signed entry's ({body['type']})")

    leaf = leaf_hash(entry_bytes)
    if _b64("leaf hash", proof["leaf_hash"]) != leaf:
        raise ReceiptError("leaf hash", "is not SHA-256(0x00 || entry)")
    size = _int("proof.tree_size", proof["tree_size"])
    if size != checkpoint.size:
        raise ReceiptError("inclusion proof", f"tree size {size} is not the checkpoint's")
    hashes = proof["inclusion_proof"]
    if not isinstance(hashes, list):
        raise ReceiptError("inclusion proof", "is not a list of hashes")
    path = [_b64(f"inclusion proof[{i}]", h) for i, h in enumerate(hashes)]
    _guarded(
        "inclusion proof",
        lambda: verify_inclusion(seq - 1, size, leaf, path, checkpoint.root_hash),
    )
    report.tree_size = size
    report.checked.append(f"inclusion proof: leaf {seq - 1} in the checkpoint's tree of {size}")

    if body["type"] not in CONSENT_TYPES:
        raise ReceiptError("consent fact", f"{body['type']} is not a consent fact")
    record = document["record"]
    opened = record.get("personal_data") if isinstance(record, dict) else None
    if not isinstance(opened, dict) or not all(isinstance(v, str) for v in opened.values()):
        raise ReceiptError("personal data", "record.personal_data is not an object of texts")
    sealed = sealed_paths(body["data"])
    if sorted(opened) != sorted(sealed):
        raise ReceiptError(
            "personal data",
            f"{len(opened)} values opened at {sorted(opened)}, the body seals {len(sealed)} "
            f"at {sorted(sealed)}",
        )
    report.checked.append(f"personal data: {len(sealed)} values, where the body seals them")

    expected = _guarded(
        "record",
        lambda: restate(body, opened, checkpoint.origin, entry_hash(entry_bytes).hex()),
    )
    for name in ("record", "kantara", "gaps"):
        differs = _first_difference(document[name], expected[name], name)
        if differs:
            raise ReceiptError(name, f"{differs} does not restate the signed body")
    report.checked.append("record, kantara, gaps: each field restates the signed body")

    content = {k: document[k] for k in TOP_KEYS if k != "statement"}
    text = statement_text(checkpoint.origin, seq, content)
    statement = document["statement"]
    if not isinstance(statement, str):
        raise ReceiptError("statement", "is not a signed note's text")
    _canonical_signatures("statement", statement)
    note = _guarded("statement", lambda: open_note(statement, trusted))
    if note.text != text:
        raise ReceiptError("statement", "the signed text is not this receipt's digest")
    report.checked.append("statement: the ledger signed this receipt, opened values included")
    return report


def _check_dpv(document: Mapping[str, Any], trusted: Sequence[Verifier]) -> ReceiptReport:
    carried = document.get(RECEIPT_KEY)
    if not isinstance(carried, dict) or not isinstance(carried.get("@value"), dict):
        raise ReceiptError("dpv", f"the document carries no receipt ({RECEIPT_KEY})")
    receipt = carried["@value"]
    if "@context" in receipt:
        raise ReceiptError("dpv", "the carried receipt is itself a JSON-LD document")
    report = check_receipt(receipt, trusted)
    differs = _first_difference(dict(document), to_dpv(receipt), "dpv")
    if differs:
        raise ReceiptError("dpv", f"{differs} does not restate the receipt")
    report.checked.append("dpv: every JSON-LD statement restates the receipt")
    return report


def check_consistency(
    report: ReceiptReport,
    receipt: Mapping[str, Any],
    answer: Mapping[str, Any],
    trusted: Sequence[Verifier],
) -> Checkpoint:
    """Check ``answer`` (``GET /v1/proofs/consistency?from=<the receipt's tree size>``, which
    carries the latest checkpoint) proves the receipt's tree a prefix of a later signed one:
    the entry was never removed. Returns the later checkpoint."""
    check = "consistency"
    if "@context" in receipt:
        receipt = receipt[RECEIPT_KEY]["@value"]
    older = _open_checkpoint(receipt["proof"]["checkpoint"], trusted)
    try:
        later = open_checkpoint(str(answer["checkpoint"]), older.origin, trusted)
    except (KeyError, NoteError, CheckpointError) as exc:
        raise ReceiptError(check, f"the later checkpoint: {exc}") from None
    if answer.get("from") != older.size or answer.get("to") != later.size:
        raise ReceiptError(
            check,
            f"the proof is from {answer.get('from')} to {answer.get('to')}, not from "
            f"{older.size} to {later.size}",
        )
    hashes = answer.get("proof")
    if not isinstance(hashes, list):
        raise ReceiptError(check, "the proof is not a list of hashes")
    path = [_b64(f"{check} proof[{i}]", h) for i, h in enumerate(hashes)]
    _guarded(
        check,
        lambda: verify_consistency(older.size, later.size, path, older.root_hash, later.root_hash),
    )
    report.checked.append(
        f"consistency: the tree of {older.size} is a prefix of the signed tree of {later.size}"
    )
    return later
